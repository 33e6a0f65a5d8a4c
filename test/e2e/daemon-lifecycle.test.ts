/**
 * mediacached as a process: single instance per socket and per cache dir,
 * stale socket/lock takeover, permissions, SIGTERM drain, bad config.
 * Spawns the real binary (bin/mediacached.js → dist/).
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { daemonEnv, makeRoot, spawnDaemon, startDaemon, waitReady, RpcClient, DAEMON_BIN } from '../helpers/daemon.js';
import { ensureBuilt } from '../helpers/build.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { TYPE_DIRS } from '../../src/core/types.js';
import { MediaCache } from '../../src/core/cache/media-cache.js';

t.before(ensureBuilt);

function rootDir(t: { teardown(fn: () => void): void }): string {
  const r = makeRoot();
  t.teardown(() => fs.rmSync(r, { recursive: true, force: true }));
  return r;
}

function typeFolderFiles(cacheDir: string): string[] {
  return Object.values(TYPE_DIRS).flatMap((d) => {
    try {
      return fs.readdirSync(path.join(cacheDir, d)).map((f) => `${d}/${f}`);
    } catch {
      return [];
    }
  });
}

t.test('socket is 0600 inside a 0700 directory; paths are printed at start', async (t) => {
  const root = rootDir(t);
  const sock = path.join(root, 'run', 'd.sock');
  const d = await startDaemon(t, { root, socket: sock });
  t.equal(fs.statSync(sock).mode & 0o777, 0o600, 'socket 0600');
  t.equal(fs.statSync(path.dirname(sock)).mode & 0o777, 0o700, 'socket dir 0700');
  for (const p of [d.cacheDir, path.join(d.cacheDir, 'index'), sock, d.inboxes[0]!]) t.match(d.stderr(), p, `stderr names ${p}`);
  t.equal(d.stdout(), '', 'nothing on stdout');
  const lock = JSON.parse(fs.readFileSync(path.join(d.cacheDir, '.lock'), 'utf8')) as { pid: number; socket: string };
  t.same(lock.pid, d.pid);
  t.same(lock.socket, sock);
  const st = await d.rpc('status', {});
  t.equal(st.pid, d.pid);
  t.equal(st.paths.socket, sock);
  t.match(st.version, /^\d+\.\d+\.\d+/);
});

t.test('a second daemon on the same socket or the same cache dir exits non-zero; the first keeps serving', async (t) => {
  const d = await startDaemon(t);
  // Same socket with another cache dir, and same cache dir with another socket (in parallel).
  const root2 = rootDir(t);
  const t0 = Date.now();
  const s1 = spawnDaemon(['--socket', d.socket, '--cache-dir', path.join(root2, 'c'), '--inbox', path.join(root2, 'in')], daemonEnv(root2), t);
  const s2 = spawnDaemon(['--socket', path.join(root2, 'other.sock'), '--cache-dir', d.cacheDir, '--inbox', path.join(root2, 'in2')], daemonEnv(root2), t);
  const [e1, e2] = await Promise.all([s1.exited, s2.exited]);
  t.ok(Date.now() - t0 < 15_000, `both exited within seconds (${Date.now() - t0} ms)`);
  t.not(e1.code, 0, 'same socket: non-zero exit');
  t.match(s1.stderr(), /another mediacached is already listening on/);
  t.match(s1.stderr(), d.socket);
  t.notMatch(s1.stderr(), /\n\s+at /, 'no stack trace');
  t.not(e2.code, 0, 'same cache dir: non-zero exit');
  t.match(s2.stderr(), new RegExp(`another mediacached \\(pid ${d.pid}, socket ${d.socket.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}.*cache directory`));
  t.notOk(fs.existsSync(path.join(root2, 'other.sock')), 'the refused daemon left no socket behind');
  t.notOk(fs.existsSync(path.join(root2, 'c')), 'the refused daemon did not even create its cache dir');

  t.equal((await d.rpc('status', {})).pid, d.pid, 'first daemon still serving');
  t.ok(fs.existsSync(d.socket), 'first socket still there');
  t.ok(fs.existsSync(path.join(d.cacheDir, '.lock')), 'first lock still there');
});

t.test('a library user and the daemon never write one cache at once', async (t) => {
  const d = await startDaemon(t);
  // The library refuses the daemon's cache, naming the daemon.
  await t.rejects(MediaCache.open({ cacheDir: d.cacheDir }), {
    code: 'E_UNAVAILABLE',
    message: new RegExp(`in use by mediacached \\(pid ${d.pid}, socket .*send it work with mcctl`),
  });
  t.equal((await d.rpc('status', {})).pid, d.pid, 'the daemon is unaffected');
  await d.stop();
  // And a daemon refuses a cache a library user holds open.
  const root2 = rootDir(t);
  const cache = await MediaCache.open({ cacheDir: d.cacheDir });
  t.teardown(() => cache.close());
  const s = spawnDaemon(['--socket', path.join(root2, 'x.sock'), '--cache-dir', d.cacheDir, '--inbox', path.join(root2, 'in')], daemonEnv(root2), t);
  const e = await s.exited;
  t.not(e.code, 0, 'the daemon exits non-zero');
  t.match(s.stderr(), new RegExp(`in use by process ${process.pid} \\(a library user`));
  t.notMatch(s.stderr(), /\n\s+at /, 'no stack trace');
  await cache.close();
  t.notOk(fs.existsSync(path.join(d.cacheDir, '.lock')), 'close() released the lock');
});

t.test('after SIGKILL, the stale socket and lock are replaced by the next daemon', async (t) => {
  const root = rootDir(t);
  const d1 = await startDaemon(t, { root });
  await d1.stop('SIGKILL');
  t.ok(fs.statSync(d1.socket).isSocket(), 'stale socket left behind');
  t.ok(fs.existsSync(path.join(d1.cacheDir, '.lock')), 'stale lock left behind');
  const d2 = await startDaemon(t, { root });
  t.equal((await d2.rpc('status', {})).pid, d2.pid);
  t.match(d2.stderr(), /replaced a stale cache lock/);
  const lock = JSON.parse(fs.readFileSync(path.join(d2.cacheDir, '.lock'), 'utf8')) as { pid: number };
  t.equal(lock.pid, d2.pid);
  const exit = await d2.stop();
  t.equal(exit.code, 0);
  t.notOk(fs.existsSync(d2.socket), 'socket removed on clean exit');
  t.notOk(fs.existsSync(path.join(d2.cacheDir, '.lock')), 'lock removed on clean exit');
});

t.test('SIGTERM during downloads: exit 0 quickly, no socket, no partial file; jobs resume on restart', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const jpg = fixture('sample.jpg');
  const big = Buffer.concat([jpg, Buffer.alloc(1024 * 1024, 7)]);
  for (const i of [1, 2, 3]) origin.route(`/slow${i}.jpg`, { body: Buffer.concat([big, Buffer.from([i])]), bytesPerSec: 32 * 1024 });
  const root = rootDir(t);
  const d = await startDaemon(t, { root, args: ['--grace', '1500'] });
  const urls = [1, 2, 3].map((i) => origin.url(`/slow${i}.jpg`));
  const add = await d.rpc('add', { urls });
  t.ok(add.items.every((i) => i.state === 'queued' || i.state === 'running'), 'accepted as jobs');
  await waitFor(async () => (await d.rpc('status', {})).active.some((a) => a.bytes > 0), { what: 'downloads under way' });
  const t0 = Date.now();
  const exit = await d.stop('SIGTERM', 30_000);
  const took = Date.now() - t0;
  t.equal(exit.code, 0, 'exit code 0');
  t.ok(took < 15_000, `exited in ${took} ms`);
  t.notOk(fs.existsSync(d.socket), 'socket removed');
  t.notOk(fs.existsSync(path.join(d.cacheDir, '.lock')), 'lock removed');
  t.same(typeFolderFiles(d.cacheDir), [], 'no partial file under the type folders');
  t.match(d.stderr(), /stopped/);

  // Restart on the same cache with a fast origin: the interrupted jobs are still queued and finish.
  for (const i of [1, 2, 3]) origin.route(`/slow${i}.jpg`, { body: Buffer.concat([jpg, Buffer.from([i])]) });
  const d2 = await startDaemon(t, { root });
  await waitFor(async () => (await d2.rpc('stats', {})).queue.done === 3, { timeoutMs: 20_000, what: 'the 3 re-queued jobs to finish' });
  t.equal(typeFolderFiles(d2.cacheDir).length, 3, 'three files stored after restart');
});

t.test('bad configuration: exit 2 with one clear message and no stack trace', async (t) => {
  const root = rootDir(t);
  const env = daemonEnv(root);
  const CFG = '<config file>';
  const cases: Array<{ args: string[]; env?: Record<string, string>; file?: string; re: RegExp }> = [
    { args: ['--concurrency', 'lots'], re: /concurrency \(from --concurrency\) must be a whole number, got "lots"/ },
    { args: ['--concurrency', '0'], re: /must be at least 1/ },
    { args: [], env: { MEDIACACHE_CONCURRENCY: 'x' }, re: /from MEDIACACHE_CONCURRENCY/ },
    { args: ['--socket', `/tmp/${'s'.repeat(120)}.sock`], re: /socket path is \d+ bytes, longer than the 107/ },
    { args: ['--sweep-schedule', '61 * * * *'], re: /sweep-schedule "61 \* \* \* \*" is not a valid cron expression/ },
    { args: ['--config', CFG], file: '{"concurrency": 2, "sweepShedule": "@daily"}', re: /unknown key "sweepShedule" in config file .*c\d\.json\. Did you mean "sweepSchedule"\?/ },
    { args: ['--config', CFG], file: '{"concurrency": 2,,}', re: /config file .*c\d\.json is not valid JSON: .*line 1, column 19/ },
    { args: ['--no-such-flag'], re: /Unknown argument/ },
  ];
  // In parallel: each case only starts node and parses its arguments.
  const runs = cases.map((c, i) => {
    const cfgFile = path.join(root, `c${i}.json`);
    if (c.file !== undefined) fs.writeFileSync(cfgFile, c.file);
    const args = c.args.map((a) => (a === CFG ? cfgFile : a));
    return { c, sp: spawnDaemon(['--cache-dir', path.join(root, 'cache'), '--socket', path.join(root, 'd.sock'), ...args], { ...env, ...(c.env ?? {}) }, t) };
  });
  for (const { c, sp } of runs) {
    const e = await sp.exited;
    t.equal(e.code, 2, `exit 2 for ${c.args.join(' ') || JSON.stringify(c.env)}`);
    t.match(sp.stderr(), c.re);
    t.equal(sp.stderr().trim().split('\n').length, 1, 'one line');
    t.equal(sp.stdout(), '');
  }
  t.notOk(fs.existsSync(path.join(root, 'cache')), 'nothing created for a refused config');
});

t.test('--help and --version', async (t) => {
  const root = rootDir(t);
  const h = spawnDaemon(['--help'], daemonEnv(root), t);
  const v = spawnDaemon(['--version'], daemonEnv(root), t);
  t.equal((await h.exited).code, 0);
  t.match(h.stdout(), /--sweep-schedule/);
  // Each option's environment variable, and where the defaults land on this machine.
  t.match(h.stdout(), /--cache-dir[^\n]*\[env MEDIACACHE_DIR, MEDIACACHE_CACHE_DIR\]/);
  t.match(h.stdout(), /\[env MEDIACACHE_MAX_SIZE\]/);
  const xdg = path.join(root, 'xdg');
  t.match(h.stdout(), `cache-dir  ${path.join(xdg, 'cache', 'mediacache')}\n`);
  t.match(h.stdout(), `inbox      ${path.join(xdg, 'state', 'mediacache', 'inbox')}\n`);
  t.match(h.stdout(), `socket     ${path.join(xdg, 'run', 'mediacache', 'mediacached.sock')}\n`);
  t.equal((await v.exited).code, 0);
  const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(DAEMON_BIN), '..', 'package.json'), 'utf8')) as { version: string };
  t.equal(v.stdout().trim(), pkg.version);
});

t.test('systemd socket activation: listens on fd 3 and leaves the socket file alone', { skip: process.platform === 'win32' }, async (t) => {
  const root = rootDir(t);
  const sock = path.join(root, 'd.sock');
  // What systemd does: bind + listen, then pass the listening fd as fd 3 with LISTEN_PID/LISTEN_FDS.
  const tmp = path.join(root, 'tmp.sock');
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(tmp, r));
  fs.renameSync(tmp, sock); // our close() below must not unlink the name the daemon serves
  const fd = (srv as unknown as { _handle: { fd: number } })._handle.fd;
  const env = { ...daemonEnv(root), LISTEN_FDS: '1' };
  const proc = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$ exec "$@"', 'sh', process.execPath, DAEMON_BIN, '--socket', sock, '--cache-dir', path.join(root, 'cache'), '--inbox', path.join(root, 'inbox')], {
    env,
    stdio: ['ignore', 'ignore', 'pipe', fd],
  });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  t.teardown(() => void proc.kill('SIGKILL'));
  await new Promise<void>((r) => srv.close(() => r()));
  await waitReady(sock, { exitStatus: () => (proc.exitCode === null ? undefined : { code: proc.exitCode, signal: null }), stderr: () => err });
  t.match(err, /socket activation/);
  const c = await RpcClient.connect(sock);
  t.equal((await c.call('status', {})).pid, proc.pid);
  c.destroy();
  proc.kill('SIGTERM');
  t.equal(await exited, 0);
  t.ok(fs.existsSync(sock), 'an activated socket is not unlinked (systemd owns it)');
});

t.test('a --cache-dir that cannot be a folder: one line naming the option, exit 2, nothing started', async (t) => {
  const root = rootDir(t);
  const file = path.join(root, 'a-file');
  fs.writeFileSync(file, 'not a folder');
  const sock = path.join(root, 'd.sock');
  const sp = spawnDaemon(['--cache-dir', path.join(file, 'cache'), '--socket', sock, '--inbox', path.join(root, 'inbox')], daemonEnv(root), t);
  const e = await sp.exited;
  t.equal(e.code, 2);
  t.match(sp.stderr(), /^mediacached: --cache-dir \S+ cannot be used: a part of the path is a file, not a folder .*\[ENOTDIR\]/);
  t.equal(sp.stderr().trim().split('\n').length, 1, 'one line');
  t.notOk(fs.existsSync(sock), 'no socket left behind');
});

t.test('a new cache starts without a warning; a cache whose index was deleted is rebuilt, with one', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/n.png', { body: fixture('sample.png') });
  const d = await startDaemon(t);
  await waitFor(() => / info ready/.test(d.stderr()), { what: 'the ready line' });
  t.match(d.stderr(), /new cache: nothing to adopt/);
  t.notMatch(d.stderr(), / (warn|error) /, 'nothing above info on a first start');
  await d.rpc('add', { urls: [origin.url('/n.png')], wait: true });
  t.same(await d.stop(), { code: 0, signal: null });
  fs.rmSync(path.join(d.cacheDir, 'index'), { recursive: true, force: true });
  const d2 = await startDaemon(t, { root: d.root });
  await waitFor(() => / info ready/.test(d2.stderr()), { what: 'the ready line' });
  t.match(d2.stderr(), / warn .*no usable index/, 'files without an index: said, and adopted');
  await waitFor(async () => (await d2.rpc('stats', {})).totalFiles === 1, { what: 'the file adopted back', timeoutMs: 60_000 });
});
