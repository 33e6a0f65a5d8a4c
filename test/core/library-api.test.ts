/**
 * The package's public surface: the seed's module-level functions on the
 * default instance (configured from MEDIACACHE_* at first use) and exports.
 */
import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as lib from '../../src/core/index.js';
import {
  downloadAndCacheMedia,
  downloadMultipleMedia,
  getCacheStats,
  formatSize,
  verifyCachedMedia,
  findCachedByMd5,
  closeDefaultCache,
  optionsFromEnv,
  downloadMultipleMediaSettled,
  setDefaultLogger,
  silentLogger,
  stderrLogger,
  MediaCache,
  MediaCacheError,
} from '../../src/core/index.js';
import { startOrigin, fixture } from '../helpers/origin.js';

const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');
const ENV_KEYS = ['MEDIACACHE_LOG_LEVEL', 'MEDIACACHE_DIR', 'MEDIACACHE_INDEX', 'MEDIACACHE_CONCURRENCY', 'MEDIACACHE_TIMEOUT', 'MEDIACACHE_MAX_FILE_SIZE'];

t.beforeEach(() => {
  for (const k of ENV_KEYS) delete process.env[k];
});
/** Close the default instance before tap removes this test's folder (teardowns run in order). */
function closeFirst(t: Test): void {
  t.teardown(() => closeDefaultCache());
}

t.test('public exports', async (t) => {
  t.type(lib.MediaCache.open, 'function');
  t.type(lib.MediaCacheError, 'function');
  t.ok(lib.ERROR_CODES.includes('E_INTEGRITY'));
  t.equal(lib.RPC_ERRORS.APP, -32000, 'protocol re-exported');
  t.same(lib.TYPE_DIRS.image, 'images');
  t.equal(formatSize(1536 * 1024), '1.5 MiB', 'seed format_size');
  // Tools that read a dependency's version (bundlers, `require('mediacache/package.json')`) need it exported.
  const { createRequire } = await import('node:module');
  const req = createRequire(import.meta.url);
  const pkgPath = req.resolve('mediacache/package.json');
  t.equal(JSON.parse(fs.readFileSync(pkgPath, 'utf8')).name, 'mediacache', './package.json is exported');
});

t.test('seed functions on the default instance, MEDIACACHE_DIR in a temp dir', async (t) => {
  closeFirst(t);
  const dir = t.testdir();
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  process.env.MEDIACACHE_DIR = path.join(dir, 'media');
  process.env.MEDIACACHE_CONCURRENCY = '3';
  const names = ['sample.jpg', 'sample.png', 'sample.mp4', 'sample.pdf', 'sample.mp3'];
  for (const n of names) origin.route(`/${n}`, { body: fixture(n) });

  const one = await downloadAndCacheMedia(origin.url('/sample.jpg'));
  t.equal(one.md5, md5(fixture('sample.jpg')));
  t.equal(one.localPath, path.join(dir, 'media', 'images', `${one.md5}.jpg`), 'stored under MEDIACACHE_DIR');
  t.same([one.width, one.height], [64, 48]);

  const urls = [...names.map((n) => origin.url(`/${n}`)), origin.url('/nope.jpg')];
  const many = await downloadMultipleMedia(urls, { maxWorkers: 5 });
  t.same(many.map((r) => r.url), names.map((n) => origin.url(`/${n}`)), 'successes in input order, failure skipped');
  t.equal(origin.hits('/sample.jpg'), 1, 'the cached one was not requested again');

  const stats = await getCacheStats();
  t.equal(stats.totalFiles, 5);
  t.equal(stats.totalSize, names.reduce((s, n) => s + fixture(n).length, 0));
  t.same(stats.byType.video, { count: 1, size: fixture('sample.mp4').length });
  t.same(stats.byType.audio, { count: 1, size: fixture('sample.mp3').length });
  t.same(stats.byType.document, { count: 1, size: fixture('sample.pdf').length });

  // The seed's verify idiom: verify_cached_media(find_cached_by_md5(md5), md5)
  const target = many[2];
  const found = await findCachedByMd5(target.md5.slice(0, 12));
  t.equal(found, target.localPath, '12-char prefix resolves to the local path');
  t.equal(await verifyCachedMedia(found, target.md5), true);
  const buf = fs.readFileSync(target.localPath);
  buf[10] ^= 0x01;
  fs.writeFileSync(target.localPath, buf);
  t.equal(await verifyCachedMedia(found, target.md5), false, 'one flipped byte → false');
  t.equal(await verifyCachedMedia(undefined, target.md5), false, 'no path → false');
  // A prefix would read as "corrupt" if answered false: it is refused instead.
  await t.rejects(verifyCachedMedia(found, target.md5.slice(0, 12)), { code: 'E_BAD_REQUEST', message: /full md5 \(32 hex digits\)/ }, 'prefix refused');
  await t.rejects(verifyCachedMedia(found, 'x'.repeat(32)), { code: 'E_BAD_REQUEST' }, 'non-hex refused');
  t.equal(await verifyCachedMedia(found, target.md5.toUpperCase()), false, 'full md5 in capitals accepted (the file is still corrupt)');
  const unknown = [...'0123456789abcdef'].map((c) => c.repeat(12)).find((p) => !many.some((r) => r.md5.startsWith(p)))!;
  t.equal(await findCachedByMd5(unknown), undefined, 'unknown md5 → undefined');
  await t.rejects(findCachedByMd5('zz'), { code: 'E_BAD_REQUEST' });
  await closeDefaultCache();
  t.ok(fs.readdirSync(path.join(dir, 'media', 'index')).length > 0, 'index under <dir>/index by default');
});

t.test('a batch of 3 good and 2 bad URLs: the caller learns which failed and why', async (t) => {
  closeFirst(t);
  const dir = t.testdir();
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  process.env.MEDIACACHE_DIR = path.join(dir, 'media');
  for (const n of ['sample.jpg', 'sample.png', 'sample.gif']) origin.route(`/${n}`, { body: fixture(n) });
  origin.route('/text.html', { body: Buffer.from('<html>not media</html>'), headers: { 'content-type': 'text/html' } });
  const good = ['sample.jpg', 'sample.png', 'sample.gif'].map((n) => origin.url(`/${n}`));
  const missing = origin.url('/missing.jpg');
  const html = origin.url('/text.html');
  const urls = [good[0], missing, good[1], html, good[2]];
  const logged: string[] = [];
  setDefaultLogger(stderrLogger('warn', { write: (s: string) => logged.push(s) }));
  t.teardown(() => setDefaultLogger(silentLogger));

  const seen: Array<[string, string, number]> = [];
  const records = await downloadMultipleMedia(urls, { maxWorkers: 2, onError: (url, err, i) => seen.push([url, err.code, i]) });
  t.same(records.map((r) => r.url), good, 'successes in input order');
  t.same(
    seen.sort((a, b) => a[2] - b[2]),
    [
      [missing, 'E_HTTP', 1],
      [html, 'E_UNSUPPORTED_TYPE', 3],
    ],
    'onError: each failed URL with its code and position',
  );
  t.equal(logged.length, 2, `two warnings on the default logger: ${logged.join('')}`);
  t.match(logged.join(''), /^mediacache warn: download failed url=\S+missing\.jpg code=E_HTTP status=404/m);
  t.match(logged.join(''), /url=\S+text\.html code=E_UNSUPPORTED_TYPE/);

  const settled = await downloadMultipleMediaSettled(urls, { maxWorkers: 5 });
  t.same(settled.records.map((r) => r.md5), records.map((r) => r.md5));
  t.same(
    settled.failures.map((f) => [f.url, f.index, f.error.code, f.error.status]),
    [
      [missing, 1, 'E_HTTP', 404],
      [html, 3, 'E_UNSUPPORTED_TYPE', undefined],
    ],
    'the failures as data, in input order',
  );
  t.type(settled.failures[0].error.message, 'string');

  // A throwing callback does not stop the batch.
  const again = await downloadMultipleMedia(urls, {
    onError: () => {
      throw new Error('boom');
    },
  });
  t.equal(again.length, 3);
  t.match(logged.join(''), /onError callback threw/);
  await t.rejects(downloadMultipleMedia(urls, { onError: 'nope' as never }), { code: 'E_BAD_REQUEST' });
});

t.test('MEDIACACHE_INDEX moves the index; closeDefaultCache flushes it; reopen sees it', async (t) => {
  closeFirst(t);
  const dir = t.testdir();
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/a.gif', { body: fixture('sample.gif') });
  process.env.MEDIACACHE_DIR = path.join(dir, 'media');
  process.env.MEDIACACHE_INDEX = path.join(dir, 'idx');
  const r = await downloadAndCacheMedia(origin.url('/a.gif'));
  await closeDefaultCache();
  t.ok(fs.readdirSync(path.join(dir, 'idx')).length > 0, 'index files under MEDIACACHE_INDEX');
  t.notOk(fs.existsSync(path.join(dir, 'media', 'index')), 'not under the cache dir');
  t.equal(await findCachedByMd5(r.md5), r.localPath, 'reopened default instance finds it');
  t.equal(origin.hits('/a.gif'), 1);
});

t.test('bad environment values → E_BAD_REQUEST naming the variable, not remembered', async (t) => {
  closeFirst(t);
  const dir = t.testdir();
  process.env.MEDIACACHE_DIR = dir;
  for (const [k, v] of [
    ['MEDIACACHE_CONCURRENCY', 'abc'],
    ['MEDIACACHE_CONCURRENCY', '0'],
    ['MEDIACACHE_TIMEOUT', '-5'],
    ['MEDIACACHE_MAX_FILE_SIZE', '1.5'],
  ] as const) {
    process.env[k] = v;
    try {
      await getCacheStats();
      t.fail(`${k}=${v} accepted`);
    } catch (e) {
      t.type(e, MediaCacheError);
      t.equal((e as MediaCacheError).code, 'E_BAD_REQUEST', `${k}=${v}`);
      t.match((e as Error).message, k, 'message names the variable');
    }
    delete process.env[k];
  }
  const s = await getCacheStats();
  t.equal(s.totalFiles, 0, 'works once the value is fixed');
});

t.test('optionsFromEnv is pure', async (t) => {
  t.same(
    optionsFromEnv({
      MEDIACACHE_DIR: '/srv/media',
      MEDIACACHE_INDEX: '/srv/idx',
      MEDIACACHE_CONCURRENCY: '8',
      MEDIACACHE_TIMEOUT: '1000',
      MEDIACACHE_MAX_FILE_SIZE: '1048576',
    }),
    { cacheDir: path.resolve('/srv/media'), indexDir: path.resolve('/srv/idx'), concurrency: 8, timeoutMs: 1000, maxFileSize: 1048576 },
  );
  const d = optionsFromEnv({});
  t.ok(path.isAbsolute(d.cacheDir), 'default cache dir from paths.ts');
  t.equal(d.concurrency, undefined, 'defaults left to MediaCache');
});

t.test('MediaCache instance is usable directly from the package entry', async (t) => {
  let c: MediaCache | undefined;
  t.teardown(() => c?.close());
  const dir = t.testdir();
  c = await MediaCache.open({ cacheDir: dir });
  t.same((await c.stats()).byType.image, { count: 0, size: 0 });
});

t.test('a seed-style script on the built package exits on its own, and its index is on disk', async (t) => {
  const { ensureBuilt, REPO_ROOT } = await import('../helpers/build.js');
  await ensureBuilt();
  const { spawn } = await import('node:child_process');
  const { pathToFileURL } = await import('node:url');
  const os = await import('node:os');
  let c: MediaCache | undefined;
  // A private temp dir rather than t.testdir(): the child process reads from
  // it, and .tap/fixtures is shared with every other tap run in this tree.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-seed-'));
  t.teardown(async () => {
    await c?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/photo.jpg', { body: fixture('sample.jpg') });
  const entry = pathToFileURL(path.join(REPO_ROOT, 'dist', 'core', 'index.js')).href;
  const script = path.join(dir, 'seed.mjs');
  fs.writeFileSync(
    script,
    `import { downloadAndCacheMedia, downloadMultipleMedia, findCachedByMd5, verifyCachedMedia } from ${JSON.stringify(entry)};
const r = await downloadAndCacheMedia(process.argv[2]);
const p = await findCachedByMd5(r.md5.slice(0, 12));
const many = await downloadMultipleMedia([process.argv[2], process.argv[2].replace('photo.jpg', 'gone.jpg')]);
process.stdout.write(JSON.stringify({ md5: r.md5, localPath: r.localPath, valid: await verifyCachedMedia(p, r.md5), many: many.length }));
// no closeDefaultCache(): the pending index flush must still happen before the process exits
`,
  );
  const media = path.join(dir, 'media');
  const child = spawn(process.execPath, [script, origin.url('/photo.jpg')], {
    env: { ...process.env, MEDIACACHE_DIR: media, MEDIACACHE_LOG_LEVEL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  t.equal(code, 0, `script exited by itself with 0 ${err}`);
  const res = JSON.parse(out) as { md5: string; localPath: string; valid: boolean; many: number };
  t.equal(res.md5, crypto.createHash('md5').update(fixture('sample.jpg')).digest('hex'));
  t.equal(res.valid, true, 'verify_cached_media(find_cached_by_md5(md5), md5)');
  t.equal(res.many, 1);
  t.match(err, /^mediacache warn: download failed url=\S+gone\.jpg code=E_HTTP status=404/m, 'the failed URL is on stderr by default');
  t.ok(fs.existsSync(res.localPath));
  // A fresh instance on the same folder sees the record: the index was flushed at exit.
  c = await MediaCache.open({ cacheDir: media });
  t.equal((await c.find(res.md5))?.localPath, res.localPath);
  t.equal((await c.findByUrl(origin.url('/photo.jpg')))?.md5, res.md5);
});
