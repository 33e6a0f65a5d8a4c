/**
 * In-process pieces of the daemon lifecycle: SIGHUP's applyReload, the
 * cache-dir lock, and the logger's reopen (the process-level behaviour is in
 * daemon-lifecycle.test.ts and daemon-sighup.test.ts).
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { spawn } from 'node:child_process';
import { applyReload, type ReloadTargets } from '../../src/daemon/reload.js';
import { acquireCacheLock, pidAlive, LOCK_FILE } from '../../src/daemon/lifecycle.js';
import { createDaemonLogger } from '../../src/daemon/log.js';
import { resolveConfig, type DaemonConfig } from '../../src/daemon/config.js';
import { silentLogger } from '../../src/core/util/logger.js';
import type { PlatformEnv } from '../../src/core/util/paths.js';

const linux: PlatformEnv = { platform: 'linux', env: {}, homedir: '/home/u', tmpdir: '/tmp', uid: 1000, username: 'u' };
async function cfg(argv: string[]): Promise<DaemonConfig> {
  const r = await resolveConfig({ argv, env: {}, platformEnv: linux, readFile: () => undefined, cwd: '/' });
  if (r.kind !== 'config') throw new Error('no config');
  return r.config;
}

function recorder(): { calls: string[]; targets: ReloadTargets } {
  const calls: string[] = [];
  return {
    calls,
    targets: {
      setLimits: (o) => void calls.push(`limits ${JSON.stringify(o)}`),
      setSchedule: (e) => {
        if (e === 'bad') throw new Error('bad cron');
        calls.push(`schedule ${e}`);
      },
      setSweepOptions: (o) => void calls.push(`sweep ${JSON.stringify(o)}`),
      setLogLevel: (l) => void calls.push(`level ${l}`),
      reopenLog: async (f) => void calls.push(`reopen ${f}`),
    },
  };
}

t.test('applyReload applies reloadable keys, reports the rest, keeps old values on failure', async (t) => {
  const old = await cfg(['--concurrency', '2', '--log-file', '/l/a.log']);
  const next = await cfg(['--concurrency', '4', '--per-host', '2', '--sweep-schedule', '*/5 * * * *', '--sweep-rate', '10', '--log-level', 'debug', '--timeout', '1000', '--cache-dir', '/elsewhere', '--log-file', '/l/a.log']);
  const { calls, targets } = recorder();
  const out = await applyReload(old, next, targets, silentLogger);
  t.same(out.applied.sort(), ['concurrency', 'logLevel', 'perHost', 'sweepRate', 'sweepSchedule'].sort());
  t.same(out.needRestart.sort(), ['cacheDir', 'indexDir', 'timeoutMs'].sort());
  t.same(calls, ['limits {"concurrency":4,"perHost":2}', 'schedule */5 * * * *', 'sweep {"rateMBps":10,"maxDurationMs":0}', 'level debug', 'reopen /l/a.log']);
  t.equal(out.config.concurrency, 4);
  t.equal(out.config.timeoutMs, old.timeoutMs, 'restart-only keys keep their running value');
  t.equal(out.config.cacheDir, old.cacheDir);

  const bad = await cfg(['--concurrency', '2', '--sweep-schedule', 'bad', '--log-file', '/l/b.log']);
  const r2 = recorder();
  const out2 = await applyReload(old, bad, r2.targets, silentLogger);
  t.same(out2.failed.map((f) => f.key), ['sweepSchedule']);
  t.equal(out2.config.sweepSchedule, old.sweepSchedule, 'a schedule that failed to apply is not reported as current');
  t.equal(out2.config.logFile, '/l/b.log', 'log file moved');
  t.same(r2.calls, ['reopen /l/b.log']);

  const r3 = recorder();
  const out3 = await applyReload(old, old, r3.targets, silentLogger);
  t.same([out3.applied, out3.needRestart, r3.calls], [[], [], ['reopen /l/a.log']], 'no change: only the log is reopened');
});

t.test('cache lock: exclusive while the owner lives, stale when it is dead', async (t) => {
  const dir = t.testdir();
  const a = acquireCacheLock(dir, '/s/a.sock');
  const lockPath = path.join(dir, LOCK_FILE);
  t.match(JSON.parse(fs.readFileSync(lockPath, 'utf8')), { pid: process.pid, socket: '/s/a.sock' });
  a.release();
  t.notOk(fs.existsSync(lockPath), 'released');

  // A live owner (a child node process) makes us refuse with its pid and socket.
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  t.teardown(() => child.kill('SIGKILL'));
  fs.writeFileSync(lockPath, JSON.stringify({ pid: child.pid, socket: '/s/live.sock', startedAt: 'then' }));
  t.ok(pidAlive(child.pid!));
  t.throws(() => acquireCacheLock(dir, '/s/b.sock'), { name: 'StartupError', message: new RegExp(`pid ${child.pid}, socket /s/live.sock.*--cache-dir`) });
  t.match(JSON.parse(fs.readFileSync(lockPath, 'utf8')), { pid: child.pid }, 'live lock untouched');

  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  t.notOk(pidAlive(child.pid!));
  const b = acquireCacheLock(dir, '/s/b.sock');
  t.match(b.tookOverStale, { pid: child.pid, socket: '/s/live.sock' });
  t.match(JSON.parse(fs.readFileSync(lockPath, 'utf8')), { pid: process.pid, socket: '/s/b.sock' });
  b.release();

  fs.writeFileSync(lockPath, 'garbage');
  const c = acquireCacheLock(dir, '/s/c.sock');
  t.equal(c.tookOverStale, undefined, 'an unreadable lock is replaced');
  c.release();
});

t.test('logger: console lines on the given stream, JSON lines in the file, reopen after rename', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'sub', 'd.log');
  const out = new PassThrough();
  let text = '';
  out.on('data', (b: Buffer) => (text += b.toString()));
  const log = createDaemonLogger({ level: 'info', logFile: file, console: out, colors: false });
  log.info('hello', { n: 1 });
  log.debug('hidden');
  log.error('failed', { error: Object.assign(new Error('disk on fire'), { code: 'EIO' }) });
  t.match(text, /^\S+Z info hello \{"n":1\}\n/);
  t.notMatch(text, /hidden/);
  t.match(text, /error failed .*"message":"disk on fire".*"code":"EIO"/);
  fs.renameSync(file, `${file}.1`);
  await log.reopen();
  log.info('after');
  log.level = 'debug';
  log.debug('now visible');
  await log.end();
  const oldLines = fs.readFileSync(`${file}.1`, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { message: string });
  const newLines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { message: string });
  t.same(oldLines.map((l) => l.message), ['hello', 'failed']);
  t.same(newLines.map((l) => l.message), ['after', 'now visible']);
});
