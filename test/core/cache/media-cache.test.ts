import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MediaCache, type MediaCacheOptions } from '../../../src/core/cache/media-cache.js';
import { MediaCacheError } from '../../../src/core/errors.js';
import type { Logger } from '../../../src/core/util/logger.js';
import type { MediaRecord } from '../../../src/core/types.js';
import { HashPool } from '../../../src/core/hash/file-hash-pool.js';
import { startOrigin, fixture, COLLISION_DIR, type Origin } from '../../helpers/origin.js';

const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');
const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

/** Every fixture: what the cache must make of it. */
const FIXTURES: Array<{ file: string; mediaType: string; ext: string; mime: string; dims?: [number, number] }> = [
  { file: 'sample.jpg', mediaType: 'image', ext: '.jpg', mime: 'image/jpeg', dims: [64, 48] },
  { file: 'sample.png', mediaType: 'image', ext: '.png', mime: 'image/png', dims: [40, 30] },
  { file: 'sample.gif', mediaType: 'image', ext: '.gif', mime: 'image/gif', dims: [32, 24] },
  { file: 'sample.webp', mediaType: 'image', ext: '.webp', mime: 'image/webp', dims: [50, 20] },
  { file: 'sample.bmp', mediaType: 'image', ext: '.bmp', mime: 'image/bmp', dims: [16, 16] },
  { file: 'sample.tiff', mediaType: 'image', ext: '.tiff', mime: 'image/tiff', dims: [20, 10] },
  { file: 'sample.ico', mediaType: 'image', ext: '.ico', mime: 'image/vnd.microsoft.icon', dims: [16, 16] },
  { file: 'sample.avif', mediaType: 'image', ext: '.avif', mime: 'image/avif', dims: [24, 12] },
  { file: 'sample.svg', mediaType: 'image', ext: '.svg', mime: 'image/svg+xml', dims: [120, 80] },
  { file: 'sample.mp4', mediaType: 'video', ext: '.mp4', mime: 'video/mp4' },
  { file: 'sample.webm', mediaType: 'video', ext: '.webm', mime: 'video/webm' },
  { file: 'sample.mov', mediaType: 'video', ext: '.mov', mime: 'video/quicktime' },
  { file: 'sample.mkv', mediaType: 'video', ext: '.mkv', mime: 'video/x-matroska' },
  { file: 'sample.avi', mediaType: 'video', ext: '.avi', mime: 'video/x-msvideo' },
  { file: 'sample.mpeg', mediaType: 'video', ext: '.mpeg', mime: 'video/mpeg' },
  { file: 'sample.ogv', mediaType: 'video', ext: '.ogv', mime: 'video/ogg' },
  { file: 'sample.mp3', mediaType: 'audio', ext: '.mp3', mime: 'audio/mpeg' },
  { file: 'sample.ogg', mediaType: 'audio', ext: '.ogg', mime: 'audio/ogg' },
  { file: 'sample.opus', mediaType: 'audio', ext: '.opus', mime: 'audio/opus' },
  { file: 'sample.wav', mediaType: 'audio', ext: '.wav', mime: 'audio/wav' },
  { file: 'sample.flac', mediaType: 'audio', ext: '.flac', mime: 'audio/flac' },
  { file: 'sample.m4a', mediaType: 'audio', ext: '.m4a', mime: 'audio/mp4' },
  { file: 'sample.pdf', mediaType: 'document', ext: '.pdf', mime: 'application/pdf' },
];
const TYPE_DIR: Record<string, string> = { image: 'images', video: 'videos', audio: 'audio', document: 'documents' };

interface Harness {
  cache: MediaCache;
  origin: Origin;
  dir: string;
  logs: Array<{ level: string; message: string; meta?: Record<string, unknown> }>;
}

async function setup(t: Test, opts: Partial<MediaCacheOptions> = {}): Promise<Harness> {
  // Registered before t.testdir(): teardowns run in order, and the index must
  // be flushed before tap removes the folder.
  let h: Harness | undefined;
  t.teardown(async () => {
    await h?.cache.close();
    await h?.origin.close();
  });
  const dir = t.testdir();
  const origin = await startOrigin();
  const logs: Harness['logs'] = [];
  const rec =
    (level: string) =>
    (message: string, meta?: Record<string, unknown>): void =>
      void logs.push({ level, message, meta });
  const logger: Logger = { error: rec('error'), warn: rec('warn'), info: rec('info'), debug: rec('debug') };
  const cache = await MediaCache.open({ cacheDir: path.join(dir, 'cache'), logger, retries: 0, timeoutMs: 5000, ...opts });
  h = { cache, origin, dir, logs };
  return h;
}

async function rejectsCode(t: Test, p: Promise<unknown>, code: string, msg: string): Promise<MediaCacheError | undefined> {
  try {
    await p;
    t.fail(`${msg}: expected ${code}, it resolved`);
    return undefined;
  } catch (e) {
    t.type(e, MediaCacheError, `${msg}: a MediaCacheError`);
    t.equal((e as MediaCacheError).code, code, `${msg}: ${code}`);
    return e as MediaCacheError;
  }
}

function typeDirFiles(cacheDir: string): string[] {
  return Object.values(TYPE_DIR).flatMap((d) => {
    const p = path.join(cacheDir, d);
    return fs.existsSync(p) ? fs.readdirSync(p).map((f) => `${d}/${f}`) : [];
  });
}

t.test('every fixture type is cached with a complete, correct record', async (t) => {
  const { cache, origin } = await setup(t);
  const lastModified = 'Wed, 21 Oct 2015 07:28:00 GMT';
  for (const f of FIXTURES) {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (f.file === 'sample.png') Object.assign(headers, { etag: '"png-v1"', 'last-modified': lastModified });
    origin.route(`/m/${f.file}`, { body: fixture(f.file), headers });
  }
  const before = Date.now();
  for (const f of FIXTURES) {
    const body = fixture(f.file);
    const url = origin.url(`/m/${f.file}`);
    const r = await cache.download(url);
    t.test(f.file, async (t) => {
      t.equal(r.md5, md5(body), 'md5 of the content');
      t.equal(r.sha256, sha256(body), 'sha256 of the content');
      t.equal(r.fileSize, body.length, 'size');
      t.equal(r.mediaType, f.mediaType, 'media type');
      t.equal(r.extension, f.ext, 'extension');
      t.equal(r.mimeType, f.mime, 'mime type');
      if (f.dims) t.same([r.width, r.height], f.dims, 'dimensions');
      t.equal(r.url, url, 'url of this request');
      t.same(r.urls, [url], 'urls');
      t.equal(r.localPath, path.join(cache.cacheDir, TYPE_DIR[f.mediaType], `${r.md5}${f.ext}`), 'local path');
      t.ok(fs.readFileSync(r.localPath).equals(body), 'file holds the exact bytes');
      for (const k of ['fetchedAt', 'verifiedAt'] as const) {
        const ts = Date.parse(r[k]);
        t.ok(ts >= before - 1000 && ts <= Date.now() + 1000, `${k} is a current ISO time`);
        t.equal(new Date(ts).toISOString(), r[k], `${k} is ISO`);
      }
      if (f.file === 'sample.png') {
        t.equal(r.etag, '"png-v1"', 'etag kept');
        t.equal(r.lastModified, lastModified, 'last-modified kept');
      } else {
        t.notOk('etag' in r, 'no etag when the origin sent none');
      }
    });
  }
  const stats = (await cache.stats());
  t.equal(stats.totalFiles, FIXTURES.length, 'stats: one file per fixture');
  t.equal(stats.totalSize, FIXTURES.reduce((n, f) => n + fixture(f.file).length, 0), 'stats: total size');
  for (const type of ['image', 'video', 'audio', 'document'] as const) {
    const mine = FIXTURES.filter((f) => f.mediaType === type);
    t.same(stats.byType[type], { count: mine.length, size: mine.reduce((n, f) => n + fixture(f.file).length, 0) }, `stats: ${type}`);
  }
  t.equal(fs.readdirSync(path.join(cache.cacheDir, '.tmp')).length, 0, 'nothing left in .tmp');
  t.ok(fs.existsSync(path.join(cache.cacheDir, 'CACHEDIR.TAG')), 'CACHEDIR.TAG written');
});

t.test('a cached URL is answered without a request; force fetches again', async (t) => {
  const { cache, origin } = await setup(t);
  origin.route('/a.jpg', { body: fixture('sample.jpg') });
  const url = origin.url('/a.jpg');
  const first = await cache.download(url);
  t.equal(origin.hits('/a.jpg'), 1);
  const again = await cache.download(`  ${url}  `);
  t.equal(origin.hits('/a.jpg'), 1, 'no second request');
  t.same(again, first, 'same record');
  t.same((await cache.findByUrl(url)), first, 'findByUrl');
  const forced = await cache.download(url, { force: true });
  t.equal(origin.hits('/a.jpg'), 2, 'force re-requests');
  t.equal(forced.md5, first.md5);
  t.same(forced.urls, [url], 'url not listed twice');
});

t.test('a cached record whose file vanished is fetched again and repaired', async (t) => {
  const { cache, origin } = await setup(t);
  origin.route('/a.png', { body: fixture('sample.png') });
  const r = await cache.download(origin.url('/a.png'));
  fs.rmSync(r.localPath);
  const r2 = await cache.download(origin.url('/a.png'));
  t.equal(origin.hits('/a.png'), 2, 'fetched again');
  t.ok(fs.readFileSync(r2.localPath).equals(fixture('sample.png')), 'file restored');
  // Truncated copy (wrong size) is also repaired.
  fs.writeFileSync(r.localPath, fixture('sample.png').subarray(0, 100));
  await cache.download(origin.url('/a.png'));
  t.equal(origin.hits('/a.png'), 3);
  t.ok(fs.readFileSync(r.localPath).equals(fixture('sample.png')), 'truncated file replaced');
  // Same size, one flipped byte: only a forced download (or a sweep) can tell; force repairs it.
  const bad = fixture('sample.png');
  bad[bad.length >> 1] ^= 0xff;
  fs.writeFileSync(r.localPath, bad);
  await cache.download(origin.url('/a.png'));
  t.equal(origin.hits('/a.png'), 3, 'same-size file answered from the cache');
  await cache.download(origin.url('/a.png'), { force: true });
  t.equal(origin.hits('/a.png'), 4);
  t.ok(fs.readFileSync(r.localPath).equals(fixture('sample.png')), 'forced download repaired the corrupt copy');
  t.equal((await cache.verify(r.md5)).ok, true);
});

t.test('50 concurrent downloads of one URL: one request, one file, one record', async (t) => {
  const { cache, origin } = await setup(t);
  // Slow enough that every call arrives while the first is in flight.
  origin.route('/v.mp4', { body: fixture('sample.mp4'), bytesPerSec: 16 * 1024 });
  const url = origin.url('/v.mp4');
  const all = await Promise.all(Array.from({ length: 50 }, () => cache.download(url)));
  t.ok(origin.hits('/v.mp4') <= 1, `requests: ${origin.hits('/v.mp4')}`);
  t.equal(new Set(all.map((r) => JSON.stringify(r))).size, 1, 'all 50 got the same record');
  t.same(typeDirFiles(cache.cacheDir), [`videos/${md5(fixture('sample.mp4'))}.mp4`], 'exactly one file');
  t.equal((await cache.stats()).totalFiles, 1);
});

t.test('two URLs with the same bytes: one file, both URLs recorded', async (t) => {
  const { cache, origin } = await setup(t);
  origin.route('/one.gif', { body: fixture('sample.gif') });
  origin.route('/two.php', { body: fixture('sample.gif'), headers: { 'content-type': 'text/html' } });
  const a = await cache.download(origin.url('/one.gif'));
  const b = await cache.download(origin.url('/two.php'));
  t.equal(a.md5, b.md5);
  t.equal(b.localPath, a.localPath);
  t.equal(b.url, origin.url('/two.php'), 'url is this request');
  t.same(b.urls, [origin.url('/one.gif'), origin.url('/two.php')], 'urls lists both');
  t.same(typeDirFiles(cache.cacheDir), [`images/${a.md5}.gif`], 'one file');
  t.same((await cache.findByUrl(origin.url('/two.php')))?.md5, a.md5, 'second URL indexed');
  // Both concurrently, on a fresh md5: still one file.
  origin.route('/x1.webp', { body: fixture('sample.webp'), bytesPerSec: 8 * 1024 });
  origin.route('/x2.webp', { body: fixture('sample.webp'), bytesPerSec: 8 * 1024 });
  const [c, d] = await Promise.all([cache.download(origin.url('/x1.webp')), cache.download(origin.url('/x2.webp'))]);
  t.equal(c.md5, d.md5);
  t.same((await cache.find(c.md5))?.urls.slice().sort(), [origin.url('/x1.webp'), origin.url('/x2.webp')].sort());
  t.equal(typeDirFiles(cache.cacheDir).length, 2);
});

t.test('a real MD5 collision is refused and never replaces the cached file', async (t) => {
  const { cache, origin } = await setup(t);
  const one = fs.readFileSync(path.join(COLLISION_DIR, 'md5-1.jpg'));
  const two = fs.readFileSync(path.join(COLLISION_DIR, 'md5-2.jpg'));
  t.equal(md5(one), md5(two), 'precondition: same md5');
  t.not(sha256(one), sha256(two), 'precondition: different sha256');
  origin.route('/c1.jpg', { body: one });
  origin.route('/c2.jpg', { body: two });
  const first = await cache.download(origin.url('/c1.jpg'));
  t.equal(first.sha256, sha256(one));
  const err = await rejectsCode(t, cache.download(origin.url('/c2.jpg')), 'E_INTEGRITY', 'second of the pair');
  t.match(err?.message, /md5 collision/);
  t.equal(sha256(fs.readFileSync(first.localPath)), sha256(one), 'cached file still holds the first bytes');
  t.same((await cache.find(first.md5))?.urls, [origin.url('/c1.jpg')], 'the colliding URL is not recorded');
  t.equal((await cache.findByUrl(origin.url('/c2.jpg'))), undefined);
  t.equal(fs.readdirSync(path.join(cache.cacheDir, '.tmp')).length, 0, 'colliding download dropped from .tmp');
  // Asking again (and forcing) still refuses.
  await rejectsCode(t, cache.download(origin.url('/c2.jpg'), { force: true }), 'E_INTEGRITY', 'forced');
  t.equal(sha256(fs.readFileSync(first.localPath)), sha256(one));
});

t.test('verify, verifyFile and verifiedAt', async (t) => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const { cache, origin } = await setup(t, { now: () => now });
  origin.route('/p.pdf', { body: fixture('sample.pdf') });
  const r = await cache.download(origin.url('/p.pdf'));
  t.equal(r.verifiedAt, '2026-01-01T00:00:00.000Z', 'injected clock');
  t.equal(await cache.verifyFile(r.localPath, r.md5), true);
  t.equal(await cache.verifyFile(r.localPath, r.md5.toUpperCase()), true, 'md5 case-insensitive');
  t.equal(await cache.verifyFile(r.localPath, '0'.repeat(32)), false, 'wrong md5');
  t.equal(await cache.verifyFile(path.join(cache.cacheDir, 'nope.pdf'), r.md5), false, 'missing file');
  t.equal(await cache.verifyFile(cache.cacheDir, r.md5), false, 'a folder');
  now += 60_000;
  const ok = await cache.verify(r.md5.slice(0, 10));
  t.equal(ok.ok, true);
  t.equal(ok.record.verifiedAt, '2026-01-01T00:01:00.000Z', 'verifiedAt updated');
  t.equal((await cache.find(r.md5))?.verifiedAt, '2026-01-01T00:01:00.000Z', 'and stored');
  // Flip one byte.
  const buf = fs.readFileSync(r.localPath);
  buf[buf.length >> 1] ^= 0xff;
  fs.writeFileSync(r.localPath, buf);
  t.equal(await cache.verifyFile(r.localPath, r.md5), false, 'flipped byte detected');
  now += 60_000;
  const bad = await cache.verify(r.md5);
  t.same([bad.ok, bad.reason], [false, 'mismatch']);
  // The same through worker threads (what the daemon's `verify --all` uses).
  const pool = new HashPool({ threads: 1 });
  t.teardown(() => pool.close());
  const paths: string[] = [];
  const hasher = (p: string): ReturnType<HashPool['hash']> => (paths.push(p), pool.hash(p));
  const badInPool = await cache.verify(r.md5, { hasher });
  t.same([badInPool.ok, badInPool.reason], [false, 'mismatch'], 'a hasher in worker threads finds it too');
  t.same(paths, [r.localPath], 'and it was the one used');
  t.equal((await cache.find(r.md5))?.verifiedAt, '2026-01-01T00:01:00.000Z', 'verifiedAt not advanced by a failed verify');
  fs.rmSync(r.localPath);
  const gone = await cache.verify(r.md5);
  t.same([gone.ok, gone.reason], [false, 'missing']);
  await rejectsCode(t, cache.verify('0'.repeat(32)), 'E_NOT_FOUND', 'unknown md5');
});

t.test('find by full md5, unique prefix, ambiguous prefix; remove', async (t) => {
  const { cache, origin } = await setup(t);
  for (const f of FIXTURES) origin.route(`/${f.file}`, { body: fixture(f.file) });
  const recs: MediaRecord[] = await cache.downloadMany(
    FIXTURES.map((f) => origin.url(`/${f.file}`)),
    { maxWorkers: 4 },
  );
  t.equal(recs.length, FIXTURES.length);
  t.same(recs.map((r) => r.url), FIXTURES.map((f) => origin.url(`/${f.file}`)), 'input order');
  const md5s = recs.map((r) => r.md5);
  // A prefix unique among these md5s, 12 chars long.
  const target = recs[0];
  t.equal((await cache.find(target.md5.slice(0, 12)))?.md5, target.md5, '12-char prefix');
  t.equal((await cache.find(target.md5.toUpperCase()))?.md5, target.md5, 'upper case accepted');
  t.equal((await cache.find(target.md5))?.localPath, target.localPath);
  // Two md5s sharing a prefix: the longest shared prefix is ambiguous.
  let amb = '';
  for (let i = 0; i < md5s.length; i++) {
    for (let j = i + 1; j < md5s.length; j++) {
      let k = 0;
      while (md5s[i][k] === md5s[j][k]) k++;
      if (k > amb.length) amb = md5s[i].slice(0, k);
    }
  }
  t.ok(amb.length >= 1, `found a shared prefix "${amb}"`);
  await t.rejects(cache.find(amb), { code: 'E_AMBIGUOUS' }, 'ambiguous prefix');
  await t.rejects(cache.find('xyz'), { code: 'E_BAD_REQUEST' }, 'not hex');
  await t.rejects(cache.find(''), { code: 'E_BAD_REQUEST' }, 'empty');
  await t.rejects(cache.find('a'.repeat(33)), { code: 'E_BAD_REQUEST' }, 'too long');
  const absent = [...'0123456789abcdef'].map((c) => c.repeat(8)).find((p) => !md5s.some((m) => m.startsWith(p)));
  t.equal((await cache.find(absent!)), undefined, 'no match → undefined');
  t.equal((await cache.findByUrl(origin.url('/never'))), undefined);

  const removed = await cache.remove(target.md5);
  t.equal(removed.md5, target.md5);
  t.notOk(fs.existsSync(target.localPath), 'file deleted');
  t.equal((await cache.find(target.md5)), undefined, 'record deleted');
  t.equal((await cache.findByUrl(target.url)), undefined, 'url mapping deleted');
  t.equal((await cache.stats()).totalFiles, FIXTURES.length - 1);
  await rejectsCode(t, cache.remove(target.md5), 'E_NOT_FOUND', 'second remove');
  // Removed content downloads again.
  const back = await cache.download(target.url);
  t.ok(fs.readFileSync(back.localPath).equals(fixture(FIXTURES[0].file)));
});

t.test('downloadMany skips failures and logs each with its code', async (t) => {
  const { cache, origin, logs } = await setup(t);
  origin.route('/a.jpg', { body: fixture('sample.jpg') });
  origin.route('/b.png', { body: fixture('sample.png') });
  const urls = [origin.url('/a.jpg'), origin.url('/missing.jpg'), 'not a url', origin.url('/b.png'), 'ftp://x/y.jpg'];
  const out = await cache.downloadMany(urls, { maxWorkers: 2 });
  t.same(out.map((r) => r.url), [origin.url('/a.jpg'), origin.url('/b.png')]);
  const failures = logs.filter((l) => l.level === 'warn' && l.message === 'download failed');
  t.same(
    failures.map((l) => [l.meta?.url, l.meta?.code]).sort(),
    [
      [origin.url('/missing.jpg'), 'E_HTTP'],
      ['not a url', 'E_INVALID_URL'],
      ['ftp://x/y.jpg', 'E_UNSUPPORTED_SCHEME'],
    ].sort(),
  );
  t.same(await cache.downloadMany([]), []);
  await rejectsCode(t, cache.downloadMany(urls, { maxWorkers: 0 }), 'E_BAD_REQUEST', 'maxWorkers 0');
});

t.test('the concurrency limit bounds fetches in flight', async (t) => {
  const { cache, origin } = await setup(t, { concurrency: 2 });
  let inFlight = 0;
  let peak = 0;
  const body = fixture('sample.png');
  for (let i = 0; i < 6; i++) {
    origin.route(`/c${i}.png`, (req, res) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      res.on('close', () => inFlight--);
      // Distinct content per URL (tail after IEND is ignored by decoders).
      const b = Buffer.concat([body, Buffer.from(`tail${i}`)]);
      res.writeHead(200, { 'content-length': b.length });
      setTimeout(() => res.end(b), 50);
    });
  }
  const out = await cache.downloadMany(Array.from({ length: 6 }, (_, i) => origin.url(`/c${i}.png`)), { maxWorkers: 6 });
  t.equal(out.length, 6);
  t.ok(peak <= 2, `peak in flight ${peak} <= 2`);
  t.equal(new Set(out.map((r) => r.md5)).size, 6);
});

t.test('abort: one caller leaving does not cancel the shared fetch; the last one does', async (t) => {
  const { cache, origin } = await setup(t);
  origin.route('/slow.mp4', { body: fixture('sample.mp4'), bytesPerSec: 4 * 1024 });
  const url = origin.url('/slow.mp4');
  await rejectsCode(t, cache.download(url, { signal: AbortSignal.abort() }), 'E_ABORTED', 'already aborted');
  t.equal(origin.hits('/slow.mp4'), 0, 'no request for an already-aborted call');
  const ac1 = new AbortController();
  const p1 = cache.download(url, { signal: ac1.signal });
  const p2 = cache.download(url);
  ac1.abort();
  await rejectsCode(t, p1, 'E_ABORTED', 'aborted caller');
  const r = await p2;
  t.equal(r.md5, md5(fixture('sample.mp4')), 'the other caller still gets it');
  t.equal(origin.hits('/slow.mp4'), 1);

  origin.route('/slow2.mp4', { body: Buffer.concat([fixture('sample.mp4'), Buffer.alloc(64 * 1024)]), bytesPerSec: 8 * 1024 });
  const ac = new AbortController();
  let progressed = 0;
  const p3 = cache.download(origin.url('/slow2.mp4'), { signal: ac.signal, onProgress: (b) => (progressed = b) });
  await import('../../helpers/wait.js').then(({ waitFor }) => waitFor(() => progressed > 0, { what: 'progress' }));
  ac.abort();
  await rejectsCode(t, p3, 'E_ABORTED', 'sole caller aborted');
  const { waitFor } = await import('../../helpers/wait.js');
  await waitFor(() => fs.readdirSync(path.join(cache.cacheDir, '.tmp')).length === 0, { what: '.tmp emptied' });
  t.equal((await cache.findByUrl(origin.url('/slow2.mp4'))), undefined, 'nothing recorded');
});

t.test('index survives close and reopen; closed cache refuses work', async (t) => {
  const closers: Array<() => Promise<void>> = [];
  t.teardown(async () => {
    for (const c of closers) await c();
  });
  const dir = t.testdir();
  const origin = await startOrigin();
  closers.push(() => origin.close());
  origin.route('/a.svg', { body: fixture('sample.svg') });
  const c1 = await MediaCache.open({ cacheDir: dir, retries: 0 });
  const r = await c1.download(origin.url('/a.svg'));
  await c1.close();
  await c1.close();
  // A small journal is left for the next open (closeCompactBytes): closing costs no shard rewrite.
  t.ok(fs.existsSync(path.join(dir, 'index', 'journal.jsonl')), 'the small journal is kept at close');
  t.same(fs.readdirSync(path.join(dir, 'index', 'records')), [], 'no shard written at close');
  await rejectsCode(t, c1.download(origin.url('/a.svg')), 'E_UNAVAILABLE', 'closed');
  const c2 = await MediaCache.open({ cacheDir: dir, retries: 0 });
  closers.unshift(() => c2.close());
  t.equal(c2.indexDir, path.join(dir, 'index'));
  const r2 = await c2.download(origin.url('/a.svg'));
  t.equal(origin.hits('/a.svg'), 1, 'answered from the reopened index');
  t.same(r2, r);
  const other = t.testdir();
  await rejectsCode(t, MediaCache.open({ cacheDir: other, concurrency: 0 }), 'E_BAD_REQUEST', 'bad option');
  await rejectsCode(t, MediaCache.open({ cacheDir: '' }), 'E_BAD_REQUEST', 'no cacheDir');
});

t.test('locks: keyed mutex serializes per key; semaphore waiters can abort without leaking a slot', async (t) => {
  const { KeyedMutex, Semaphore } = await import('../../../src/core/util/async-locks.js');
  const m = new KeyedMutex();
  const order: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const a = m.run('k', async () => {
    order.push('a-start');
    await gate;
    order.push('a-end');
  });
  const b = m.run('k', async () => void order.push('b'));
  const c = m.run('other', async () => void order.push('c'));
  await c;
  t.same(order, ['a-start', 'c'], 'another key is not blocked; same key waits');
  release();
  await Promise.all([a, b]);
  t.same(order, ['a-start', 'c', 'a-end', 'b']);
  await t.rejects(m.run('k', async () => Promise.reject(new Error('boom'))), /boom/);
  t.equal(await m.run('k', async () => 42), 42, 'a failure does not wedge the key');

  const s = new Semaphore(1);
  const r1 = await s.acquire();
  const ac = new AbortController();
  const waiting = s.acquire(ac.signal);
  t.equal(s.queued, 1);
  ac.abort();
  await t.rejects(waiting, { code: 'E_ABORTED' });
  t.equal(s.queued, 0, 'aborted waiter left the queue');
  const next = s.acquire();
  r1();
  r1(); // double release is harmless
  const r2 = await next;
  t.equal(s.running, 1);
  r2();
  t.equal(s.running, 0);
});
