import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { ifRangeValidator, parseContentRange, partialPaths, worthResuming } from '../../../src/core/fetch/resume.js';
import { startOrigin, fixture, type Origin } from '../../helpers/origin.js';
import { RangeResource } from '../../helpers/range-origin.js';
import { md5Of } from '../../helpers/media.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

function bigBody(): Buffer {
  const png = fixture('sample.png');
  return Buffer.concat([png, crypto.randomBytes(SIZE - png.length)]);
}

async function setup(t: Test, opts: { timeoutMs?: number } = {}): Promise<{ cache: MediaCache; origin: Origin; dir: string }> {
  let cache: MediaCache | undefined;
  let origin: Origin | undefined;
  t.teardown(async () => {
    await cache?.close();
    await origin?.close();
  });
  const dir = t.testdir();
  origin = await startOrigin();
  cache = await MediaCache.open({ cacheDir: dir, flushDelayMs: 5, retryBaseDelayMs: 10, retryMaxDelayMs: 50, ...opts });
  return { cache, origin, dir };
}

const tmpNames = (dir: string): string[] => fs.readdirSync(path.join(dir, '.tmp'));

t.test('pure helpers', async (t) => {
  t.same(parseContentRange('bytes 10-99/100'), { start: 10, end: 99, total: 100 });
  t.equal(parseContentRange('bytes 10-99/50'), undefined);
  t.equal(parseContentRange(undefined), undefined);
  t.equal(ifRangeValidator({ etag: 'W/"weak"', lastModified: 'x' }), 'x', 'a weak ETag is not used for If-Range');
  t.equal(ifRangeValidator({ etag: '"s"' }), '"s"');
  t.notOk(worthResuming(10 * MiB, {}), 'no validator: no resume');
  t.notOk(worthResuming(1000, { etag: '"s"' }), 'small bodies are not worth a sidecar');
  t.ok(worthResuming(10 * MiB, { etag: '"s"' }));
  t.not(partialPaths('/t', 'http://a/1').part, partialPaths('/t', 'http://a/2').part, 'named per URL');
});

t.test('a 64 MiB body cut at ~50% resumes from the kept offset', async (t) => {
  const { cache, origin, dir } = await setup(t);
  const res = new RangeResource(bigBody());
  res.cutAt = SIZE / 2;
  origin.route('/big', res.handler);
  const rec = await cache.download(origin.url('/big'));
  t.equal(rec.md5, md5Of(res.body), 'md5 right');
  t.equal(md5Of(fs.readFileSync(rec.localPath)), rec.md5, 'file right');
  t.equal(res.log.length, 2, 'two requests');
  const second = res.log[1]!;
  t.equal(second.status, 206);
  t.match(second.range, /^bytes=\d+-$/);
  t.equal(second.ifRange, res.etag, 'If-Range with the ETag');
  t.ok(second.start > SIZE / 4 && second.start <= SIZE / 2, `resumed from the kept offset ${second.start}`);
  t.ok(res.served < SIZE * 1.2, `bytes served ${res.served} about one body (${(res.served / SIZE).toFixed(2)}x)`);
  t.same(tmpNames(dir), [], 'partial and sidecar gone');
});

t.test('a stalled body resumes too', async (t) => {
  const { cache, origin } = await setup(t, { timeoutMs: 1500 });
  const res = new RangeResource(bigBody().subarray(0, 8 * MiB));
  res.stallAt = 4 * MiB;
  origin.route('/stall', res.handler);
  const rec = await cache.download(origin.url('/stall'));
  t.equal(rec.md5, md5Of(res.body));
  t.equal(res.log[1]?.status, 206, 'resumed with a range request');
  t.ok(res.served < res.body.length * 1.2, `served ${res.served}`);
});

t.test('an origin ignoring Range gets a clean, correct full download', async (t) => {
  const { cache, origin } = await setup(t);
  const res = new RangeResource(bigBody());
  res.cutAt = SIZE / 2;
  res.ignoreRange = true;
  origin.route('/norange', res.handler);
  const rec = await cache.download(origin.url('/norange'));
  t.equal(rec.md5, md5Of(res.body), 'md5 right');
  t.equal(md5Of(fs.readFileSync(rec.localPath)), rec.md5);
  t.match(res.log[1]!.range, /^bytes=/, 'a range was asked for');
  t.equal(res.log[1]!.status, 200, 'the origin answered 200');
  t.equal(res.log[1]!.sent, SIZE, 'the whole body came again');
});

t.test('an origin whose ETag changed gets a clean, correct full download of the new content', async (t) => {
  const { cache, origin } = await setup(t);
  const res = new RangeResource(bigBody());
  res.cutAt = SIZE / 2;
  // Between the cut and the retry the content changes.
  const retryBody = bigBody();
  let n = 0;
  origin.route('/changed', (req, r) => {
    if (++n === 2) {
      res.body = retryBody;
      res.etag = '"r2"';
      res.lastModified = 'Thu, 22 Oct 2015 07:28:00 GMT';
    }
    res.handler(req, r);
  });
  const first = cache.download(origin.url('/changed'));
  const rec = await first;
  t.equal(res.log[1]!.ifRange, '"r1"', 'asked If-Range with the old ETag');
  t.equal(res.log[1]!.status, 200, 'validator mismatch: the whole new body');
  t.equal(rec.md5, md5Of(retryBody), 'md5 of the new content');
  t.equal(md5Of(fs.readFileSync(rec.localPath)), rec.md5);
});
