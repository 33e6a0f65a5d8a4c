import t, { type Test } from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { fetchToTmp, createDispatcher, type FetchOptions } from '../../../src/core/fetch/download.js';
import { MediaCacheError } from '../../../src/core/errors.js';
import { startOrigin, fixture, FIXTURE_DIR } from '../../helpers/origin.js';

const origin = await startOrigin();
const dispatcher = createDispatcher({ timeoutMs: 5000, env: {} });
t.teardown(async () => {
  await dispatcher.destroy();
  await origin.close();
});

const tmpDir = t.testdir({});
const base = (extra: Partial<FetchOptions> = {}): FetchOptions => ({
  tmpDir,
  dispatcher,
  timeoutMs: 5000,
  maxFileSize: 64 * 1024 * 1024,
  ...extra,
});

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function failure(p: Promise<unknown>): Promise<MediaCacheError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof MediaCacheError) return e;
    throw new Error(`expected a MediaCacheError, got ${String(e)}`, { cause: e });
  }
  throw new Error('expected the download to fail');
}

const DIMS: Record<string, [number, number]> = {
  jpg: [64, 48], png: [40, 30], gif: [32, 24], webp: [50, 20], bmp: [16, 16],
  tiff: [20, 10], ico: [16, 16], avif: [24, 12], svg: [120, 80],
};

t.test('every fixture: hashes, size, type, extension, dimensions', async (t) => {
  const files = fs.readdirSync(FIXTURE_DIR).filter((f) => f.startsWith('sample.'));
  t.ok(files.length >= 20);
  for (const f of files) {
    const body = fixture(f);
    origin.route(`/fx/${f}`, { body, headers: { 'content-type': 'application/octet-stream' } });
    const r = await fetchToTmp(new URL(origin.url(`/fx/${f}`)), base());
    const ext = f.slice('sample.'.length);
    t.equal(r.md5, md5(body), `${f} md5`);
    t.equal(r.sha256, sha256(body), `${f} sha256`);
    t.equal(r.size, body.length, `${f} size`);
    t.equal(r.sniffed.extension, `.${ext}`, `${f} extension`);
    t.ok(fs.readFileSync(r.tmpPath).equals(body), `${f} tmp file holds the body`);
    t.equal(r.tmpPath.startsWith(tmpDir), true, `${f} in tmpDir`);
    t.equal(r.finalUrl, origin.url(`/fx/${f}`));
    if (DIMS[ext]) t.same([r.width, r.height], DIMS[ext], `${f} dims`);
    else t.equal(r.width, undefined, `${f} has no dims`);
    fs.unlinkSync(r.tmpPath);
  }
});

t.test('JPEG with 190 KiB of EXIF before its size: dims from a grown head', async (t) => {
  const jpg = fixture('sample.jpg');
  const seg = Buffer.alloc(65_000 + 4, 0x41);
  seg[0] = 0xff;
  seg[1] = 0xe1;
  seg.writeUInt16BE(65_000 + 2, 2);
  const body = Buffer.concat([jpg.subarray(0, 2), seg, seg, seg, jpg.subarray(2)]);
  origin.route('/big-exif.jpg', { body, bytesPerSec: 4 * 1024 * 1024 });
  const r = await fetchToTmp(new URL(origin.url('/big-exif.jpg')), base());
  t.equal(r.sniffed.extension, '.jpg');
  t.same([r.width, r.height], [64, 48]);
  t.equal(r.md5, md5(body));
  fs.unlinkSync(r.tmpPath);
});

t.test('type from content, not URL or Content-Type: PNG as text/plain from /x.php?id=1', async (t) => {
  origin.route('/x.php?id=1', { body: fixture('sample.png'), headers: { 'content-type': 'text/plain' } });
  const r = await fetchToTmp(new URL(origin.url('/x.php?id=1')), base());
  t.equal(r.sniffed.extension, '.png');
  t.equal(r.sniffed.mimeType, 'image/png');
  t.equal(r.contentType, 'text/plain');
  fs.unlinkSync(r.tmpPath);
});

t.test('HTML served as image/jpeg is E_UNSUPPORTED_TYPE', async (t) => {
  origin.route('/fake.jpg', { body: '<!DOCTYPE html><html><body>oops</body></html>', headers: { 'content-type': 'image/jpeg' } });
  const e = await failure(fetchToTmp(new URL(origin.url('/fake.jpg')), base()));
  t.equal(e.code, 'E_UNSUPPORTED_TYPE');
  t.equal(e.retryable, false);
  // A big non-media body is refused from its head, long before its end.
  let sent = 0;
  origin.route('/big.zip', (_req, res) => {
    res.writeHead(200, { 'content-length': 50 * 1024 * 1024 });
    const chunk = Buffer.alloc(64 * 1024, 0x50);
    chunk.write('PK\x03\x04', 'latin1');
    const pump = (): void => {
      while (!res.destroyed && sent < 50 * 1024 * 1024) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
    };
    pump();
  });
  const e2 = await failure(fetchToTmp(new URL(origin.url('/big.zip')), base()));
  t.equal(e2.code, 'E_UNSUPPORTED_TYPE');
  t.ok(sent < 20 * 1024 * 1024, `origin stopped early (sent ${sent} bytes)`);
});

t.test('HTTP errors', async (t) => {
  const e404 = await failure(fetchToTmp(new URL(origin.url('/missing.jpg')), base()));
  t.equal(e404.code, 'E_HTTP');
  t.equal(e404.status, 404);
  t.equal(e404.retryable, false);

  origin.route('/busy', { status: 503, body: 'busy', headers: { 'retry-after': '1' } });
  const e503 = await failure(fetchToTmp(new URL(origin.url('/busy')), base()));
  t.equal(e503.code, 'E_HTTP');
  t.equal(e503.status, 503);
  t.equal(e503.retryable, true);
  t.equal(e503.retryAfterMs, 1000);

  const date = new Date(Date.now() + 5000).toUTCString();
  origin.route('/slow-down', { status: 429, body: '', headers: { 'retry-after': date } });
  const e429 = await failure(fetchToTmp(new URL(origin.url('/slow-down')), base()));
  t.equal(e429.status, 429);
  t.equal(e429.retryable, true);
  t.ok(e429.retryAfterMs! > 2000 && e429.retryAfterMs! <= 5000, `retryAfterMs from an HTTP date: ${e429.retryAfterMs}`);

  origin.route('/timeout408', { status: 408, body: '' });
  t.equal((await failure(fetchToTmp(new URL(origin.url('/timeout408')), base()))).retryable, true);
  origin.route('/forbidden', { status: 403, body: '' });
  t.equal((await failure(fetchToTmp(new URL(origin.url('/forbidden')), base()))).retryable, false);
});

/** Listen on loopback; a dispatcher of our own; both closed in teardown. */
async function listenWithDispatcher(t: Test, srv: http.Server): Promise<{ port: number; d: ReturnType<typeof createDispatcher> }> {
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  const d = createDispatcher({ timeoutMs: 5000, env: {} });
  t.teardown(async () => {
    await d.destroy();
    srv.closeAllConnections();
    await new Promise<void>((r) => srv.close(() => r()));
  });
  return { port, d };
}

t.test('an error response is drained, so its connection is reused', async (t) => {
  let connections = 0;
  const srv = http.createServer((req, res) => {
    if (req.url === '/missing') {
      res.writeHead(404, { 'content-type': 'text/html', 'content-length': 2000 });
      res.end('x'.repeat(2000));
    } else {
      const gif = fixture('sample.gif');
      res.writeHead(200, { 'content-length': gif.length });
      res.end(gif);
    }
  });
  srv.on('connection', () => connections++);
  const { port, d } = await listenWithDispatcher(t, srv);
  for (let i = 0; i < 3; i++) {
    t.equal((await failure(fetchToTmp(new URL(`http://127.0.0.1:${port}/missing`), base({ dispatcher: d })))).status, 404);
    const r = await fetchToTmp(new URL(`http://127.0.0.1:${port}/ok.gif`), base({ dispatcher: d }));
    fs.unlinkSync(r.tmpPath);
  }
  // The drain is not awaited (the error returns at once), so the next request
  // may open a second socket; destroying each 404 body would take four.
  t.ok(connections <= 2, `${connections} connection(s) for six requests`);
});

t.test('an endless error body: the error returns at once, the connection is dropped past 64 KiB', async (t) => {
  const closed: Promise<void>[] = [];
  const srv = http.createServer((req, res) => {
    if (req.url === '/endless') {
      res.writeHead(500, { 'content-type': 'text/plain' });
      const chunk = Buffer.alloc(16 * 1024, 0x61);
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      closed.push(new Promise((r) => res.once('close', () => r())));
      pump();
    } else {
      const gif = fixture('sample.gif');
      res.writeHead(200, { 'content-length': gif.length });
      res.end(gif);
    }
  });
  const { port, d } = await listenWithDispatcher(t, srv);
  const t0 = Date.now();
  const err = await failure(fetchToTmp(new URL(`http://127.0.0.1:${port}/endless`), base({ dispatcher: d })));
  t.match(err, { code: 'E_HTTP', status: 500, retryable: true });
  t.ok(Date.now() - t0 < 2000, `answered at once (${Date.now() - t0} ms), not after the body`);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([closed[0], new Promise((_, rej) => (timer = setTimeout(() => rej(new Error('the endless body was never cut off')), 5000)))]);
  clearTimeout(timer);
  t.pass('the connection carrying the endless body was closed');
  const r = await fetchToTmp(new URL(`http://127.0.0.1:${port}/ok.gif`), base({ dispatcher: d }));
  t.equal(r.sniffed.mediaType, 'image', 'the dispatcher still works');
  fs.unlinkSync(r.tmpPath);
});

t.test('redirects: followed with finalUrl, loops and long chains refused', async (t) => {
  origin.route('/r/a', { status: 302, headers: { location: '/r/b' } });
  origin.route('/r/b', { status: 301, headers: { location: origin.url('/r/img.gif') } });
  origin.route('/r/img.gif', { body: fixture('sample.gif') });
  const r = await fetchToTmp(new URL(origin.url('/r/a')), base());
  t.equal(r.finalUrl, origin.url('/r/img.gif'));
  t.equal(r.sniffed.extension, '.gif');
  fs.unlinkSync(r.tmpPath);

  origin.route('/loop1', { status: 302, headers: { location: '/loop2' } });
  origin.route('/loop2', { status: 302, headers: { location: '/loop1' } });
  const loop = await failure(fetchToTmp(new URL(origin.url('/loop1')), base()));
  t.equal(loop.code, 'E_HTTP');
  t.match(loop.message, /redirect/);

  for (let i = 0; i < 7; i++) origin.route(`/chain${i}`, { status: 307, headers: { location: `/chain${i + 1}` } });
  origin.route('/chain7', { body: fixture('sample.gif') });
  const chain = await failure(fetchToTmp(new URL(origin.url('/chain0')), base()));
  t.equal(chain.code, 'E_HTTP');
  t.match(chain.message, /too many redirects/);
  t.ok(origin.hits('/chain5') >= 1 && origin.hits('/chain7') === 0, 'stopped after maxRedirects hops');
});

t.test('redirects to other schemes or to garbage are refused', async (t) => {
  origin.route('/to-file', { status: 302, headers: { location: 'file:///etc/passwd' } });
  origin.route('/to-data', { status: 301, headers: { location: 'data:image/png;base64,iVBORw0KGgo=' } });
  origin.route('/to-garbage', { status: 302, headers: { location: 'http://[bad' } });
  t.equal((await failure(fetchToTmp(new URL(origin.url('/to-file')), base()))).code, 'E_UNSUPPORTED_SCHEME');
  t.equal((await failure(fetchToTmp(new URL(origin.url('/to-data')), base()))).code, 'E_UNSUPPORTED_SCHEME');
  const g = await failure(fetchToTmp(new URL(origin.url('/to-garbage')), base()));
  t.equal(g.code, 'E_HTTP');
  t.equal(g.retryable, false);
});

t.test('a stalled body is E_TIMEOUT near timeoutMs', async (t) => {
  const png = fixture('sample.png');
  origin.route('/stall', (_req, res) => {
    res.writeHead(200, { 'content-length': png.length * 10 });
    res.write(png.subarray(0, 100));
    // ... and nothing more; the socket stays open.
  });
  const d = createDispatcher({ timeoutMs: 800, env: {} });
  t.teardown(() => d.destroy());
  const t0 = Date.now();
  const e = await failure(fetchToTmp(new URL(origin.url('/stall')), base({ dispatcher: d, timeoutMs: 800 })));
  const elapsed = Date.now() - t0;
  t.equal(e.code, 'E_TIMEOUT');
  t.equal(e.retryable, true);
  // undici's body timer is a "fast timer" with ~0.5 s resolution that can fire
  // up to one tick (499 ms) early, hence the lower bound.
  t.ok(elapsed >= 800 - 550 && elapsed < 4000, `timed out after ${elapsed} ms: ${e.message}`);
});

t.test('no response headers is E_TIMEOUT too', async (t) => {
  origin.route('/silent', () => undefined);
  const d = createDispatcher({ timeoutMs: 600, env: {} });
  t.teardown(() => d.destroy());
  const t0 = Date.now();
  const e = await failure(fetchToTmp(new URL(origin.url('/silent')), base({ dispatcher: d, timeoutMs: 600 })));
  t.equal(e.code, 'E_TIMEOUT');
  t.ok(Date.now() - t0 < 4000);
});

t.test('a trickling body hits the overall deadline', async (t) => {
  const png = fixture('sample.png');
  origin.route('/trickle', (_req, res) => {
    res.writeHead(200, { 'content-length': 1_000_000 });
    res.write(png);
    const iv = setInterval(() => (res.destroyed ? clearInterval(iv) : res.write('x')), 100);
    res.on('close', () => clearInterval(iv));
  });
  const d = createDispatcher({ timeoutMs: 400, env: {} });
  t.teardown(() => d.destroy());
  const t0 = Date.now();
  const e = await failure(fetchToTmp(new URL(origin.url('/trickle')), base({ dispatcher: d, timeoutMs: 400 })));
  const elapsed = Date.now() - t0;
  t.equal(e.code, 'E_TIMEOUT');
  t.match(e.message, /deadline/);
  t.ok(elapsed >= 1500 && elapsed < 5000, `deadline after ${elapsed} ms`);
});

t.test('a truncated body (socket closed early) is an error and leaves no file', async (t) => {
  const png = fixture('sample.png');
  origin.route('/truncated', (req, res) => {
    res.writeHead(200, { 'content-length': png.length + 5000 });
    res.write(png, () => setImmediate(() => req.socket.destroy()));
  });
  const e = await failure(fetchToTmp(new URL(origin.url('/truncated')), base()));
  t.equal(e.code, 'E_NETWORK');
  t.equal(e.retryable, true);
  t.same(fs.readdirSync(tmpDir), []);
});

t.test('maxFileSize: by Content-Length up front and while streaming an endless body', async (t) => {
  origin.route('/huge', { body: fixture('sample.png'), headers: { 'content-length': 10 * 1024 * 1024 } });
  // The origin lies about the length; we must refuse before reading the body.
  const eCl = await failure(fetchToTmp(new URL(origin.url('/huge')), base({ maxFileSize: 1024 * 1024 })));
  t.equal(eCl.code, 'E_TOO_LARGE');

  let sent = 0;
  origin.route('/endless', (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png' }); // chunked, no length
    res.write(fixture('sample.png'));
    const chunk = Buffer.alloc(64 * 1024, 7);
    const pump = (): void => {
      while (!res.destroyed) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
    };
    pump();
  });
  const e = await failure(fetchToTmp(new URL(origin.url('/endless')), base({ maxFileSize: 2 * 1024 * 1024 })));
  t.equal(e.code, 'E_TOO_LARGE');
  t.equal(e.retryable, false);
  t.ok(sent < 64 * 1024 * 1024, `origin stopped (sent ${sent} bytes)`);
});

t.test('abort signal is E_ABORTED', async (t) => {
  origin.route('/slow.png', { body: Buffer.concat([fixture('sample.png'), Buffer.alloc(2 * 1024 * 1024)]), bytesPerSec: 256 * 1024 });
  const ac = new AbortController();
  const p = fetchToTmp(new URL(origin.url('/slow.png')), base({ signal: ac.signal, onProgress: (b) => b > 40_000 && ac.abort() }));
  const e = await failure(p);
  t.equal(e.code, 'E_ABORTED');
  const pre = new AbortController();
  pre.abort();
  t.equal((await failure(fetchToTmp(new URL(origin.url('/slow.png')), base({ signal: pre.signal })))).code, 'E_ABORTED');
});

t.test('connection refused is a retryable E_NETWORK', async (t) => {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  const e = await failure(fetchToTmp(new URL(`http://127.0.0.1:${port}/a.png`), base()));
  t.equal(e.code, 'E_NETWORK');
  t.equal(e.retryable, true);
});

t.test('validators kept; progress reported, throttled, with total', async (t) => {
  const body = Buffer.concat([fixture('sample.png'), Buffer.alloc(3 * 1024 * 1024, 1)]);
  origin.route('/validators.png', {
    body,
    headers: { etag: '"abc123"', 'last-modified': 'Wed, 21 Oct 2015 07:28:00 GMT' },
  });
  const calls: Array<[number, number | undefined]> = [];
  const r = await fetchToTmp(new URL(origin.url('/validators.png')), base({ onProgress: (b, total) => calls.push([b, total]) }));
  t.equal(r.md5, md5(body), 'md5 of a multi-MiB body (worker path)');
  t.equal(r.sha256, sha256(body));
  t.equal(r.etag, '"abc123"');
  t.equal(r.lastModified, 'Wed, 21 Oct 2015 07:28:00 GMT');
  t.ok(calls.length >= 1 && calls.length < 40, `${calls.length} progress calls for ${body.length} bytes`);
  t.same(calls[calls.length - 1], [body.length, body.length], 'last call reports completion');
  for (let i = 1; i < calls.length; i++) t.ok(calls[i][0] >= calls[i - 1][0], 'monotonic');
  fs.unlinkSync(r.tmpPath);
});

t.test('disk full while streaming is E_DISK_FULL and leaves no file', async (t) => {
  // A real full filesystem: a 256 KiB tmpfs (needs mount privileges; skipped without).
  // Own temp folder, not t.testdir(): tap would remove that before unmounting.
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-diskfull-'));
  t.teardown(() => fs.rmSync(mnt, { recursive: true, force: true }));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt], { stdio: 'ignore' });
  } catch {
    t.comment('skipped: cannot mount a tmpfs here (needs mount privileges)');
    return;
  }
  t.teardown(() => void execFileSync('umount', [mnt], { stdio: 'ignore' }));
  origin.route('/fills-disk.png', { body: Buffer.concat([fixture('sample.png'), Buffer.alloc(2 * 1024 * 1024, 1)]) });
  const e = await failure(fetchToTmp(new URL(origin.url('/fills-disk.png')), base({ tmpDir: mnt })));
  t.equal(e.code, 'E_DISK_FULL');
  t.same(fs.readdirSync(mnt), [], 'partial file removed');
});

t.test('missing tmpDir is a clean error', async (t) => {
  origin.route('/ok.gif', { body: fixture('sample.gif') });
  const e = await failure(fetchToTmp(new URL(origin.url('/ok.gif')), base({ tmpDir: `${tmpDir}/nope` })));
  t.ok(e instanceof MediaCacheError);
});

/** A tiny forward proxy: absolute-URI requests and CONNECT tunnels, counted. */
async function startProxy(): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    hits++;
    const target = new URL(req.url ?? '');
    const up = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    hits++;
    const [host, port] = (req.url ?? '').split(':');
    const up = net.connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
    sockets.add(up);
    sockets.add(client);
  });
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits: () => hits,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

t.test('proxy: HTTP_PROXY is used (redirects too), NO_PROXY bypasses it', async (t) => {
  const proxy = await startProxy();
  t.teardown(() => proxy.close());
  origin.route('/via-proxy.webp', { body: fixture('sample.webp') });
  origin.route('/via-proxy-redirect', { status: 302, headers: { location: '/via-proxy.webp' } });

  const viaProxy = createDispatcher({ timeoutMs: 5000, env: { HTTP_PROXY: proxy.url } });
  t.teardown(() => viaProxy.destroy());
  const before = origin.hits('/via-proxy.webp');
  const r = await fetchToTmp(new URL(origin.url('/via-proxy-redirect')), base({ dispatcher: viaProxy }));
  t.equal(r.sniffed.extension, '.webp');
  t.equal(r.md5, md5(fixture('sample.webp')));
  t.equal(r.finalUrl, origin.url('/via-proxy.webp'));
  t.ok(proxy.hits() >= 1, `proxy saw ${proxy.hits()} request(s)`);
  t.equal(origin.hits('/via-proxy.webp'), before + 1);
  fs.unlinkSync(r.tmpPath);

  const hitsBefore = proxy.hits();
  const bypass = createDispatcher({ timeoutMs: 5000, env: { HTTP_PROXY: proxy.url, NO_PROXY: 'localhost,127.0.0.1' } });
  t.teardown(() => bypass.destroy());
  const r2 = await fetchToTmp(new URL(origin.url('/via-proxy.webp')), base({ dispatcher: bypass }));
  t.equal(r2.sniffed.extension, '.webp');
  t.equal(proxy.hits(), hitsBefore, 'NO_PROXY host went direct');
  fs.unlinkSync(r2.tmpPath);

  // And with no proxy variables at all nothing goes through it, even if the process has some.
  const none = createDispatcher({ timeoutMs: 5000, env: {} });
  t.teardown(() => none.destroy());
  const r3 = await fetchToTmp(new URL(origin.url('/via-proxy.webp')), base({ dispatcher: none }));
  t.equal(proxy.hits(), hitsBefore);
  fs.unlinkSync(r3.tmpPath);
});

t.test('createDispatcher refuses bad options', async (t) => {
  t.throws(() => createDispatcher({ timeoutMs: 0 }), { code: 'E_BAD_REQUEST' });
  t.throws(() => createDispatcher({ timeoutMs: 1000, maxRedirects: -1 }), { code: 'E_BAD_REQUEST' });
});

t.test('memoryMax: an announced small body stays in memory, nothing is written to .tmp/', async (t) => {
  const files = fs.readdirSync(FIXTURE_DIR).filter((f) => f.startsWith('sample.'));
  for (const f of files) {
    const body = fixture(f);
    origin.route(`/mem/${f}`, { body });
    let allocated = 0;
    const r = await fetchToTmp(new URL(origin.url(`/mem/${f}`)), base({
      memoryMax: 256 * 1024,
      sync: false,
      bodyBuffer: (n) => {
        allocated = n;
        return Buffer.alloc(n);
      },
    }));
    t.ok(r.body?.equals(body), `${f}: the body is held`);
    t.equal(allocated, body.length, `${f}: assembled in the caller's buffer`);
    t.equal(r.md5, md5(body), `${f} md5`);
    t.equal(r.sha256, sha256(body), `${f} sha256`);
    t.equal(r.size, body.length);
    t.equal(r.head, r.body, `${f}: the metadata reader gets the whole body`);
    t.notOk(fs.existsSync(r.tmpPath), `${f}: no tmp file created`);
    const ext = f.slice('sample.'.length);
    if (DIMS[ext]) t.same([r.width, r.height], DIMS[ext], `${f} dims`);
  }
  t.same(fs.readdirSync(tmpDir), []);
});

t.test('memoryMax: bigger or unannounced bodies are streamed to a tmp file (not synced when sync is false)', async (t) => {
  const png = fixture('sample.png');
  const big = Buffer.concat([png, Buffer.alloc(300 * 1024, 1)]);
  origin.route('/mem-big', { body: big });
  const r1 = await fetchToTmp(new URL(origin.url('/mem-big')), base({ memoryMax: 256 * 1024, sync: false }));
  t.equal(r1.body, undefined);
  t.ok(fs.readFileSync(r1.tmpPath).equals(big));
  fs.unlinkSync(r1.tmpPath);
  origin.route('/mem-chunked', (_req, res) => {
    res.writeHead(200, { 'transfer-encoding': 'chunked' });
    res.end(png);
  });
  const r2 = await fetchToTmp(new URL(origin.url('/mem-chunked')), base({ memoryMax: 256 * 1024 }));
  t.equal(r2.body, undefined, 'no content-length: streamed');
  t.ok(fs.readFileSync(r2.tmpPath).equals(png));
  fs.unlinkSync(r2.tmpPath);
});

t.test('memoryMax: a truncated small body fails and leaves nothing', async (t) => {
  const png = fixture('sample.png');
  origin.route('/mem-truncated', (req, res) => {
    res.writeHead(200, { 'content-length': png.length + 100 });
    res.write(png, () => setImmediate(() => req.socket.destroy()));
  });
  const e = await failure(fetchToTmp(new URL(origin.url('/mem-truncated')), base({ memoryMax: 256 * 1024 })));
  t.equal(e.code, 'E_NETWORK');
  t.same(fs.readdirSync(tmpDir), []);
});

t.test('after every failure above, .tmp/ is empty', async (t) => {
  t.same(fs.readdirSync(tmpDir), []);
});

t.test('error mapping (pure): undici and Node errors to SPEC codes', async (t) => {
  const { classify, httpError } = await import('../../../src/core/fetch/classify-error.js');
  const err = (code: string, message = code): Error => Object.assign(new Error(message), { code });
  const cases: Array<[unknown, string, boolean]> = [
    [err('UND_ERR_CONNECT_TIMEOUT'), 'E_TIMEOUT', true],
    [err('UND_ERR_HEADERS_TIMEOUT'), 'E_TIMEOUT', true],
    [err('UND_ERR_BODY_TIMEOUT'), 'E_TIMEOUT', true],
    [err('UND_ERR_SOCKET', 'other side closed'), 'E_NETWORK', true],
    [err('ECONNRESET'), 'E_NETWORK', true],
    [err('ENOTFOUND', 'getaddrinfo ENOTFOUND nowhere.invalid'), 'E_NETWORK', true],
    [Object.assign(new AggregateError([err('ECONNREFUSED'), err('ECONNREFUSED')]), {}), 'E_NETWORK', true],
    [Object.assign(new Error('fetch failed'), { cause: err('EAI_AGAIN') }), 'E_NETWORK', true],
    [err('CERT_HAS_EXPIRED'), 'E_NETWORK', false],
    [err('ERR_TLS_CERT_ALTNAME_INVALID'), 'E_NETWORK', false],
    [err('HPE_INVALID_CONSTANT'), 'E_PROTOCOL', false],
    [err('ENOSPC'), 'E_DISK_FULL', true],
    [err('EDQUOT'), 'E_DISK_FULL', true],
    [new Error('max redirects'), 'E_HTTP', false],
    [err('UND_ERR_INVALID_ARG', 'Invalid URL protocol: the URL must start with `http:` or `https:`.'), 'E_UNSUPPORTED_SCHEME', false],
    [new Error('something else'), 'E_INTERNAL', false],
    [Object.assign(new Error('Response does not match the HTTP/1.1 protocol (Invalid character in chunk size)'), { name: 'HTTPParserError' }), 'E_PROTOCOL', false],
    [err('UND_ERR_HEADERS_OVERFLOW', 'Headers Overflow Error'), 'E_PROTOCOL', false],
    [err('EACCES', 'permission denied'), 'E_UNAVAILABLE', false],
    [err('EMFILE', 'too many open files'), 'E_UNAVAILABLE', true],
  ];
  for (const [e, code, retryable] of cases) {
    const m = classify(e, 'http://x/', 1000);
    t.equal(m.code, code, `${(e as Error).message} -> ${code}`);
    t.equal(m.retryable, retryable, `${(e as Error).message} retryable=${retryable}`);
  }
  t.equal(httpError(500, {}, 'u').retryable, true);
  t.equal(httpError(502, { 'retry-after': '7' }, 'u').retryAfterMs, 7000);
  t.equal(httpError(404, { 'retry-after': '7' }, 'u').retryAfterMs, undefined, 'Retry-After ignored when not retryable');
  t.equal(httpError(304, {}, 'u').status, 304);
});
