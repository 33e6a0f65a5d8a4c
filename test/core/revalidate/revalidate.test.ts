import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { Sweeper } from '../../../src/core/verify/sweep.js';
import type { RpcEvent } from '../../../src/core/protocol/rpc.js';
import { conditionalHeaders, dueForRevalidation, withUpstreamChange } from '../../../src/core/revalidate/plan.js';
import { startOrigin, type Origin } from '../../helpers/origin.js';
import { mediaBody, md5Of } from '../../helpers/media.js';

/** An origin resource with validators that answers conditional GETs and counts the body bytes it sends. */
class Resource {
  body: Buffer;
  etag?: string;
  lastModified?: string;
  bodyBytes = 0;
  notModified = 0;
  constructor(body: Buffer, v: { etag?: string; lastModified?: string }) {
    this.body = body;
    Object.assign(this, v);
  }
  readonly handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    const headers: Record<string, string | number> = { 'content-type': 'image/png' };
    if (this.etag) headers.etag = this.etag;
    if (this.lastModified) headers['last-modified'] = this.lastModified;
    const fresh = inm !== undefined ? inm === this.etag : ims !== undefined && ims === this.lastModified;
    if (fresh) {
      this.notModified++;
      res.writeHead(304, headers);
      return void res.end();
    }
    res.writeHead(200, { ...headers, 'content-length': this.body.length });
    this.bodyBytes += this.body.length;
    res.end(this.body);
  };
}

async function setup(t: Test): Promise<{ cache: MediaCache; origin: Origin; events: RpcEvent[] }> {
  let cache: MediaCache | undefined;
  let origin: Origin | undefined;
  t.teardown(async () => {
    await cache?.close();
    await origin?.close();
  });
  const dir = t.testdir();
  origin = await startOrigin();
  cache = await MediaCache.open({ cacheDir: dir, flushDelayMs: 5 });
  const events: RpcEvent[] = [];
  cache.events.on('event', (e: RpcEvent) => events.push(e));
  return { cache, origin, events };
}

t.test('pure helpers', async (t) => {
  t.same(conditionalHeaders({ etag: '"a"', lastModified: 'Mon, 01 Jan 2024 00:00:00 GMT' }), {
    'if-none-match': '"a"',
    'if-modified-since': 'Mon, 01 Jan 2024 00:00:00 GMT',
  });
  t.same(conditionalHeaders({}), {});
  const day = 86_400_000;
  const rec = { fetchedAt: new Date(0).toISOString(), urls: ['http://x/a'] };
  t.ok(dueForRevalidation(rec, 2 * day, day));
  t.notOk(dueForRevalidation({ ...rec, revalidatedAt: new Date(1.5 * day).toISOString() }, 2 * day, day), 'recently confirmed');
  t.notOk(dueForRevalidation({ ...rec, evictedAt: 'x' }, 2 * day, day), 'evicted content is not asked about');
  t.notOk(dueForRevalidation(rec, 2 * day, 0), 'off');
  let r = { md5: 'a'.repeat(32) } as import('../../../src/core/types.js').StoredRecord;
  for (let i = 0; i < 12; i++) r = withUpstreamChange(r, { url: `u${i}`, from: 'a'.repeat(32), to: 'b'.repeat(32), at: '' });
  t.equal(r.upstreamChanges!.length, 8, 'bounded');
  t.equal(r.upstreamChanges![7]!.url, 'u11', 'newest kept');
});

for (const variant of ['etag', 'last-modified'] as const) {
  t.test(`304 (${variant}): no body transferred, revalidatedAt recorded`, async (t) => {
    const { cache, origin } = await setup(t);
    const res = new Resource(mediaBody(variant, 200_000), variant === 'etag' ? { etag: '"v1"' } : { lastModified: 'Wed, 21 Oct 2015 07:28:00 GMT' });
    origin.route('/a', res.handler);
    const rec = await cache.download(origin.url('/a'));
    t.equal(res.bodyBytes, res.body.length, 'one body for the download');
    t.equal(variant === 'etag' ? rec.etag : rec.lastModified, variant === 'etag' ? '"v1"' : 'Wed, 21 Oct 2015 07:28:00 GMT', 'validator kept');
    const [out] = await cache.refresh(origin.url('/a'));
    t.equal(out!.state, 'not-modified');
    t.equal(out!.bytes, 0);
    t.equal(res.notModified, 1, 'the origin answered 304');
    t.equal(res.bodyBytes, res.body.length, 'no second body');
    t.ok(out!.record.revalidatedAt, 'revalidatedAt set');
    t.equal((await cache.findByUrl(origin.url('/a')))!.revalidatedAt, out!.record.revalidatedAt, 'and stored');
    t.same(fs.readdirSync(`${cache.cacheDir}/.tmp`), [], 'no tmp file for a 304');
  });
}

t.test('changed upstream: new record, URL moved, old content kept for its other URL, change reported', async (t) => {
  const { cache, origin, events } = await setup(t);
  const v1 = mediaBody('v1', 150_000);
  const v2 = mediaBody('v2', 160_000);
  const res = new Resource(v1, { etag: '"v1"' });
  origin.route('/a', res.handler);
  origin.route('/mirror', { body: v1 });
  const old = await cache.download(origin.url('/a'));
  await cache.download(origin.url('/mirror'));
  t.same((await cache.find(old.md5))!.urls, [origin.url('/a'), origin.url('/mirror')]);
  res.body = v2;
  res.etag = '"v2"';
  const [out] = await cache.refresh(old.md5.slice(0, 10)).then((all) => all.filter((o) => o.url === origin.url('/a')));
  t.equal(out!.state, 'changed');
  t.equal(out!.record.md5, md5Of(v2), 'new content is its own record');
  t.same(out!.change, { url: origin.url('/a'), from: old.md5, to: md5Of(v2), at: out!.change!.at });
  t.equal((await cache.findByUrl(origin.url('/a')))!.md5, md5Of(v2), 'the URL moved to it');
  const kept = (await cache.find(old.md5))!;
  t.same(kept.urls, [origin.url('/mirror')], 'the old content keeps its other URL');
  t.equal(md5Of(fs.readFileSync(kept.localPath)), old.md5, 'old file intact');
  t.equal(kept.upstreamChanges?.[0]?.to, md5Of(v2), 'find on the old md5 shows the change');
  t.equal((await cache.findByUrl(origin.url('/a')))!.upstreamChanges?.[0]?.from, old.md5, 'find on the URL shows it');
  t.ok(events.some((e) => e.type === 'upstream.changed' && e.change.url === origin.url('/a') && e.change.from === old.md5), 'upstream.changed event');
});

t.test('a sweep with revalidateAfterMs asks about stale content and reports changes', async (t) => {
  const { cache, origin } = await setup(t);
  const same = new Resource(mediaBody('same', 120_000), { etag: '"s"' });
  const moving = new Resource(mediaBody('m1', 120_000), { lastModified: 'Wed, 21 Oct 2015 07:28:00 GMT' });
  origin.route('/same', same.handler);
  origin.route('/moving', moving.handler);
  await cache.download(origin.url('/same'));
  const before = await cache.download(origin.url('/moving'));
  moving.body = mediaBody('m2', 130_000);
  moving.lastModified = 'Thu, 22 Oct 2015 07:28:00 GMT';
  const day = 86_400_000;
  const sweeper = new Sweeper(cache, { revalidateAfterMs: day, now: () => new Date(Date.now() + 2 * day), threads: 1 });
  t.teardown(() => sweeper.close());
  const report = await sweeper.run();
  t.same(report.revalidated, { asked: 2, notModified: 1, unchanged: 0, changed: 1, failed: 0 });
  t.equal(report.movedUpstream?.[0]?.from, before.md5);
  t.equal(report.movedUpstream?.[0]?.to, md5Of(moving.body));
  t.ok(report.steps.some((s) => s.name === 'revalidate'), 'revalidate step reported');
  t.equal(same.bodyBytes, same.body.length, 'the unchanged one cost no body');
  const again = await sweeper.run();
  t.equal(again.revalidated?.asked, 2, 'the sweep clock is 2 days ahead: still due');
  const plain = new Sweeper(cache, { threads: 1 });
  t.teardown(() => plain.close());
  const off = await plain.run();
  t.notOk(off.steps.some((s) => s.name === 'revalidate'), 'no revalidate step when off');
});

t.test('refresh of an unknown URL is E_NOT_FOUND', async (t) => {
  const { cache, origin } = await setup(t);
  await t.rejects(cache.refresh(origin.url('/nothing')), { code: 'E_NOT_FOUND' });
  await t.rejects(cache.refresh(crypto.randomBytes(16).toString('hex')), { code: 'E_NOT_FOUND' });
});
