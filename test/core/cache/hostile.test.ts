/**
 * Hostile origins through the whole MediaCache: every failure is a clear
 * MediaCacheError, and none leaves anything behind in the cache.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import type http from 'node:http';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { MediaCacheError } from '../../../src/core/errors.js';
import { startOrigin, fixture, type Origin } from '../../helpers/origin.js';

const TYPE_DIRS = ['images', 'videos', 'audio', 'documents'];

async function rejectsCode(t: Test, p: Promise<unknown>, code: string | RegExp, msg: string): Promise<MediaCacheError | undefined> {
  try {
    await p;
    t.fail(`${msg}: expected ${String(code)}, it resolved`);
    return undefined;
  } catch (e) {
    t.type(e, MediaCacheError, `${msg}: a MediaCacheError (${(e as Error).message})`);
    t.match((e as MediaCacheError).code, code, `${msg}: code ${(e as MediaCacheError).code}`);
    return e as MediaCacheError;
  }
}

/** Write chunks for as long as the client reads. */
function endless(_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'video/mp4' });
  // An ftyp header so the start sniffs as MP4; then zeros forever.
  const head = Buffer.alloc(32);
  head.writeUInt32BE(32, 0);
  head.write('ftypisom', 4, 'latin1');
  res.write(head);
  const chunk = Buffer.alloc(64 * 1024);
  const pump = (): void => {
    while (!res.destroyed && res.write(chunk));
    if (!res.destroyed) res.once('drain', pump);
  };
  pump();
}

t.test('hostile origins', async (t) => {
  const h: { cache?: MediaCache; origin?: Origin } = {};
  // Before t.testdir(): the index is flushed before tap removes the folder.
  t.teardown(async () => {
    await h.cache?.close();
    await h.origin?.close();
  });
  const dir = t.testdir();
  const origin = (h.origin = await startOrigin());
  const cache = (h.cache = await MediaCache.open({
    cacheDir: path.join(dir, 'cache'),
    retries: 0,
    timeoutMs: 1500,
    maxFileSize: 1024 * 1024,
    retryBaseDelayMs: 10,
    maxRetryAfterMs: 5000,
  }));
  const jpg = fixture('sample.jpg');
  const png = fixture('sample.png');

  await t.test('404 → E_HTTP with the status', async (t) => {
    const e = await rejectsCode(t, cache.download(origin.url('/missing.jpg')), 'E_HTTP', '404');
    t.equal(e?.status, 404);
  });

  await t.test('503 with Retry-After: 1, then 200 → success after waiting', async (t) => {
    let n = 0;
    origin.route('/busy.jpg', (_req, res) => {
      if (n++ === 0) {
        res.writeHead(503, { 'retry-after': '1', 'content-type': 'text/html' });
        res.end('<h1>busy</h1>');
      } else {
        res.writeHead(200, { 'content-length': jpg.length });
        res.end(jpg);
      }
    });
    const t0 = Date.now();
    const r = await cache.download(origin.url('/busy.jpg'), { retries: 2 });
    t.equal(r.extension, '.jpg');
    t.equal(origin.hits('/busy.jpg'), 2, 'two requests');
    t.ok(Date.now() - t0 >= 900, `waited for Retry-After (${Date.now() - t0} ms)`);
  });

  await t.test('503 without retries left → E_HTTP 503, retryable', async (t) => {
    origin.route('/down.jpg', { status: 503, body: 'down', headers: { 'content-type': 'text/plain' } });
    const e = await rejectsCode(t, cache.download(origin.url('/down.jpg')), 'E_HTTP', '503');
    t.equal(e?.status, 503);
    t.equal(e?.retryable, true);
  });

  await t.test('redirect loop → error, bounded requests', async (t) => {
    origin.route('/loop', { status: 302, headers: { location: '/loop' } });
    await rejectsCode(t, cache.download(origin.url('/loop')), /^E_/, 'redirect loop');
    t.ok(origin.hits('/loop') <= 7, `requests bounded (${origin.hits('/loop')})`);
  });

  await t.test('two-URL redirect loop and an over-long redirect chain → E_HTTP', async (t) => {
    origin.route('/ping', { status: 302, headers: { location: '/pong' } });
    origin.route('/pong', { status: 302, headers: { location: '/ping' } });
    await rejectsCode(t, cache.download(origin.url('/ping')), 'E_HTTP', 'ping-pong');
    t.ok(origin.hits('/ping') + origin.hits('/pong') <= 7, 'bounded');
    for (let i = 0; i < 10; i++) origin.route(`/hop${i}`, { status: 307, headers: { location: `/hop${i + 1}` } });
    await rejectsCode(t, cache.download(origin.url('/hop0')), 'E_HTTP', 'chain of 10');
    let hops = 0;
    for (let i = 0; i < 10; i++) hops += origin.hits(`/hop${i}`);
    t.ok(hops <= 6, `stopped after maxRedirects (${hops} requests)`);
  });

  await t.test('a redirect to media is followed', async (t) => {
    origin.route('/go', { status: 301, headers: { location: '/real.png' } });
    origin.route('/real.png', { body: png });
    const r = await cache.download(origin.url('/go'));
    t.equal(r.extension, '.png');
    t.equal(r.url, origin.url('/go'));
  });

  await t.test('stall after headers → E_TIMEOUT', async (t) => {
    origin.route('/stall.jpg', (_req, res) => {
      res.writeHead(200, { 'content-length': 100_000 });
      res.write(jpg.subarray(0, 100));
      // …and nothing more.
    });
    const t0 = Date.now();
    await rejectsCode(t, cache.download(origin.url('/stall.jpg')), 'E_TIMEOUT', 'stall');
    t.ok(Date.now() - t0 < 10_000, 'gave up in time');
  });

  await t.test('no headers at all → E_TIMEOUT', async (t) => {
    origin.route('/silent.jpg', () => undefined);
    await rejectsCode(t, cache.download(origin.url('/silent.jpg')), 'E_TIMEOUT', 'silent');
  });

  await t.test('truncated body → error', async (t) => {
    origin.route('/cut.jpg', (_req, res) => {
      res.writeHead(200, { 'content-length': jpg.length * 10 });
      res.write(jpg);
      setImmediate(() => res.socket?.destroy());
    });
    await rejectsCode(t, cache.download(origin.url('/cut.jpg')), /^E_(NETWORK|HTTP|UNAVAILABLE|INTEGRITY)$/, 'truncated');
    t.equal((await cache.findByUrl(origin.url('/cut.jpg'))), undefined);
  });

  await t.test('HTML served as image/jpeg → E_UNSUPPORTED_TYPE', async (t) => {
    origin.route('/fake.jpg', { body: '<!doctype html><html><body>Error 500</body></html>', headers: { 'content-type': 'image/jpeg' } });
    await rejectsCode(t, cache.download(origin.url('/fake.jpg')), 'E_UNSUPPORTED_TYPE', 'html as jpeg');
  });

  await t.test('PNG served as text/plain from a .php URL → stored as .png', async (t) => {
    origin.route('/img.php', { body: png, headers: { 'content-type': 'text/plain' } });
    const r = await cache.download(origin.url('/img.php?id=1'));
    t.equal(r.extension, '.png');
    t.equal(r.mimeType, 'image/png');
    t.equal(path.basename(r.localPath), `${r.md5}.png`);
    t.equal(r.url, origin.url('/img.php?id=1'));
  });

  await t.test('endless body → E_TOO_LARGE', async (t) => {
    origin.route('/endless.mp4', endless);
    await rejectsCode(t, cache.download(origin.url('/endless.mp4')), 'E_TOO_LARGE', 'endless');
  });

  await t.test('declared content-length over the limit → E_TOO_LARGE', async (t) => {
    origin.route('/huge.mp4', (_req, res) => {
      res.writeHead(200, { 'content-length': 10 * 1024 * 1024 });
      res.write(Buffer.alloc(1024));
    });
    await rejectsCode(t, cache.download(origin.url('/huge.mp4')), 'E_TOO_LARGE', 'huge');
  });

  await t.test('bad URLs never reach the network', async (t) => {
    const before = origin.totalHits();
    await rejectsCode(t, cache.download('file:///etc/passwd'), 'E_UNSUPPORTED_SCHEME', 'file://');
    await rejectsCode(t, cache.download('ftp://127.0.0.1/x.jpg'), 'E_UNSUPPORTED_SCHEME', 'ftp://');
    await rejectsCode(t, cache.download('garbage'), 'E_INVALID_URL', 'garbage');
    await rejectsCode(t, cache.download(''), 'E_INVALID_URL', 'empty');
    await rejectsCode(t, cache.download('http://exa mple.com/x.jpg'), 'E_INVALID_URL', 'space');
    t.equal(origin.totalHits(), before, 'no request made');
  });

  await t.test('nothing stray in the cache after all of that', async (t) => {
    const cacheDir = cache.cacheDir;
    const files = TYPE_DIRS.flatMap((d) => fs.readdirSync(path.join(cacheDir, d)).map((f) => `${d}/${f}`)).sort();
    const expected = [(await cache.findByUrl(origin.url('/busy.jpg')))!, (await cache.findByUrl(origin.url('/go')))!]
      .map((r) => `${path.basename(path.dirname(r.localPath))}/${path.basename(r.localPath)}`)
      .sort();
    t.same(files, expected, 'only the successful downloads are in the type folders');
    t.same(fs.readdirSync(path.join(cacheDir, '.tmp')), [], '.tmp is empty');
    t.equal((await cache.stats()).totalFiles, 2, 'index holds exactly the successes');
  });
});
