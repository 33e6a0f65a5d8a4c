import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MediaCache, type MediaCacheOptions } from '../../../src/core/cache/media-cache.js';
import { MediaCacheError } from '../../../src/core/errors.js';
import { IndexDb } from '../../../src/core/entry-index/index-db.js';
import { storePath } from '../../../src/core/content/store.js';
import { bytesToFree, lowWater, planEviction, storedLastUsed, type Candidate } from '../../../src/core/quota/policy.js';
import { startOrigin, type Origin } from '../../helpers/origin.js';
import { mediaBody, md5Of } from '../../helpers/media.js';
import { waitFor } from '../../helpers/wait.js';

const KiB = 1024;
const MiB = 1024 * KiB;

t.test('planner: watermarks and least-recently-used order, never pinned or busy', async (t) => {
  const l = { maxSize: 1000, minFree: 0 };
  t.equal(lowWater(l), 900);
  t.equal(bytesToFree({ used: 800, incoming: 100 }, l), 0, 'fits: nothing to free');
  t.equal(bytesToFree({ used: 950, incoming: 100 }, l), 150, 'past max: down to the low watermark, room for the incoming bytes');
  t.equal(bytesToFree({ used: 0, incoming: 0, free: 50 }, { maxSize: 0, minFree: 100 }), 60, 'min-free: up to 110% of it');
  t.equal(bytesToFree({ used: 10, incoming: 0, free: 500 }, { maxSize: 0, minFree: 100 }), 0);
  const c = (md5: string, lastUsed: number, extra: Partial<Candidate> = {}): Candidate => ({ md5, size: 100, lastUsed, pinned: false, busy: false, ...extra });
  const plan = planEviction([c('a', 5), c('b', 1), c('c', 3, { pinned: true }), c('d', 2, { busy: true }), c('e', 4)], 150);
  t.same(plan.victims.map((v) => v.md5), ['b', 'e'], 'oldest unpinned, idle first');
  t.equal(plan.pinnedBytes, 100);
  t.equal(plan.busyBytes, 100);
  t.equal(plan.short, 0);
  const blocked = planEviction([c('p', 1, { pinned: true })], 100);
  t.same(blocked.victims, []);
  t.equal(blocked.short, 100, 'nothing evictable: the whole need is short');
  t.equal(storedLastUsed({ fetchedAt: '2020-01-01T00:00:00Z' }), Date.parse('2020-01-01T00:00:00Z'), 'an old record counts from its fetch');
});

interface H {
  cache: MediaCache;
  origin: Origin;
  dir: string;
  url: (i: number) => string;
  bodies: Map<number, Buffer>;
}

async function setup(t: Test, opts: Partial<MediaCacheOptions>, files: number, size: number): Promise<H> {
  let h: H | undefined;
  t.teardown(async () => {
    await h?.cache.close();
    await h?.origin.close();
  });
  const dir = t.testdir();
  const origin = await startOrigin();
  const bodies = new Map<number, Buffer>();
  for (let i = 0; i < files; i++) {
    const b = mediaBody(`${t.name}-${i}`, size);
    bodies.set(i, b);
    origin.route(`/f/${i}`, { body: b, headers: { 'content-type': 'image/png' } });
  }
  const cache = await MediaCache.open({ cacheDir: dir, flushDelayMs: 5, ...opts });
  h = { cache, origin, dir, url: (i) => origin.url(`/f/${i}`), bodies };
  return h;
}

/** Bytes of the files in the type folders, as on disk. */
function diskBytes(dir: string): number {
  let n = 0;
  for (const sub of ['images', 'videos', 'audio', 'documents']) {
    for (const f of fs.readdirSync(path.join(dir, sub))) n += fs.statSync(path.join(dir, sub, f)).size;
  }
  return n;
}

/** Every record agrees with the disk: a present record has its file, an evicted one none; nothing left in flux. */
function agreement(db: { records(): Iterable<import('../../../src/core/types.js').StoredRecord> }, dir: string): string[] {
  const bad: string[] = [];
  for (const r of db.records()) {
    const exists = fs.existsSync(storePath(dir, r));
    if (r.evicting) bad.push(`${r.md5} still evicting`);
    else if (r.evictedAt === undefined && !exists) bad.push(`${r.md5} present in the index, no file`);
    else if (r.evictedAt !== undefined && exists) bad.push(`${r.md5} evicted in the index, file still there`);
  }
  return bad;
}

t.test('feeding 3x the quota: stays under it, the recently used file survives, index and disk agree', async (t) => {
  const size = 256 * KiB;
  const maxSize = 4 * MiB;
  const files = 48; // 12 MiB
  const h = await setup(t, { maxSize, concurrency: 3 }, files, size);
  let next = 1;
  let peakDisk = 0;
  await h.cache.download(h.url(0));
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= files) return;
      await h.cache.download(h.url(i));
      peakDisk = Math.max(peakDisk, diskBytes(h.dir));
      t.ok((await h.cache.stats()).totalSize <= maxSize, `index total within the quota after file ${i}`);
      // File 0 is used again every few downloads (a cache hit counts as a use).
      if (i % 4 === 0) await h.cache.download(h.url(0));
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  t.ok(peakDisk <= maxSize + size, `disk peak ${peakDisk} within the quota plus one in-flight file`);
  const s = (await h.cache.stats());
  t.ok(s.totalSize <= maxSize && s.totalSize > lowWater({ maxSize, minFree: 0 }) - 2 * size, `used ${s.totalSize} near the quota`);
  t.ok((s.evicted?.count ?? 0) >= files - maxSize / size, `evicted ${s.evicted?.count} records`);
  t.equal(s.quota?.maxSize, maxSize);
  t.equal(s.quota?.blockedByPinned, false);
  const first = (await h.cache.findByUrl(h.url(0)))!;
  t.equal(first.evictedAt, undefined, 'the most recently used file survived');
  t.ok(fs.existsSync(first.localPath));
  t.equal(h.origin.hits('/f/0'), 1, 'and was never downloaded again');
  const oldUnused = (await h.cache.findByUrl(h.url(1)))!;
  t.ok(oldUnused.evictedAt, 'an old, unused file was evicted');
  t.same(oldUnused.urls, [h.url(1)], 'evicted records keep their URLs');
  t.equal(oldUnused.md5, md5Of(h.bodies.get(1)!), 'and their metadata');
  await h.cache.quota.idle(); // a background eviction may still be running
  t.same(agreement(h.cache.index.embedded!, h.dir), []);
});

t.test('re-adding an evicted URL downloads it again and the record says so', async (t) => {
  const size = 300 * KiB;
  const h = await setup(t, { maxSize: MiB }, 8, size);
  for (let i = 0; i < 8; i++) await h.cache.download(h.url(i));
  const before = (await h.cache.findByUrl(h.url(0)))!;
  t.ok(before.evictedAt, 'find says it was evicted');
  t.notOk(fs.existsSync(before.localPath));
  t.equal((await h.cache.stats()).evicted!.size % size, 0, 'evicted bytes counted');
  const again = await h.cache.download(h.url(0));
  t.equal(h.origin.hits('/f/0'), 2, 'downloaded again');
  t.equal(again.md5, before.md5);
  t.equal(again.evictedAt, undefined);
  t.ok(again.restoredAt, `restoredAt ${again.restoredAt}`);
  t.ok(fs.existsSync(again.localPath));
  t.equal((await h.cache.findByUrl(h.url(0)))!.restoredAt, again.restoredAt, 'find shows it too');
  await h.cache.quota.idle(); // a background eviction may still be running
  t.same(agreement(h.cache.index.embedded!, h.dir), []);
});

t.test('pinned content survives, even alone over the quota; the state is reported', async (t) => {
  const size = 400 * KiB;
  const warnings: string[] = [];
  const logger = { error: () => undefined, warn: (m: string) => void warnings.push(m), info: () => undefined, debug: () => undefined };
  const h = await setup(t, { maxSize: MiB, logger }, 9, size);
  for (let i = 0; i < 3; i++) await h.cache.download(h.url(i), { pin: true }); // 1.2 MiB pinned
  for (let i = 3; i < 9; i++) await h.cache.download(h.url(i));
  for (let i = 0; i < 3; i++) {
    const r = (await h.cache.findByUrl(h.url(i)))!;
    t.equal(r.pinned, true);
    t.equal(r.evictedAt, undefined, `pinned file ${i} kept`);
    t.ok(fs.existsSync(r.localPath));
  }
  const s = (await h.cache.stats());
  t.same(s.pinned, { count: 3, size: 3 * size });
  t.equal(s.quota?.blockedByPinned, true, 'stats say the quota cannot be met');
  t.ok(warnings.some((w) => /pinned/.test(w)), 'and the log says why');
  // Unpinning lets the quota be met at once.
  await h.cache.pin(h.url(0), false);
  await h.cache.pin(h.url(1), false);
  const after = (await h.cache.stats());
  t.ok(after.totalSize <= MiB, `after unpinning: ${after.totalSize} within the quota`);
  t.equal(after.quota?.blockedByPinned, false);
  t.equal((await h.cache.findByUrl(h.url(2)))!.evictedAt, undefined, 'the one still pinned stays');
  await h.cache.quota.idle(); // a background eviction may still be running
  t.same(agreement(h.cache.index.embedded!, h.dir), []);
});

t.test('content larger than the whole quota is refused with E_QUOTA', async (t) => {
  const h = await setup(t, { maxSize: MiB }, 1, 2 * MiB);
  await t.rejects(h.cache.download(h.url(0)), { code: 'E_QUOTA' }, 'by its Content-Length');
  const big = mediaBody('chunked', 2 * MiB);
  h.origin.route('/chunked', (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png' }); // no length: chunked
    res.end(big);
  });
  const err = await h.cache.download(h.origin.url('/chunked')).catch((e: unknown) => e);
  t.ok(err instanceof MediaCacheError && err.code === 'E_QUOTA', 'by the bytes received');
  t.same(fs.readdirSync(path.join(h.dir, '.tmp')), [], 'nothing left in .tmp');
  t.equal((await h.cache.stats()).totalFiles, 0);
});

t.test('kill -9 during eviction leaves the index and the disk in agreement', async (t) => {
  const dir = path.join(t.testdir(), 'cache');
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const ROUTES = 40;
  for (let i = 0; i < ROUTES; i++) origin.route(`/f/${i}`, { body: mediaBody(`crash-${i}`, 64 * KiB) });
  const child = fileURLToPath(new URL('../../scripts/evict-crash-child.ts', import.meta.url));
  const tsLoader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  // Life 0 hangs right after the marks are durable (killed between marks and
  // unlinks); the others are killed wherever they are after a few evictions.
  for (let life = 0; life < 4; life++) {
    const proc = spawn(process.execPath, [...tsLoader, child, dir, origin.base, String(ROUTES), String(512 * KiB), life === 0 ? 'hang' : 'run'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env,
    });
    t.teardown(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    });
    let marks = 0;
    let err = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (c: string) => {
      err += c;
      marks += c.split('\n').filter((l) => l.startsWith('marked ')).length;
    });
    const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
    await waitFor(() => marks >= (life === 0 ? 1 : 2 + life) || proc.exitCode !== null, { timeoutMs: 120_000, intervalMs: 1, what: 'evictions in the child' });
    t.equal(proc.exitCode, null, `child ${life} running (${err.slice(-300)})`);
    proc.kill('SIGKILL');
    await exited;
    // As the crash left it: every record present with its file, evicted
    // without, or still flagged evicting (settled at the next open).
    const raw = await IndexDb.open(path.join(dir, 'index'));
    let inFlux = 0;
    for (const r of raw.records()) {
      const exists = fs.existsSync(storePath(dir, r));
      if (r.evicting) inFlux++;
      else t.equal(exists, r.evictedAt === undefined, `life ${life}: ${r.md5} ${r.evictedAt ? 'evicted' : 'present'}, file ${exists ? 'there' : 'absent'}`);
    }
    if (life === 0) t.ok(inFlux > 0, `killed between the marks and the unlinks: ${inFlux} record(s) in flux`);
    await raw.close();
    // Opening the cache settles them: the index and the disk agree.
    const cache = await MediaCache.open({ cacheDir: dir, maxSize: 512 * KiB });
    await cache.quota.idle(); // past the early watermark, open starts an eviction in the background
    t.same(agreement(cache.index.embedded!, dir), [], `life ${life}: index and disk agree after the restart`);
    t.ok((await cache.stats()).totalSize <= 512 * KiB, 'within the quota');
    await cache.close();
  }
});

t.test('--min-free that cannot be met evicts everything evictable and says so', async (t) => {
  const warnings: string[] = [];
  const logger = { error: () => undefined, warn: (m: string) => void warnings.push(m), info: () => undefined, debug: () => undefined };
  const st = await fs.promises.statfs(process.cwd()); // the test folder is below it: same filesystem
  const impossible = st.bavail * st.bsize + 1024 ** 4; // a TiB more than the disk has free
  const h = await setup(t, { minFree: impossible, logger }, 3, 100 * KiB);
  for (let i = 0; i < 3; i++) await h.cache.download(h.url(i));
  const s = (await h.cache.stats());
  t.equal(s.totalFiles, 1, 'only the newest file is left');
  t.equal(s.evicted?.count, 2);
  t.ok(s.quota?.free !== undefined && s.quota.free > 0, `free space measured: ${s.quota?.free}`);
  t.equal(s.quota?.unmet, true);
  t.equal(s.quota?.blockedByPinned, false, 'nothing pinned is to blame');
  t.ok(warnings.some((w) => /cannot be met/.test(w)));
  await h.cache.quota.idle(); // a background eviction may still be running
  t.same(agreement(h.cache.index.embedded!, h.dir), []);
});
