import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../helpers/build.js';
import {
  SYSTEMD_DIR,
  effectiveSyscalls,
  last,
  loadPlist,
  parseUnit,
  readUnit,
  run,
  splitExec,
  systemdAnalyze,
  withExecStart,
  type PlistValue,
} from '../helpers/service-unit.js';

const SYSTEM = 'mediacached.service';
const USER = 'mediacached-user.service';
const PLIST = 'org.mediacache.mediacached.plist';
// node's memory flags are part of how mediacached runs (see bin/mediacached.js).
const DOCUMENTED_EXEC = ['/usr/bin/node', '--max-semi-space-size=4', '/opt/mediacache/bin/mediacached.js'];
const SCRIPT = DOCUMENTED_EXEC.length - 1;
const MAX_EXPOSURE = 2.0;
const NO_ANALYZE = systemdAnalyze() ? false : 'systemd-analyze is not installed here';

/**
 * A fresh directory holding `files`, removed in teardown. (t.testdir() is one
 * directory per test, so a second call would wipe the first's files.)
 */
function tmpDir(t: Test, files: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-unit-'));
  fs.chmodSync(dir, 0o700);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

/** A copy of a unit whose ExecStart runs this checkout with this node, in its own dir. */
function runnableCopy(t: Test, name: string, installedAs = name): string {
  const text = fs.readFileSync(path.join(SYSTEMD_DIR, name), 'utf8');
  const dir = tmpDir(t, { [installedAs]: withExecStart(text, [process.execPath, path.join(REPO_ROOT, 'bin', 'mediacached.js')]) });
  return path.join(dir, installedAs);
}

t.test('system unit: the hardening the packaging issue asks for is all there', async (t) => {
  const { unit } = readUnit(SYSTEM);
  const want: Record<string, string> = {
    Type: 'exec',
    DynamicUser: 'yes',
    CacheDirectory: 'mediacache',
    StateDirectory: 'mediacache',
    RuntimeDirectory: 'mediacache',
    LogsDirectory: 'mediacache',
    ConfigurationDirectory: 'mediacache',
    RuntimeDirectoryMode: '0700',
    Restart: 'on-failure',
    TimeoutStopSec: '20',
    KillSignal: 'SIGTERM',
    ProtectSystem: 'strict',
    ProtectHome: 'yes',
    PrivateTmp: 'yes',
    PrivateDevices: 'yes',
    PrivateUsers: 'yes',
    PrivateMounts: 'yes',
    NoNewPrivileges: 'yes',
    RestrictAddressFamilies: 'AF_UNIX AF_INET AF_INET6',
    SystemCallArchitectures: 'native',
    CapabilityBoundingSet: '',
    AmbientCapabilities: '',
    UMask: '0077',
    ProtectKernelTunables: 'yes',
    ProtectKernelModules: 'yes',
    ProtectKernelLogs: 'yes',
    ProtectControlGroups: 'yes',
    ProtectClock: 'yes',
    ProtectHostname: 'yes',
    ProtectProc: 'invisible',
    ProcSubset: 'pid',
    RestrictNamespaces: 'yes',
    RestrictRealtime: 'yes',
    RestrictSUIDSGID: 'yes',
    LockPersonality: 'yes',
    MemoryDenyWriteExecute: 'no',
    RemoveIPC: 'yes',
    ExecReload: '/bin/kill -HUP $MAINPID',
    RestartPreventExitStatus: '2',
  };
  for (const [k, v] of Object.entries(want)) t.equal(last(unit, 'Service', k), v, `${k}=${v}`);
  t.same(unit.get('Service')!.get('SystemCallFilter'), ['@system-service', '~@privileged @resources', 'setpriority']);
  // It must reach any origin: no IP allow/deny list.
  t.notOk(unit.get('Service')!.has('IPAddressDeny'), 'no IPAddressDeny=');
  t.notOk(unit.get('Service')!.has('IPAddressAllow'), 'no IPAddressAllow=');
  t.equal(last(unit, 'Install', 'WantedBy'), 'multi-user.target');
});

t.test('system unit: ExecStart is the documented install and needs no mediacache flags', async (t) => {
  const { unit } = readUnit(SYSTEM);
  const exec = unit.get('Service')!.get('ExecStart')!;
  t.equal(exec.length, 1, 'one ExecStart');
  const argv = splitExec(exec[0]);
  t.same(argv, DOCUMENTED_EXEC);
  // The path below /opt/mediacache is the package's own layout.
  t.ok(fs.existsSync(path.join(REPO_ROOT, path.relative('/opt/mediacache', argv[SCRIPT]))), 'bin/mediacached.js exists in the package');
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { files: string[]; bin: Record<string, string> };
  t.ok(pkg.files.includes('bin') && pkg.files.includes('dist'), 'npm pack ships bin/ and dist/');
  t.equal(path.normalize(pkg.bin.mediacached), path.normalize('bin/mediacached.js'));
  // Directories come from systemd, not from configuration baked into the unit.
  // The one setting the unit makes: the safe URL policy for a shared service (docs/security.md).
  const envs = unit.get('Service')!.get('Environment') ?? [];
  t.same(envs.filter((e) => /MEDIACACHE_/.test(e)), ['MEDIACACHE_URL_POLICY=public'], 'only MEDIACACHE_URL_POLICY=public in the unit');
  const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'service.md'), 'utf8');
  t.match(doc, argv[SCRIPT], 'docs/service.md names the same install path');
});

t.test('user unit: same program, same directory keys, no DynamicUser', async (t) => {
  const sys = readUnit(SYSTEM).unit;
  const { unit } = readUnit(USER);
  t.same(unit.get('Service')!.get('ExecStart'), sys.get('Service')!.get('ExecStart'));
  t.same(unit.get('Service')!.get('SystemCallFilter'), sys.get('Service')!.get('SystemCallFilter'), 'same SystemCallFilter');
  for (const k of ['StateDirectory', 'LogsDirectory']) {
    t.notOk(unit.get('Service')!.has(k), `no ${k}= (user managers before systemd 254 put it under ~/.config; the daemon's XDG default is better)`);
  }
  for (const k of ['CacheDirectory', 'RuntimeDirectory', 'ConfigurationDirectory', 'Type', 'Restart', 'TimeoutStopSec', 'KillSignal', 'ExecReload', 'RestartPreventExitStatus', 'UMask', 'RuntimeDirectoryMode', 'NoNewPrivileges', 'RestrictAddressFamilies', 'SystemCallErrorNumber']) {
    t.equal(last(unit, 'Service', k), last(sys, 'Service', k), k);
  }
  t.notOk(unit.get('Service')!.has('DynamicUser'), 'a user manager cannot switch users');
  t.equal(last(unit, 'Install', 'WantedBy'), 'default.target');
});

t.test('the SystemCallFilter keeps what Node needs', { skip: NO_ANALYZE }, async (t) => {
  const { unit } = readUnit(SYSTEM);
  const allowed = effectiveSyscalls(unit.get('Service')!.get('SystemCallFilter')!);
  t.comment(`SystemCallFilter allows ${allowed.size} syscalls`);
  // Calls Node 20 makes on every start or that the daemon needs (strace of
  // the daemon, test/service-e2e.test.ts, checks the full list).
  for (const s of ['epoll_pwait', 'epoll_ctl', 'eventfd2', 'clone3', 'futex', 'mmap', 'mprotect', 'prlimit64', 'getrandom', 'statx', 'rename', 'fsync', 'fdatasync', 'socket', 'bind', 'listen', 'accept4', 'connect', 'chmod', 'kill', 'sched_getaffinity']) {
    t.ok(allowed.has(s), `${s} allowed`);
  }
  t.ok(allowed.has('setpriority'), 'setpriority allowed back (sweep threads lower their own priority)');
  for (const s of ['setuid', 'chown', 'setrlimit', 'sched_setaffinity', 'sched_setscheduler', 'ioprio_set', 'mount', 'ptrace', 'reboot']) t.notOk(allowed.has(s), `${s} denied`);
  t.equal(last(unit, 'Service', 'SystemCallErrorNumber'), 'EPERM', 'a denied call fails, it does not kill the daemon');
});

t.test('systemd-analyze verify accepts both units without a warning', { skip: NO_ANALYZE }, async (t) => {
  const bin = systemdAnalyze()!;
  // As shipped (the ExecStart path need not exist for verify on this version) …
  const shipped = run(bin, ['verify', path.join(SYSTEMD_DIR, SYSTEM)]);
  t.equal(shipped.status, 0, shipped.out);
  t.equal(shipped.out.trim(), '', 'no warnings (verify exits 0 even for unknown keys, so look at the output)');
  // … and pointing at this checkout, so the binary check is real.
  const copy = runnableCopy(t, SYSTEM);
  const r = run(bin, ['verify', copy]);
  t.equal(r.status, 0, r.out);
  t.equal(r.out.trim(), '', 'no warnings');

  // The user unit, as the user manager would read it (it needs a runtime dir).
  const userCopy = runnableCopy(t, USER, 'mediacached.service');
  const xdg = tmpDir(t);
  const u = run(bin, ['--user', 'verify', userCopy], { ...process.env, XDG_RUNTIME_DIR: xdg });
  t.equal(u.status, 0, u.out);
  t.equal(u.out.trim(), '', 'user unit: no warnings');
});

t.test('verify does catch a broken unit (the check above means something)', { skip: NO_ANALYZE }, async (t) => {
  const bin = systemdAnalyze()!;
  const text = fs.readFileSync(path.join(SYSTEMD_DIR, SYSTEM), 'utf8').replace(/^ProtectSystem=/m, 'ProtectSytem=');
  const dir = tmpDir(t, { [SYSTEM]: text });
  const r = run(bin, ['verify', path.join(dir, SYSTEM)]);
  t.match(r.out, /Unknown key.*ProtectSytem/);
});

function exposure(out: string): number | undefined {
  const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(out);
  return m ? Number(m[1]) : undefined;
}

t.test(`systemd-analyze security rates the system unit <= ${MAX_EXPOSURE}`, { skip: NO_ANALYZE }, async (t) => {
  const bin = systemdAnalyze()!;
  const r = run(bin, ['security', '--offline=true', runnableCopy(t, SYSTEM)]);
  if (/unrecognized option|Unknown option/.test(r.out)) {
    t.pass('not rated', { skip: `this systemd-analyze (< 250) has no --offline: ${r.out.split('\n')[0]}` });
    return;
  }
  const score = exposure(r.out);
  t.ok(score !== undefined, 'found the "Overall exposure level" line');
  if (score === undefined) t.comment(r.out);
  t.comment(`systemd-analyze security ${SYSTEM}: exposure ${score} (<= ${MAX_EXPOSURE} wanted)`);
  t.ok(score! <= MAX_EXPOSURE, `exposure ${score} <= ${MAX_EXPOSURE}`);

  // The same scoring on a unit with the sandbox stripped is much worse, so
  // the number above is earned by the unit's settings.
  const dir = tmpDir(t, { [SYSTEM]: `[Service]\nType=exec\nExecStart=${process.execPath} ${path.join(REPO_ROOT, 'bin', 'mediacached.js')}\n` });
  const b = exposure(run(bin, ['security', '--offline=true', path.join(dir, SYSTEM)]).out);
  t.comment(`unsandboxed baseline: exposure ${b}`);
  t.ok(b !== undefined && b > 8, 'an unhardened unit scores > 8');

  const xdg = tmpDir(t);
  const u = run(bin, ['--user', 'security', '--offline=true', runnableCopy(t, USER, 'mediacached.service')], { ...process.env, XDG_RUNTIME_DIR: xdg });
  t.comment(`user unit (no mount namespaces in a user manager): exposure ${exposure(u.out)}`);
});

t.test('socket unit (if shipped) matches the service', { skip: !fs.existsSync(path.join(SYSTEMD_DIR, 'mediacached.socket')) && 'no socket unit' }, async (t) => {
  const { unit } = readUnit('mediacached.socket');
  t.ok(last(unit, 'Socket', 'ListenStream')?.startsWith('/'), 'absolute ListenStream');
  t.equal(last(unit, 'Socket', 'SocketMode'), '0660');
  t.ok(last(unit, 'Socket', 'SocketGroup'), 'SocketGroup=');
  const bin = systemdAnalyze();
  if (!bin) return;
  const text = fs.readFileSync(path.join(SYSTEMD_DIR, SYSTEM), 'utf8');
  const dir = tmpDir(t, {
    'mediacached.socket': fs.readFileSync(path.join(SYSTEMD_DIR, 'mediacached.socket'), 'utf8'),
    [SYSTEM]: withExecStart(text, [process.execPath, path.join(REPO_ROOT, 'bin', 'mediacached.js')]),
  });
  const r = run(bin, ['verify', path.join(dir, 'mediacached.socket')]);
  t.equal(r.status, 0, r.out);
  t.equal(r.out.trim(), '', 'no warnings');
  // Not inside the service's RuntimeDirectory (re-owned 0700 and removed on stop).
  const rt = last(readUnit(SYSTEM).unit, 'Service', 'RuntimeDirectory');
  t.notOk(last(unit, 'Socket', 'ListenStream')!.startsWith(`/run/${rt}/`), 'socket outside /run/<RuntimeDirectory>/');
  t.match(fs.readFileSync(path.join(REPO_ROOT, 'docs', 'service.md'), 'utf8'), last(unit, 'Socket', 'ListenStream')!, 'documented');
});

t.test('launchd plist parses and has what launchd needs', async (t) => {
  const file = path.join(SYSTEMD_DIR, PLIST);
  const xml = fs.readFileSync(file, 'utf8');
  const lint = run('plutil', ['-lint', file]);
  if (!/ENOENT/.test(lint.out)) t.equal(lint.status, 0, `plutil -lint: ${lint.out}`);
  else t.comment('plutil not available: parsed with the test helper only');

  const p = loadPlist(file) as { [k: string]: PlistValue };
  t.equal(p.Label, 'org.mediacache.mediacached');
  t.equal(path.basename(file, '.plist'), p.Label, 'file named after its Label (launchd convention)');
  const args = p.ProgramArguments as string[];
  t.ok(Array.isArray(args) && args.length >= 2, 'ProgramArguments is an array');
  for (const a of args) t.ok(typeof a === 'string' && (a.startsWith('/') || a.startsWith('--')), `absolute path or node flag: ${a} (launchd has a minimal PATH and no ~)`);
  t.match(args[0], /\/node$/);
  t.same(args.slice(1), DOCUMENTED_EXEC.slice(1), 'same node flags and install as the systemd unit');
  t.equal(p.RunAtLoad, true);
  const keep = p.KeepAlive;
  t.ok(keep === true || (typeof keep === 'object' && (keep as { SuccessfulExit?: boolean }).SuccessfulExit === false), 'KeepAlive true or {SuccessfulExit:false}');
  t.equal(p.ProcessType, 'Background');
  t.match((p.EnvironmentVariables as { PATH?: string }).PATH, /(^|:)\/usr\/bin(:|$)/);
  t.equal(p.Umask, 0o077);
  for (const k of ['StandardOutPath', 'StandardErrorPath']) {
    t.match(p[k], /^\/Users\/USERNAME\/Library\/Logs\/mediacache\/[^/]+\.log$/, `${k} under ~/Library/Logs/mediacache`);
  }

  // The documented install replaces the placeholder; afterwards nothing of it is left.
  const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'service.md'), 'utf8');
  t.match(doc, /sed "s#\/Users\/USERNAME#\$HOME#g"/, 'docs/service.md has the sed line');
  const installed = xml.replace(/\/Users\/USERNAME/g, '/Users/ann');
  t.notMatch(installed, /USERNAME/);
  const dir = tmpDir(t, { [PLIST]: installed });
  const q = loadPlist(path.join(dir, PLIST)) as { [k: string]: PlistValue };
  t.equal(q.StandardErrorPath, '/Users/ann/Library/Logs/mediacache/mediacached.err.log');
});

t.test('plistlib refuses what launchd refuses (the check above means something)', async (t) => {
  const good = fs.readFileSync(path.join(SYSTEMD_DIR, PLIST), 'utf8');
  const dir = tmpDir(t, {
    'dashes.plist': good.replace('</dict>\n</plist>', '<!-- see --log-file -->\n</dict>\n</plist>'),
    'unclosed.plist': good.replace('<true/>', '<string>x'),
  });
  t.throws(() => loadPlist(path.join(dir, 'dashes.plist')), /plistlib refused/, '-- inside a comment is not XML');
  t.throws(() => loadPlist(path.join(dir, 'unclosed.plist')), /plistlib refused/, 'unbalanced tags');
});

t.test('unit parser and ExecStart splitter', async (t) => {
  const u = parseUnit('# c\n[Service]\nExecStart=/usr/bin/node \\\n  "/opt/my app/x.js" --a\nSystemCallFilter=@a\nSystemCallFilter=~@b\n; c\n');
  t.same(u.get('Service')!.get('SystemCallFilter'), ['@a', '~@b']);
  t.same(splitExec(u.get('Service')!.get('ExecStart')![0]), ['/usr/bin/node', '/opt/my app/x.js', '--a']);
  t.same(splitExec('-/bin/kill -HUP $MAINPID'), ['/bin/kill', '-HUP', '$MAINPID']);
  t.match(withExecStart('[Service]\nExecStart=/x\n', ['/a b/node', '/y']), /^ExecStart="\/a b\/node" \/y$/m);
  t.throws(() => parseUnit('Key=value\n'), /inside a section/);
});
