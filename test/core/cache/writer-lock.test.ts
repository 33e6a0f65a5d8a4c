// The one-writer lock on a cache directory (core/cache-lock.ts), as library
// users meet it through MediaCache.open. The daemon side is in
// daemon-lifecycle.test.ts.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { acquireCacheLock, readLock, LOCK_FILE } from '../../../src/core/cache/writer-lock.js';
import type { Logger } from '../../../src/core/util/logger.js';

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const log = (level: string) => (msg: string) => void lines.push(`${level} ${msg}`);
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') } as Logger & { lines: string[] };
}

t.test('a second open of the same cache in one process is refused until the first closes', async (t) => {
  const dir = t.testdir({});
  const a = await MediaCache.open({ cacheDir: dir });
  const lock = readLock(path.join(dir, LOCK_FILE));
  t.equal(lock?.pid, process.pid, 'the lock names this process');
  t.equal(lock?.socket, '', 'as a library user (no socket)');
  await t.rejects(MediaCache.open({ cacheDir: dir }), { code: 'E_UNAVAILABLE', message: /already open in this process/ });
  const otherSpelling = path.relative(process.cwd(), dir) + path.sep;
  t.not(otherSpelling, dir);
  await t.rejects(MediaCache.open({ cacheDir: otherSpelling }), { code: 'E_UNAVAILABLE' }, 'also under another spelling of the path');
  await a.close();
  t.notOk(fs.existsSync(path.join(dir, LOCK_FILE)), 'close() removes the lock');
  const b = await MediaCache.open({ cacheDir: dir });
  await b.close();
  // lock: false is for a caller that holds the lock itself (the daemon)
  const held = acquireCacheLock(dir, { socket: '/run/x.sock' });
  const c = await MediaCache.open({ cacheDir: dir, lock: false });
  await c.close();
  t.ok(fs.existsSync(held.path), 'an instance opened with lock: false leaves the holder its lock');
  held.release();
  t.notOk(fs.existsSync(held.path));
});

t.test('a live process holding the lock is named; a dead one is taken over', async (t) => {
  const dir = t.testdir({});
  // Another live node process "holds" the cache.
  const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  t.teardown(() => other.kill('SIGKILL'));
  await new Promise((r) => other.once('spawn', r));
  const startedAt = '2026-11-25T00:00:00.000Z';
  fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ pid: other.pid, socket: '', startedAt }));
  await t.rejects(MediaCache.open({ cacheDir: dir }), {
    code: 'E_UNAVAILABLE',
    message: new RegExp(`in use by process ${other.pid} \\(a library user, since ${startedAt}\\)`),
    holder: { pid: other.pid },
  });
  t.equal(readLock(path.join(dir, LOCK_FILE))?.pid, other.pid, 'the holder keeps its lock');
  other.kill('SIGKILL');
  await new Promise((r) => other.once('exit', r));
  const logger = recordingLogger();
  const c = await MediaCache.open({ cacheDir: dir, logger });
  t.equal(readLock(path.join(dir, LOCK_FILE))?.pid, process.pid, 'the stale lock was taken over');
  t.ok(logger.lines.some((l) => l.startsWith('warn replaced a stale cache lock')), 'and that was logged');
  await c.close();
  // An unreadable lock file is stale too.
  fs.writeFileSync(path.join(dir, LOCK_FILE), 'garbage');
  const d = await MediaCache.open({ cacheDir: dir });
  await d.close();
});

t.test('a failed open releases the lock', async (t) => {
  const dir = t.testdir({});
  // The index location is a file: IndexDb cannot open it.
  const indexDir = path.join(dir, 'index-is-a-file');
  fs.writeFileSync(indexDir, 'x');
  await t.rejects(MediaCache.open({ cacheDir: path.join(dir, 'c'), indexDir }));
  t.notOk(fs.existsSync(path.join(dir, 'c', LOCK_FILE)), 'no lock left behind');
  const ok = await MediaCache.open({ cacheDir: path.join(dir, 'c') });
  await ok.close();
});
