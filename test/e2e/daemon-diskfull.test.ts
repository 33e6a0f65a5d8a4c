/**
 * End to end: the cache on a 20 MiB tmpfs that fills up. Downloads that do
 * not fit fail with E_DISK_FULL and stay queued, the daemon stays up, nothing
 * partial is left in the type folders or .tmp/, the index stays valid, and
 * the queue moves again once space is freed. Needs root (mount); skipped
 * otherwise.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { startDaemon, makeRoot } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { IndexDb } from '../../src/core/entry-index/index-db.js';
import { TYPE_DIRS } from '../../src/core/types.js';

const PNG = fixture('sample.png');
const MiB = 1024 * 1024;
const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');

function tryMount(dir: string): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'needs root on Linux to mount a tmpfs';
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', dir], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `mount -t tmpfs failed: ${r.stderr || r.error?.message || r.status}`;
}

function cachedFiles(cacheDir: string): string[] {
  return Object.values(TYPE_DIRS).flatMap((d) => {
    const p = path.join(cacheDir, d);
    return fs.existsSync(p) ? fs.readdirSync(p).map((n) => path.join(p, n)) : [];
  });
}

t.test('disk full: jobs wait, the daemon stays up, the queue moves once space is freed', async (t) => {
  const root = makeRoot();
  const cacheDir = path.join(root, 'cache');
  fs.mkdirSync(cacheDir);
  const why = tryMount(cacheDir);
  if (why) {
    fs.rmSync(root, { recursive: true, force: true });
    return t.plan(0, `skip: ${why}`);
  }
  // Registered before the daemon's own teardown, so it runs first: a lazy
  // unmount detaches at once and frees the memory when the daemon is gone.
  t.teardown(() => {
    spawnSync('umount', ['-l', cacheDir]);
    fs.rmSync(root, { recursive: true, force: true });
  });
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const bodies = Array.from({ length: 5 }, (_, i) => Buffer.concat([PNG, Buffer.alloc(2 * MiB, i + 1)]));
  bodies.forEach((b, i) => origin.route(`/big${i}.png`, { body: b }));

  const d = await startDaemon(t, { root, args: ['--concurrency', '2'] });
  // Leave about 5 MiB: room for two of the five 2 MiB files.
  const st = fs.statfsSync(cacheDir);
  const filler = path.join(cacheDir, 'filler.bin');
  fs.writeFileSync(filler, Buffer.alloc(Math.max(0, st.bavail * st.bsize - 5 * MiB)));

  const added = await d.rpc('add', { urls: bodies.map((_, i) => origin.url(`/big${i}.png`)) });
  t.equal(added.items.length, 5);

  const fullJob = await waitFor(
    async () => (await d.rpc('jobs', { state: 'queued' })).jobs.find((j) => j.lastError?.code === 'E_DISK_FULL'),
    { timeoutMs: 30_000, what: 'a job held back by E_DISK_FULL' },
  );
  t.equal(fullJob.state, 'queued', 'disk full keeps the job queued');
  t.ok(fullJob.nextRetryAt, 'with a backoff time');
  const status = await d.rpc('status', {});
  t.equal(status.queue.failed, 0, 'no job failed because of the full disk');
  t.ok(status.queue.done <= 2, `only what fits was cached (${status.queue.done})`);
  t.equal(d.exitStatus(), undefined, 'daemon still up');

  // Nothing partial: .tmp/ drains, every file in the type folders is complete.
  await waitFor(() => (d.exitStatus() ? true : fs.readdirSync(path.join(cacheDir, '.tmp')).length === 0), { timeoutMs: 15_000, what: '.tmp/ empty' });
  for (const f of cachedFiles(cacheDir)) t.equal(md5(fs.readFileSync(f)), path.basename(f, path.extname(f)), `${path.basename(f)} complete`);

  // Free the space: the queue moves again.
  fs.rmSync(filler);
  const done = await waitFor(
    async () => {
      const s = await d.rpc('stats', {});
      return s.queue.done === 5 ? s : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200, what: 'all five done after space was freed' },
  );
  t.equal(done.totalFiles, 5);
  t.equal(done.queue.failed, 0);
  const files = cachedFiles(cacheDir);
  t.same(files.map((f) => path.basename(f, '.png')).sort(), bodies.map(md5).sort(), 'all five cached, by md5');

  t.equal((await d.stop()).code, 0, 'clean shutdown');
  const idx = await IndexDb.open(path.join(cacheDir, 'index'));
  t.same(idx.recovered, [], 'no corrupt index shard');
  t.equal(idx.needsRebuild, false);
  t.equal(idx.size, 5);
  await idx.close();
});
