/**
 * The service files, run for real (as far as a sandbox without a running
 * systemd allows): the unit's own ExecStart= / ExecReload= / KillSignal=
 * lines, with only the *_DIRECTORY variables systemd would set — no
 * mediacache flag or MEDIACACHE_* variable — reached with the real mcctl.
 * Also: socket activation through systemd-socket-activate, and the daemon
 * under the unit's SystemCallFilter (a real seccomp filter) and strace.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { ensureBuilt, REPO_ROOT } from '../helpers/build.js';
import { daemonEnv, makeRoot, RpcClient, waitReady, type Teardownable } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { effectiveSyscalls, last, readUnit, splitExec, systemdAnalyze } from '../helpers/service-unit.js';
import { seccompRunner } from '../helpers/seccomp-run.js';
import type { StatusResult } from '../../src/core/protocol/rpc.js';

const INSTALL_ROOT = '/opt/mediacache';
const MCCTL = path.join(REPO_ROOT, 'bin', 'mcctl.js');
const SYSTEM = readUnit('mediacached.service').unit;
const USER = readUnit('mediacached-user.service').unit;

if (process.platform === 'win32') {
  t.plan(0, 'systemd units are for Linux');
  process.exit(0);
}

/**
 * The unit's ExecStart= as this checkout runs it: node → this node, the
 * documented install root → the repository. Nothing else is changed or added.
 */
function localArgv(unit: typeof SYSTEM): string[] {
  const exec = unit.get('Service')!.get('ExecStart')!;
  const argv = splitExec(exec[exec.length - 1]);
  return argv.map((a, i) => {
    if (i === 0 && path.basename(a) === 'node') return process.execPath;
    if (a.startsWith(INSTALL_ROOT + '/')) return path.join(REPO_ROOT, path.relative(INSTALL_ROOT, a));
    if (/[%$]/.test(a)) throw new Error(`ExecStart argument ${a} needs expansion; the test does not emulate that`);
    return a;
  });
}

interface SystemdDirs {
  cache: string;
  state: string;
  runtime: string;
  logs: string;
  config: string;
  env: Record<string, string>;
}

const DIRECTORY_ENV: Record<string, keyof Omit<SystemdDirs, 'env'>> = {
  CacheDirectory: 'cache',
  StateDirectory: 'state',
  RuntimeDirectory: 'runtime',
  LogsDirectory: 'logs',
  ConfigurationDirectory: 'config',
};
const ENV_NAME: Record<string, string> = {
  CacheDirectory: 'CACHE_DIRECTORY',
  StateDirectory: 'STATE_DIRECTORY',
  RuntimeDirectory: 'RUNTIME_DIRECTORY',
  LogsDirectory: 'LOGS_DIRECTORY',
  ConfigurationDirectory: 'CONFIGURATION_DIRECTORY',
};

/**
 * What systemd creates for CacheDirectory= etc. (RuntimeDirectoryMode=0700)
 * and the variables it sets — only for the directives the unit has.
 */
function systemdDirs(root: string, layout: 'system' | 'user', unit = layout === 'system' ? SYSTEM : USER): SystemdDirs {
  const d =
    layout === 'system'
      ? { cache: 'var/cache/mediacache', state: 'var/lib/mediacache', runtime: 'run/mediacache', logs: 'var/log/mediacache', config: 'etc/mediacache' }
      : { cache: 'xdg/cache/mediacache', state: 'xdg/state/mediacache', runtime: 'xdg/run/mediacache', logs: 'xdg/state/log/mediacache', config: 'xdg/config/mediacache' };
  const abs = Object.fromEntries(Object.entries(d).map(([k, v]) => [k, path.join(root, v)])) as Omit<SystemdDirs, 'env'>;
  for (const [k, p] of Object.entries(abs)) {
    fs.mkdirSync(p, { recursive: true, mode: 0o755 });
    fs.chmodSync(p, k === 'runtime' ? 0o700 : 0o755);
  }
  // /run is 0755; $XDG_RUNTIME_DIR is 0700 (its owner's only).
  fs.chmodSync(path.dirname(abs.runtime), layout === 'system' ? 0o755 : 0o700);
  const env: Record<string, string> = {};
  for (const [directive, key] of Object.entries(DIRECTORY_ENV)) {
    if (last(unit, 'Service', directive) === 'mediacache') env[ENV_NAME[directive]] = abs[key];
  }
  return { ...abs, env };
}

interface Proc {
  proc: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  status(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  stderr(): string;
}

/** Spawn like systemd: cwd /, stdin /dev/null, output captured (the journal). */
function launch(t: Test, argv: string[], env: NodeJS.ProcessEnv): Proc {
  const proc = spawn(argv[0], argv.slice(1), { cwd: '/', env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => (err += s));
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  let st: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve((st = { code, signal }))),
  );
  t.teardown(async () => {
    if (!st) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  return { proc, exited, status: () => st, stderr: () => err };
}

function mcctl(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MCCTL, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Wait until the daemon answers `status` on `socket` (cheap in-process probe:
 * it says E_UNAVAILABLE while starting), then ask the real `mcctl status --json`.
 */
async function statusVia(socket: string | undefined, args: string[], env: NodeJS.ProcessEnv, p: Proc, timeoutMs = 30_000): Promise<StatusResult> {
  if (socket) {
    await waitReady(socket, { exitStatus: p.status, stderr: p.stderr }, timeoutMs);
  }
  const r = await mcctl(['status', '--json', ...args], env);
  if (r.code !== 0) throw new Error(`mcctl status ${args.join(' ')}: exit ${r.code}: ${r.stderr}\n--- daemon output ---\n${p.stderr()}`);
  return JSON.parse(r.stdout) as StatusResult;
}

/** A client env with nothing of the daemon's: no *_DIRECTORY, no MEDIACACHE_*. */
function clientEnv(root: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  return daemonEnv(root, extra);
}

/** Send the unit's ExecReload= (kill -HUP $MAINPID) the way systemd would run it. */
function execReload(unit: typeof SYSTEM, mainPid: number): void {
  const argv = splitExec(last(unit, 'Service', 'ExecReload')!).map((a) => a.replace('$MAINPID', String(mainPid)));
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ExecReload ${argv.join(' ')} failed: ${r.stderr}${r.error ?? ''}`);
}

/** KillSignal= then wait, as long as TimeoutStopSec= allows. */
async function stopLikeSystemd(unit: typeof SYSTEM, pid: number, p: Proc): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  const signal = last(unit, 'Service', 'KillSignal') as NodeJS.Signals;
  const timeoutMs = Number(last(unit, 'Service', 'TimeoutStopSec')) * 1000;
  const t0 = Date.now();
  process.kill(pid, signal);
  const timer = setTimeout(() => p.proc.kill('SIGKILL'), timeoutMs);
  const r = await p.exited;
  clearTimeout(timer);
  return { ...r, ms: Date.now() - t0 };
}

t.before(async () => {
  await ensureBuilt();
});

t.test('system unit: ExecStart on systemd directories, mcctl status, reload, stop', async (t) => {
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dirs = systemdDirs(root, 'system');
  // ConfigurationDirectory= holds the optional config file the daemon finds by itself.
  fs.writeFileSync(path.join(dirs.config, 'config.json'), JSON.stringify({ concurrency: 3 }));
  const env = daemonEnv(root, dirs.env);
  t.notOk(Object.keys(env).some((k) => k.startsWith('MEDIACACHE_')), 'no MEDIACACHE_* variable');

  const argv = localArgv(SYSTEM);
  t.same(argv.slice(argv.findIndex((a) => a.endsWith('mediacached.js')) + 1), [], 'ExecStart passes no daemon flags');
  const p = launch(t, argv, env);
  const socket = path.join(dirs.runtime, 'mediacached.sock');
  const cenv = clientEnv(root);
  const st = await statusVia(socket, ['--socket', socket], cenv, p);

  t.equal(st.pid, p.proc.pid, 'the unit main process is the daemon (Type=exec: no fork)');
  t.equal(st.paths.cacheDir, dirs.cache, 'cache in CACHE_DIRECTORY');
  t.ok(st.paths.indexDir.startsWith(dirs.cache + path.sep), `index inside the cache: ${st.paths.indexDir}`);
  t.equal(st.paths.socket, socket, 'socket in RUNTIME_DIRECTORY');
  t.same(st.paths.inboxes, [path.join(dirs.state, 'inbox')], 'default inbox in STATE_DIRECTORY');
  t.equal(st.paths.configFile, path.join(dirs.config, 'config.json'), 'config from CONFIGURATION_DIRECTORY');
  t.equal(st.config.concurrency, 3, 'and its settings applied');
  for (const p2 of Object.values(st.paths).flat()) {
    if (typeof p2 === 'string') t.ok(p2.startsWith(root), `${p2} is under the systemd dirs, not HOME/XDG`);
  }
  t.ok(fs.statSync(path.join(dirs.cache, 'CACHEDIR.TAG')).isFile(), 'cache laid out in CACHE_DIRECTORY');
  t.notOk(fs.existsSync(path.join(root, 'xdg', 'cache', 'mediacache')), 'nothing created under XDG_CACHE_HOME');
  t.equal(fs.statSync(socket).mode & 0o777, 0o600, 'socket 0600');
  t.equal(fs.statSync(dirs.runtime).mode & 0o777, 0o700, 'RuntimeDirectoryMode kept');

  // systemctl reload → ExecReload=/bin/kill -HUP $MAINPID → config re-read.
  fs.writeFileSync(path.join(dirs.config, 'config.json'), JSON.stringify({ concurrency: 4, logLevel: 'debug' }));
  execReload(SYSTEM, st.pid);
  const client = await RpcClient.connect(socket);
  t.teardown(() => client.destroy());
  const after = await waitFor(
    async () => {
      const s = await client.call('status', {});
      return s.config.concurrency === 4 ? s : undefined;
    },
    { timeoutMs: 15_000, what: 'reload to apply concurrency 4' },
  );
  t.equal(after.config.logLevel, 'debug', 'logLevel reloaded');
  t.equal(after.pid, st.pid, 'same process after reload');
  client.destroy();

  // systemctl stop → KillSignal=SIGTERM, TimeoutStopSec=20.
  const stop = await stopLikeSystemd(SYSTEM, st.pid, p);
  t.comment(`SIGTERM → exit in ${stop.ms} ms`);
  t.same({ code: stop.code, signal: stop.signal }, { code: 0, signal: null }, 'exit 0 on SIGTERM (Restart=on-failure does not restart it)');
  t.notOk(fs.existsSync(socket), 'socket removed');
});

t.test('a configuration error exits 2, which RestartPreventExitStatus= keeps from looping', async (t) => {
  t.equal(last(SYSTEM, 'Service', 'RestartPreventExitStatus'), '2');
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dirs = systemdDirs(root, 'system');
  fs.writeFileSync(path.join(dirs.config, 'config.json'), '{ "concurrency": "many" }');
  const p = launch(t, localArgv(SYSTEM), daemonEnv(root, dirs.env));
  const r = await p.exited;
  t.equal(r.code, 2, 'exit 2');
  t.match(p.stderr(), /concurrency/, 'names the bad setting');
});

t.test('user unit: mcctl finds the daemon with no --socket', async (t) => {
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dirs = systemdDirs(root, 'user');
  // The user manager sets RUNTIME_DIRECTORY=$XDG_RUNTIME_DIR/mediacache; a
  // shell has only XDG_RUNTIME_DIR. Both must land on the same socket.
  const xdgRuntime = path.dirname(dirs.runtime);
  const env = daemonEnv(root, { ...dirs.env, XDG_RUNTIME_DIR: xdgRuntime });
  const p = launch(t, localArgv(USER), env);
  const cenv = clientEnv(root, { XDG_RUNTIME_DIR: xdgRuntime });
  t.notOk(cenv.RUNTIME_DIRECTORY, 'the client has no RUNTIME_DIRECTORY');
  const socket = path.join(xdgRuntime, 'mediacache', 'mediacached.sock');
  await waitReady(socket, { exitStatus: p.status, stderr: p.stderr });
  const st = await statusVia(undefined, [], cenv, p);
  t.equal(st.paths.socket, socket, 'mcctl default socket = the user unit socket');
  t.equal(st.paths.cacheDir, dirs.cache, 'cache in CACHE_DIRECTORY');
  t.same(st.paths.inboxes, [path.join(root, 'xdg', 'state', 'mediacache', 'inbox')], 'inbox at the XDG state default');
  const stop = await stopLikeSystemd(USER, st.pid, p);
  t.equal(stop.code, 0, 'exit 0 on SIGTERM');
});

const ACTIVATE = ['/usr/bin/systemd-socket-activate', '/bin/systemd-socket-activate'].find((p) => fs.existsSync(p));

t.test('socket activation: the daemon adopts the passed socket and leaves it alone', { skip: !ACTIVATE && 'systemd-socket-activate not installed' }, async (t) => {
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dirs = systemdDirs(root, 'system');
  const listen = path.join(root, 'mediacached.sock'); // stands in for the .socket unit's /run/mediacached.sock
  const env = daemonEnv(root, dirs.env);
  // systemd-socket-activate passes only the variables named with -E.
  const pass = ['PATH', 'HOME', 'XDG_RUNTIME_DIR', 'XDG_CACHE_HOME', 'XDG_STATE_HOME', 'XDG_CONFIG_HOME', ...Object.keys(dirs.env)].flatMap((k) => ['-E', `${k}=${env[k]}`]);
  const p = launch(t, [ACTIVATE!, '-l', listen, ...pass, ...localArgv(SYSTEM)], env);
  await waitFor(() => fs.existsSync(listen), { what: 'the listening socket' });
  const st = await statusVia(listen, ['--socket', listen], clientEnv(root), p);
  t.equal(st.pid, p.proc.pid, 'systemd-socket-activate exec()ed the daemon: same pid');
  t.notOk(fs.existsSync(path.join(dirs.runtime, 'mediacached.sock')), 'did not bind a socket of its own');
  const stop = await stopLikeSystemd(SYSTEM, st.pid, p);
  t.equal(stop.code, 0, 'exit 0');
  t.ok(fs.existsSync(listen), 'an activated socket is not unlinked by the daemon (systemd owns it)');
});

const STRACE = ['/usr/bin/strace', '/bin/strace'].find((p) => fs.existsSync(p));
const SECCOMP = systemdAnalyze() ? seccompRunner() : null;
/**
 * Calls the daemon makes that the filter refuses, and why that is fine:
 * pkey_alloc — V8 probes memory protection keys and runs without them on EPERM.
 */
const TOLERATED_EPERM = new Set(['pkey_alloc']);

t.test(
  'under the unit SystemCallFilter: downloads, sweeps, reloads, stops cleanly',
  { skip: !systemdAnalyze() ? 'systemd-analyze not installed' : !SECCOMP && !STRACE ? 'neither a C compiler with libseccomp nor strace here' : false },
  async (t) => {
    const allowed = effectiveSyscalls(SYSTEM.get('Service')!.get('SystemCallFilter')!);
    const root = makeRoot();
    t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
    const dirs = systemdDirs(root, 'system');
    const allowFile = path.join(root, 'allow.txt');
    // RestrictAddressFamilies= as socket(2) argument rules (systemd answers EAFNOSUPPORT, the runner EPERM).
    const AF: Record<string, number> = { AF_UNIX: 1, AF_INET: 2, AF_INET6: 10 };
    const families = last(SYSTEM, 'Service', 'RestrictAddressFamilies')!.split(/\s+/).map((f) => {
      if (!(f in AF)) throw new Error(`add ${f} to the test's address family table`);
      return `af:${AF[f]}`;
    });
    fs.writeFileSync(allowFile, [...allowed, ...families].join('\n') + '\n');
    const trace = path.join(root, 'strace.txt');

    let argv = localArgv(SYSTEM);
    if (SECCOMP) argv = [SECCOMP, allowFile, ...argv];
    else t.comment('no cc/libseccomp: syscalls are only traced, not filtered');
    if (STRACE) argv = [STRACE, '-f', '-qq', '-o', trace, ...argv];
    else t.comment('no strace: the filter is applied but calls are not listed');

    const origin = await startOrigin();
    t.teardown(() => origin.close());
    origin.route('/a.png', { headers: { 'content-type': 'image/png' }, body: fixture('sample.png') });
    origin.route('/b.pdf', { headers: { 'content-type': 'application/pdf' }, body: fixture('sample.pdf') });

    const p = launch(t, argv, daemonEnv(root, dirs.env));
    const socket = path.join(dirs.runtime, 'mediacached.sock');
    const cenv = clientEnv(root);
    const st = await statusVia(socket, ['--socket', socket], cenv, p, 60_000);
    // Under strace, p is strace: killing it would leave the traced daemon running.
    t.teardown(() => {
      if (p.status()) return;
      try {
        process.kill(st.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    });

    // One URL by name: getaddrinfo (AI_ADDRCONFIG asks netlink, which the family filter refuses) must still resolve it.
    const byName = origin.url('/b.pdf').replace('127.0.0.1', 'localhost');
    const add = await mcctl(['add', origin.url('/a.png'), byName, '--wait', '--json', '--socket', socket], cenv);
    t.equal(add.code, 0, `mcctl add --wait: ${add.stderr}`);
    t.equal(fs.readdirSync(path.join(dirs.cache, 'images')).length, 1, 'image stored');
    t.equal(fs.readdirSync(path.join(dirs.cache, 'documents')).length, 1, 'pdf stored');
    // (A sweep already running — the start-up one — is joined; then ask again.)
    let sweep = await mcctl(['sweep', '--wait', '--json', '--socket', socket], cenv);
    if (sweep.code === 0 && (JSON.parse(sweep.stdout) as { joined: boolean }).joined) sweep = await mcctl(['sweep', '--wait', '--json', '--socket', socket], cenv);
    t.equal(sweep.code, 0, `mcctl sweep --wait: ${sweep.stderr}`);
    t.match(JSON.parse(sweep.stdout), { joined: false, report: { checked: 2, complete: true } }, 'the sweep re-hashed both files');
    execReload(SYSTEM, st.pid);
    const stop = await stopLikeSystemd(SYSTEM, st.pid, p);
    t.same({ code: stop.code, signal: stop.signal }, { code: 0, signal: null }, 'exit 0 on SIGTERM');
    if (stop.code !== 0) t.comment(p.stderr().slice(-3000));
    t.notMatch(p.stderr(), /EPERM|Operation not permitted/, 'the daemon never saw a refused call');

    if (SECCOMP) {
      // The runner really filters: without rename(2) and friends, Node's renameSync gets EPERM.
      const noRename = path.join(root, 'no-rename.txt');
      fs.writeFileSync(noRename, [...allowed].filter((c) => !c.startsWith('rename')).join('\n') + '\n');
      const r = spawnSync(SECCOMP, [noRename, process.execPath, '-e', `require('fs').writeFileSync('${root}/x', ''); require('fs').renameSync('${root}/x', '${root}/y')`], { encoding: 'utf8' });
      t.not(r.status, 0, 'a call outside the list fails');
      t.match(r.stderr, /EPERM/, 'with EPERM, as SystemCallErrorNumber=EPERM makes systemd do');
      // net.connect resolves names with AI_ADDRCONFIG, for which glibc opens a
      // netlink socket; RestrictAddressFamilies refuses it and glibc must fall back.
      const dns = spawnSync(SECCOMP, [allowFile, process.execPath, '-e', `require('dns').lookup('localhost', { hints: require('dns').ADDRCONFIG }, (e, a) => { if (e) throw e; process.stderr.write('resolved ' + a); })`], { encoding: 'utf8' });
      t.match(dns.stderr, /resolved (127\.0\.0\.1|::1)/, `AI_ADDRCONFIG lookups work without netlink: ${dns.stderr}`);
      // Why the unit says MemoryDenyWriteExecute=no: with it, V8's JIT dies on
      // the first function it compiles (and --jitless has no WebAssembly, which
      // undici's HTTP parser needs).
      const mdweFile = path.join(root, 'mdwe.txt');
      fs.writeFileSync(mdweFile, fs.readFileSync(allowFile, 'utf8') + 'mdwe\n');
      const hot = 'let s = 0; for (let i = 0; i < 3e7; i++) s += i % 7; process.stderr.write("survived " + s)';
      const jit = spawnSync(SECCOMP, [mdweFile, process.execPath, '-e', hot], { encoding: 'utf8' });
      t.notMatch(jit.stderr, /survived/, `Node does not survive MemoryDenyWriteExecute=yes (status ${jit.status}, signal ${jit.signal})`);
      t.equal(last(SYSTEM, 'Service', 'MemoryDenyWriteExecute'), 'no');
    }

    if (STRACE) {
      const lines = fs.readFileSync(trace, 'utf8').split('\n');
      // Calls before the daemon's execve are the runner's (it installs the filter).
      const start = lines.findIndex((l) => /execve\("[^"]*\/node"/.test(l));
      const used = new Set<string>();
      const refused = new Map<string, number>();
      for (const l of lines.slice(Math.max(0, start))) {
        const m = /^\d+\s+(?:<\.\.\. )?([a-z_][a-z0-9_]*)(?:\(| resumed>)/.exec(l);
        if (!m) continue;
        used.add(m[1]);
        if (/= -1 EPERM/.test(l) && !allowed.has(m[1])) refused.set(m[1], (refused.get(m[1]) ?? 0) + 1);
      }
      const outside = [...used].filter((s) => !allowed.has(s)).sort();
      const refusedFamilies = [...new Set(lines.slice(Math.max(0, start)).flatMap((l) => /socket\((AF_\w+).*= -1 E/.exec(l)?.[1] ?? []))];
      t.comment(`socket families refused by RestrictAddressFamilies (and survived): ${refusedFamilies.join(', ') || 'none'}`);
      t.comment(`the daemon made ${used.size} distinct system calls; outside the filter: ${outside.join(', ') || 'none'}`);
      t.ok(used.size > 30, 'the trace covers the run');
      t.same(
        outside.filter((s) => !TOLERATED_EPERM.has(s)),
        [],
        'every system call the daemon makes is allowed by SystemCallFilter= (or known to be optional)',
      );
      if (SECCOMP) t.same([...refused.keys()].filter((s) => !TOLERATED_EPERM.has(s)), [], 'the filter refused nothing else');
    }
  },
);

const UNSHARE = ['/usr/bin/unshare', '/bin/unshare'].find((p) => fs.existsSync(p));
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));
const CAN_BE_ROOT = process.getuid?.() === 0 && UNSHARE && SETPRIV;
/**
 * The service user must be able to read this checkout (a clone under a 0700
 * mktemp folder is not readable by nobody); otherwise the emulation cannot run.
 */
function nobodyCanReadRepo(): boolean {
  if (!CAN_BE_ROOT) return false;
  const probe = `require('fs').accessSync(${JSON.stringify(path.join(REPO_ROOT, 'package.json'))}, 4)`;
  return spawnSync(SETPRIV!, ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', probe]).status === 0;
}
const CAN_SANDBOX = CAN_BE_ROOT && nobodyCanReadRepo();
const SANDBOX_SKIP = !CAN_BE_ROOT
  ? 'needs root, unshare and setpriv to emulate the sandbox'
  : !CAN_SANDBOX
    ? `the service user (nobody) cannot read ${REPO_ROOT} (e.g. a clone inside a 0700 temp folder)`
    : false;

/** The service user of the sandbox emulations (nobody). */
const SERVICE_UID = 65534;

/**
 * A root the service user can enter, systemd's directories owned by it, and
 * the argv prefix that runs `script` as root in a private mount namespace and
 * then execs the command as the service user.
 */
function serviceSandbox(t: Teardownable, script: string): { root: string; dirs: SystemdDirs; prefix: string[] } {
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.chmodSync(root, 0o755);
  const dirs = systemdDirs(root, 'system');
  for (const d of [dirs.cache, dirs.state, dirs.runtime, dirs.logs]) fs.chownSync(d, SERVICE_UID, SERVICE_UID);
  const prefix = [UNSHARE!, '-m', 'sh', '-c', script, 'sh', SETPRIV!, `--reuid=${SERVICE_UID}`, `--regid=${SERVICE_UID}`, '--clear-groups'];
  return { root, dirs, prefix };
}

/**
 * ProtectProc=invisible (hidepid) + a dynamic user: after a crash and a
 * reboot, the pid in <cacheDir>/.lock often belongs to some other user's
 * process. kill(pid, 0) then says EPERM ("alive") and /proc/<pid> is hidden,
 * so unless the daemon treats a hidden pid as "not a mediacached of ours" it
 * refuses to start, and Restart=on-failure loops.
 */
t.test(
  'ProtectProc=invisible: a stale lock naming another user\'s pid does not block start-up',
  { skip: SANDBOX_SKIP },
  async (t) => {
    // A private mount namespace whose /proc is mounted as ProcSubset=pid +
    // ProtectProc=invisible mount it, then the service user.
    const { root, dirs, prefix: sandbox } = serviceSandbox(t, 'mount -t proc -o subset=pid,hidepid=invisible proc /proc && exec "$@"');
    const nobody = SERVICE_UID;
    // pid 1 exists and is root's: invisible to the service user under hidepid.
    const lock = path.join(dirs.cache, '.lock');
    fs.writeFileSync(lock, JSON.stringify({ pid: 1, socket: '/run/old.sock', startedAt: '2026-01-01T00:00:00Z' }) + '\n');
    fs.chownSync(lock, nobody, nobody);
    const p = launch(t, [...sandbox, ...localArgv(SYSTEM)], daemonEnv(root, { ...dirs.env, HOME: dirs.state }));
    const socket = path.join(dirs.runtime, 'mediacached.sock');
    const outcome = await waitFor(
      async () => {
        if (p.status()) return 'exited';
        try {
          const c = await RpcClient.connect(socket);
          try {
            await c.call('status', {});
            return 'ready';
          } finally {
            c.destroy();
          }
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 20_000, what: 'the daemon to answer or exit' },
    );
    if (outcome === 'exited') {
      t.fail('refused to start because of a stale lock whose pid is hidden', { stderr: p.stderr() });
      return;
    }
    const c = await RpcClient.connect(socket);
    const st = await c.call('status', {});
    c.destroy();
    t.equal(st.paths.cacheDir, dirs.cache, 'started on the cache despite the stale lock');
    const stop = await stopLikeSystemd(SYSTEM, st.pid, p);
    t.equal(stop.code, 0, 'exit 0 on SIGTERM');
  },
);

/**
 * The unit's mount sandbox, approximated with a private mount namespace:
 * ProtectSystem=strict (everything read-only except the *_DIRECTORY dirs),
 * ProtectHome=yes (/home and /root inaccessible), ProcSubset=pid +
 * ProtectProc=invisible, a non-root service user, and the environment
 * systemd gives a DynamicUser service (HOME=/, no XDG_*). The daemon must
 * start, download, answer and stop without writing anywhere else.
 * (PrivateTmp is not emulated: the test's own dirs live under /tmp.)
 */
t.test('in an emulated ProtectSystem=strict/ProtectHome/ProcSubset sandbox as a non-root user', { skip: SANDBOX_SKIP }, async (t) => {
  const script = [
    'set -e',
    'IFS=:; for d in $SANDBOX_RW; do mount --bind "$d" "$d"; done; unset IFS',
    'mount -o remount,bind,ro /',
    'mount -t tmpfs -o mode=000 tmpfs /root',
    'mount -t tmpfs -o mode=000 tmpfs /home',
    'mount -t proc -o subset=pid,hidepid=invisible proc /proc',
    'unset SANDBOX_RW',
    'exec "$@"',
  ].join('\n');
  const { root, dirs, prefix: sandbox } = serviceSandbox(t, script);
  const nobody = SERVICE_UID;
  const rw = [dirs.cache, dirs.state, dirs.runtime, dirs.logs];
  // What systemd puts in a DynamicUser service's environment (plus the dirs).
  const env: NodeJS.ProcessEnv = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/',
    USER: 'mediacached',
    LOGNAME: 'mediacached',
    LANG: 'C.UTF-8',
    ...dirs.env,
    SANDBOX_RW: rw.join(':'),
  };
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/c.gif', { headers: { 'content-type': 'image/gif' }, body: fixture('sample.gif') });

  const p = launch(t, [...sandbox, ...localArgv(SYSTEM)], env);
  const socket = path.join(dirs.runtime, 'mediacached.sock');
  const cenv = clientEnv(root);
  const st = await statusVia(socket, ['--socket', socket], cenv, p);
  t.equal(st.paths.cacheDir, dirs.cache, 'cache in CACHE_DIRECTORY with HOME=/ and no XDG');
  t.same(st.paths.inboxes, [path.join(dirs.state, 'inbox')]);
  const add = await mcctl(['add', origin.url('/c.gif'), '--wait', '--json', '--socket', socket], cenv);
  t.equal(add.code, 0, `mcctl add --wait: ${add.stderr}`);
  const stored = fs.readdirSync(path.join(dirs.cache, 'images'));
  t.equal(stored.length, 1, 'downloaded into the cache');
  t.equal(fs.statSync(path.join(dirs.cache, 'images', stored[0])).uid, nobody, 'owned by the service user');
  const stop = await stopLikeSystemd(SYSTEM, st.pid, p);
  t.same({ code: stop.code, signal: stop.signal }, { code: 0, signal: null }, 'exit 0 on SIGTERM');
  if (stop.code !== 0) t.comment(p.stderr().slice(-3000));
  t.notMatch(p.stderr(), /EROFS|EACCES|read-only file system/i, 'never tried to write outside its directories');
});
