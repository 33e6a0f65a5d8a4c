/**
 * A FIFO (or any non-regular file) where a cached file should be: hashing it
 * must answer at once instead of waiting for a writer forever (which held a
 * libuv thread per attempt and stalled every download's file I/O).
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { hashFile, isNotRegularFile } from '../../../src/core/hash/file-hash.js';
import { HashPool } from '../../../src/core/hash/file-hash-pool.js';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { fixture, startOrigin } from '../../helpers/origin.js';

if (process.platform === 'win32') {
  t.plan(0, 'no FIFOs on Windows');
  process.exit(0);
}

/** Settles with `p`, or rejects after `ms` (a hang is a failure, not a tap timeout). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} still pending after ${ms} ms`)), ms);
    }),
  ]);
}

/** Make a FIFO, and in teardown release any reader still blocked on it (so a failing run ends). */
function fifo(t: Test, p: string): string {
  execFileSync('mkfifo', [p]);
  t.teardown(() => {
    try {
      fs.closeSync(fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
    } catch {
      // no reader waiting: nothing to release
    }
  });
  return p;
}

t.test('hashFile and the hash pool refuse a FIFO at once', async (t) => {
  const dir = t.testdir();
  const p = fifo(t, path.join(dir, 'pipe'));
  const e1 = await within(hashFile(p).then(() => undefined, (e: unknown) => e), 5000, 'hashFile on a FIFO');
  t.ok(isNotRegularFile(e1), 'NotRegularFileError');
  const pool = new HashPool({ threads: 1 });
  t.teardown(() => pool.close());
  const e2 = await within(pool.hash(p).then(() => undefined, (e: unknown) => e), 5000, 'HashPool.hash on a FIFO');
  t.ok(isNotRegularFile(e2), 'NotRegularFileError from the worker');
  // The pool goes on working.
  fs.writeFileSync(path.join(dir, 'f'), 'abc');
  t.equal((await pool.hash(path.join(dir, 'f')))?.md5, '900150983cd24fb0d6963f7d28e17f72');
  t.equal(await hashFile(dir).catch((e: unknown) => isNotRegularFile(e)), true, 'a folder is not a regular file either');
});

t.test('verify of a cached file replaced by a FIFO answers "mismatch" and downloads are not stalled', async (t) => {
  const origin = await startOrigin();
  const dir = t.testdir();
  const cache = await MediaCache.open({ cacheDir: dir, retries: 0, timeoutMs: 5000 });
  t.teardown(async () => {
    await cache.close();
    await origin.close();
  });
  origin.route('/a.png', { body: fixture('sample.png') });
  origin.route('/b.gif', { body: fixture('sample.gif') });
  const a = await cache.download(origin.url('/a.png'));
  fs.rmSync(a.localPath);
  fifo(t, a.localPath);
  // More verifies than libuv has threads (4): a blocking open would take them all.
  const outcomes = await within(Promise.all(Array.from({ length: 8 }, () => cache.verify(a.md5))), 5000, 'verify of a FIFO');
  for (const o of outcomes) t.match(o, { ok: false, reason: 'mismatch' });
  t.equal(await within(cache.verifyFile(a.localPath, a.md5), 5000, 'verifyFile of a FIFO'), false);
  const b = await within(cache.download(origin.url('/b.gif')), 10_000, 'a download beside them');
  t.ok(fs.existsSync(b.localPath));
});
