import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type http from 'node:http';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { MediaCacheError } from '../../../src/core/errors.js';
import type { RpcEvent } from '../../../src/core/protocol/rpc.js';
import { JobStore } from '../../../src/daemon/jobs/job-store.js';
import { Scheduler, type Downloader } from '../../../src/daemon/jobs/scheduler.js';
import { silentLogger } from '../../../src/core/util/logger.js';
import { fixture, startOrigin, type Origin } from '../../helpers/origin.js';
import { waitFor } from '../../helpers/wait.js';

const PNG = fixture('sample.png');
/** Distinct valid PNG content per n (PNG readers ignore trailing bytes). */
const png = (n: number): Buffer => Buffer.concat([PNG, Buffer.from(`tail-${n}`)]);

type Tt = Parameters<Parameters<typeof t.test>[0]>[0];

/** An origin route that counts requests in flight (per origin) and can hold replies. */
function gated(origin: Origin, stats: { inFlight: number; max: number; order: string[] }) {
  const held: Array<() => void> = [];
  let open = false;
  const handler = (body: Buffer) => (req: http.IncomingMessage, res: http.ServerResponse): void => {
    stats.inFlight++;
    stats.max = Math.max(stats.max, stats.inFlight);
    stats.order.push(req.url ?? '');
    const send = (): void => {
      res.writeHead(200, { 'content-length': body.length });
      res.end(body, () => void stats.inFlight--);
    };
    if (open) send();
    else held.push(send);
  };
  return {
    add: (p: string, n: number) => origin.route(p, handler(png(n))),
    release: () => {
      open = true;
      for (const s of held.splice(0)) s();
    },
    releaseOne: () => held.shift()?.(),
    get held() {
      return held.length;
    },
  };
}

async function setup(t: Tt, o: { concurrency?: number; perHost?: number; cache?: (c: MediaCache) => Downloader; retryBaseMs?: number; retries?: number; diskFullBaseMs?: number; lagWindowMs?: number } = {}) {
  // Our own temp dir, removed after the scheduler and store are closed
  // (t.testdir() could be removed before this teardown runs).
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-sched-'));
  const cache = await MediaCache.open({ cacheDir: path.join(root, 'cache'), retries: 0, timeoutMs: 10_000, concurrency: 10 });
  const store = await JobStore.open(path.join(root, 'cache', 'index', 'jobs'), { flushDelayMs: 20 });
  const sched = new Scheduler({
    cache: o.cache ? o.cache(cache) : cache,
    store,
    concurrency: o.concurrency ?? 2,
    perHost: o.perHost,
    logger: silentLogger,
    progressIntervalMs: 0,
    retryBaseMs: o.retryBaseMs,
    retries: o.retries,
    diskFullBaseMs: o.diskFullBaseMs,
    // Lag detection off unless a test is about it: held replies would otherwise lend slots.
    lagWindowMs: o.lagWindowMs ?? 0,
  });
  const events: RpcEvent[] = [];
  sched.on('event', (e: RpcEvent) => events.push(e));
  t.teardown(async () => {
    await sched.drain(0);
    await store.close();
    await cache.close();
    fs.rmSync(root, { recursive: true, force: true });
  });
  return { root, cache, store, sched, events };
}

t.test('enqueue → done, with events, counts and md5', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/a.png', { body: png(1), bytesPerSec: 200_000 });
  origin.route('/b.png', { body: png(2) });
  const { sched, events, cache } = await setup(t);
  sched.start();
  const jobs = await sched.enqueue([{ url: origin.url('/a.png'), source: 'rpc' }, { url: origin.url('/b.png'), source: 'rpc' }], { priority: 0 });
  t.equal(jobs.length, 2);
  t.match(jobs[0], { state: /queued|running/, priority: 0, source: 'rpc' });
  const done = await sched.wait(jobs.map((j) => j.id));
  t.same(done.map((j) => j.state), ['done', 'done']);
  t.equal(done[0].md5, (await cache.findByUrl(origin.url('/a.png')))?.md5);
  t.same(sched.counts(), { queued: 0, running: 0, done: 2, failed: 0 });
  t.equal(events.filter((e) => e.type === 'job.queued').length, 2);
  t.equal(events.filter((e) => e.type === 'job.done').length, 2);
  t.ok(events.some((e) => e.type === 'job.progress' && e.jobId === jobs[0].id), 'progress events');
  const list = sched.list({ state: 'done' });
  t.equal(list.total, 2);
  t.notOk('seq' in list.jobs[0], 'internal fields not exposed');
});

t.test('failures: HTTP 404 and an invalid URL end as failed with codes', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const { sched, events } = await setup(t);
  sched.start();
  const [a, b] = await sched.enqueue([{ url: origin.url('/missing.png'), source: 'rpc' }, { url: 'not a url', source: 'rpc' }], { priority: 0 });
  t.equal(b.state, 'failed');
  t.equal(b.error?.code, 'E_INVALID_URL');
  const [fa] = await sched.wait([a.id]);
  t.equal(fa.state, 'failed');
  t.equal(fa.error?.code, 'E_HTTP');
  t.equal(fa.error?.status, 404);
  t.equal(events.filter((e) => e.type === 'job.failed').length, 2);
  await t.rejects(sched.wait(['j999999']), { code: 'E_NOT_FOUND' });
});

t.test('dedup: a queued or running URL is not queued twice', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const stats = { inFlight: 0, max: 0, order: [] as string[] };
  const g = gated(origin, stats);
  g.add('/d.png', 7);
  const { sched } = await setup(t);
  sched.start();
  const [j1] = await sched.enqueue([{ url: origin.url('/d.png'), source: 'rpc' }], { priority: 10 });
  const [j2, j3] = await sched.enqueue([{ url: origin.url('/d.png'), source: 'x' }, { url: origin.url('/d.png'), source: 'y' }], { priority: 10 });
  t.equal(j2.id, j1.id);
  t.equal(j3.id, j1.id);
  t.equal(sched.counts().queued + sched.counts().running, 1);
  await waitFor(() => g.held === 1, { what: 'request at origin' });
  g.release();
  await sched.wait([j1.id]);
  t.equal(origin.hits('/d.png'), 1);
  // Once ended, a new request is a new job (answered from the index).
  const [j4] = await sched.enqueue([{ url: origin.url('/d.png'), source: 'rpc' }], { priority: 0 });
  t.not(j4.id, j1.id);
  t.equal((await sched.wait([j4.id]))[0].state, 'done');
  t.equal(origin.hits('/d.png'), 1, 'cache hit, no second download');
});

t.test('priority: an interactive add overtakes a long inbox queue', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const stats = { inFlight: 0, max: 0, order: [] as string[] };
  const g = gated(origin, stats);
  for (let i = 0; i < 50; i++) g.add(`/bulk${i}.png`, 100 + i);
  g.add('/urgent.png', 1);
  const { sched } = await setup(t, { concurrency: 1 });
  sched.start();
  const bulk = await sched.enqueue(Array.from({ length: 50 }, (_, i) => ({ url: origin.url(`/bulk${i}.png`), source: `f.urls:${i + 1}` })), { priority: 10 });
  await waitFor(() => g.held === 1, { what: 'first bulk request' });
  const [urgent] = await sched.enqueue([{ url: origin.url('/urgent.png'), source: 'rpc' }], { priority: 0 });
  g.release();
  await sched.wait([urgent.id, ...bulk.map((j) => j.id)]);
  t.same(stats.order.slice(0, 3), ['/bulk0.png', '/urgent.png', '/bulk1.png']);
  t.equal(stats.max, 1, 'global concurrency 1 respected');
});

t.test('per-host and global limits, measured at the origins', async (t) => {
  const a = await startOrigin('127.0.0.1');
  const b = await startOrigin('::1');
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const sa = { inFlight: 0, max: 0, order: [] as string[] };
  const sb = { inFlight: 0, max: 0, order: [] as string[] };
  const ga = gated(a, sa);
  const gb = gated(b, sb);
  for (let i = 0; i < 8; i++) ga.add(`/a${i}.png`, 200 + i);
  for (let i = 0; i < 8; i++) gb.add(`/b${i}.png`, 300 + i);
  const { sched } = await setup(t, { concurrency: 3, perHost: 2 });
  sched.start();
  const jobs = await sched.enqueue(
    [...Array.from({ length: 8 }, (_, i) => ({ url: a.url(`/a${i}.png`), source: 'rpc' })), ...Array.from({ length: 8 }, (_, i) => ({ url: b.url(`/b${i}.png`), source: 'rpc' }))],
    { priority: 10 },
  );
  await waitFor(() => ga.held + gb.held === 3, { what: '3 requests held' });
  t.equal(ga.held, 2, 'host A capped at perHost=2 although its jobs are first');
  t.equal(gb.held, 1, 'host B gets the third global slot');
  t.equal(sched.active().length, 3);
  // Raise the limits: takes effect at once.
  sched.setLimits({ concurrency: 6, perHost: 3 });
  await waitFor(() => ga.held + gb.held === 6, { what: '6 requests held' });
  t.same([ga.held, gb.held], [3, 3]);
  ga.release();
  gb.release();
  await sched.wait(jobs.map((j) => j.id));
  t.ok(sa.max <= 3 && sb.max <= 3);
  t.same(sched.counts(), { queued: 0, running: 0, done: 16, failed: 0 });
});

t.test('durable: enqueued jobs are on disk when enqueue resolves; a crash re-queues running jobs', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const stats = { inFlight: 0, max: 0, order: [] as string[] };
  const g = gated(origin, stats);
  for (let i = 0; i < 3; i++) g.add(`/s${i}.png`, 400 + i);
  const { sched, store, root, cache } = await setup(t, { concurrency: 1 });
  sched.start();
  const jobs = await sched.enqueue(Array.from({ length: 3 }, (_, i) => ({ url: origin.url(`/s${i}.png`), source: 'rpc' })), { priority: 10 });
  // A second reader of the same folder sees them at once (no flush, no close).
  const peek = await JobStore.open(store.dir);
  t.same([...peek.values()].map((j) => j.id), jobs.map((j) => j.id));
  await waitFor(() => g.held === 1, { what: 'one running' });
  await store.flush();
  // "Crash": open the folder again as a restarted daemon would.
  const store2 = await JobStore.open(store.dir);
  t.equal(store2.get(jobs[0].id)?.state, 'running');
  const sched2 = new Scheduler({ cache, store: store2, concurrency: 5, logger: silentLogger });
  g.release();
  sched2.start();
  t.equal(store2.get(jobs[0].id)?.state === 'queued' || store2.get(jobs[0].id)?.state === 'running', true);
  const done = await sched2.wait(jobs.map((j) => j.id));
  t.same(done.map((j) => j.state), ['done', 'done', 'done']);
  await sched2.drain(0);
  await store2.close();
  t.ok(root);
});

t.test('drain: running jobs past the grace period are aborted and stay queued', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/slow.png', { body: Buffer.concat([png(9), Buffer.alloc(400_000)]), bytesPerSec: 100_000 });
  const { sched, store } = await setup(t, { concurrency: 2 });
  sched.start();
  const [j] = await sched.enqueue([{ url: origin.url('/slow.png'), source: 'rpc' }], { priority: 0 });
  await waitFor(() => sched.active()[0]?.bytes > 0, { what: 'download under way' });
  const t0 = Date.now();
  await sched.drain(100);
  t.ok(Date.now() - t0 < 5000, 'drain returns soon after the grace period');
  t.equal(sched.get(j.id)?.state, 'queued');
  t.equal(sched.get(j.id)?.attempts, 0, 'an aborted attempt is not counted');
  const reopened = await JobStore.open(store.dir);
  t.equal(reopened.get(j.id)?.state, 'queued', 'queued on disk');
  await t.rejects(sched.enqueue([{ url: origin.url('/x.png'), source: 'rpc' }], { priority: 0 }), { code: 'E_UNAVAILABLE' });
});

t.test('E_NETWORK stays queued with backoff, then fails after 1 + retries tries', async (t) => {
  const dead = await startOrigin();
  const url = dead.url('/gone.png');
  await dead.close(); // connection refused from now on
  const { sched, events } = await setup(t, { retryBaseMs: 30, retries: 2 });
  sched.start();
  const [j] = await sched.enqueue([{ url, source: 'rpc' }], { priority: 0 });
  const waiting = await waitFor(() => {
    const cur = sched.get(j.id);
    return cur?.nextRetryAt !== undefined && cur.state === 'queued' ? cur : undefined;
  }, { what: 'backoff' });
  t.equal(waiting.lastError?.code, 'E_NETWORK', 'the waiting job says why');
  t.equal(waiting.error, undefined, 'error is for failed jobs only');
  t.equal(waiting.maxAttempts, 3);
  const [end] = await sched.wait([j.id]);
  t.equal(end.state, 'failed');
  t.equal(end.error?.code, 'E_NETWORK');
  t.equal(end.attempts, 3);
  const retrying = events.filter((e) => e.type === 'job.retrying');
  t.equal(retrying.length, 2, 'one job.retrying per retry');
  t.match(retrying[0], { job: { id: j.id, attempts: 1, state: 'queued' }, error: { code: 'E_NETWORK' } });
});

t.test('E_DISK_FULL keeps the job queued, pauses dispatch, and the queue moves again', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  for (let i = 0; i < 3; i++) origin.route(`/f${i}.png`, { body: png(500 + i) });
  // Fault injection: the disk is "full" for the first two downloads. The real
  // ENOSPC path is covered end to end by test/daemon-diskfull.test.ts.
  let full = 2;
  const { sched, events } = await setup(t, {
    concurrency: 1,
    diskFullBaseMs: 50,
    cache: (c) => ({
      download: (url, o) => (full-- > 0 ? Promise.reject(new MediaCacheError('E_DISK_FULL', 'disk full: ENOSPC', { url })) : c.download(url, o)),
    }),
  });
  sched.start();
  const jobs = await sched.enqueue(Array.from({ length: 3 }, (_, i) => ({ url: origin.url(`/f${i}.png`), source: 'rpc' })), { priority: 0 });
  await waitFor(() => sched.get(jobs[0].id)?.lastError?.code === 'E_DISK_FULL', { what: 'disk full seen' });
  t.equal(sched.get(jobs[0].id)?.state, 'queued');
  const done = await sched.wait(jobs.map((j) => j.id));
  t.same(done.map((j) => j.state), ['done', 'done', 'done']);
  t.equal(done[0].attempts, 3, 'same job retried after the pause');
  t.equal(events.filter((e) => e.type === 'job.failed').length, 0, 'disk full is not a job failure');
});

t.test('pure parts: DispatchQueue order, Deque growth, backoff bounds, listJobs', async (t) => {
  const { DispatchQueue, Deque } = await import('../../../src/daemon/jobs/queue.js');
  const { backoffMs } = await import('../../../src/daemon/jobs/backoff.js');
  const { listJobs } = await import('../../../src/daemon/jobs/list.js');

  const dq = new Deque<number>();
  for (let i = 0; i < 40; i++) dq.push(i);
  dq.unshift(-1);
  t.equal(dq.length, 41);
  t.equal(dq.shift(), -1);
  t.equal(dq.shift(), 0);

  const q = new DispatchQueue();
  const live = new Set(['a', 'b', 'c', 'd', 'e']);
  q.add({ id: 'a', seq: 1, host: 'h1', priority: 10, gen: 1 });
  q.add({ id: 'b', seq: 2, host: 'h1', priority: 10, gen: 1 });
  q.add({ id: 'c', seq: 3, host: 'h2', priority: 10, gen: 1 });
  q.add({ id: 'd', seq: 4, host: 'h2', priority: 0, gen: 1 });
  q.add({ id: 'e', seq: 5, host: 'h1', priority: 0, gen: 1 });
  live.delete('e'); // stale entry: skipped
  const isLive = (r: { id: string }) => live.has(r.id);
  const order: string[] = [];
  const full = new Set(['h2']);
  order.push(q.next(isLive, (h) => !full.has(h))!.id); // h2 full: priority 0 has only d (h2) → falls to priority 10, h1 head a
  full.clear();
  for (let r = q.next(isLive, () => true); r; r = q.next(isLive, () => true)) order.push(r.id);
  t.same(order, ['a', 'd', 'b', 'c']);

  for (let n = 0; n < 12; n++) {
    const v = backoffMs(n, 1000, 30_000, () => 0.5);
    t.ok(v <= 30_000 && v >= Math.min(30_000, 1000 * 2 ** n) * 0.75, `backoff ${n} = ${v}`);
  }
  t.equal(backoffMs(0, 1000, 30_000, () => 1), 1000);

  const rec = (id: string, seq: number, state: 'queued' | 'running' | 'done' | 'failed', priority = 10, updatedAt = '2026-01-01T00:00:00.000Z') =>
    ({ id, seq, url: `http://h/${id}`, state, priority, attempts: 0, createdAt: updatedAt, updatedAt, source: 'rpc' });
  const jobs = [rec('q1', 1, 'queued'), rec('d1', 2, 'done', 10, '2026-01-01T00:00:01.000Z'), rec('r1', 3, 'running'), rec('q0', 4, 'queued', 0), rec('d2', 5, 'done', 10, '2026-01-01T00:00:02.000Z')];
  t.same(listJobs(jobs).jobs.map((j) => j.id), ['r1', 'q0', 'q1', 'd2', 'd1']);
  t.same(listJobs(jobs, { state: 'done', limit: 1 }), { jobs: [listJobs(jobs).jobs[3]], total: 2 });
});

t.test('per-host limit is per hostname: two ports of one host share it', async (t) => {
  const a = await startOrigin('127.0.0.1');
  const b = await startOrigin('127.0.0.1');
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const sa = { inFlight: 0, max: 0, order: [] as string[] };
  const sb = { inFlight: 0, max: 0, order: [] as string[] };
  const ga = gated(a, sa);
  const gb = gated(b, sb);
  for (let i = 0; i < 3; i++) ga.add(`/a${i}.png`, 600 + i);
  for (let i = 0; i < 3; i++) gb.add(`/b${i}.png`, 700 + i);
  const { sched } = await setup(t, { concurrency: 6, perHost: 2 });
  sched.start();
  const jobs = await sched.enqueue(
    [0, 1, 2].flatMap((i) => [{ url: a.url(`/a${i}.png`), source: 'rpc' }, { url: b.url(`/b${i}.png`), source: 'rpc' }]),
    { priority: 0 },
  );
  await waitFor(() => ga.held + gb.held === 2, { what: 'two requests held' });
  // Give the dispatcher a chance to (wrongly) start more: enqueue settles dispatch synchronously.
  await sched.enqueue([], { priority: 0 });
  t.equal(sched.active().length, 2, '127.0.0.1 holds 2 slots in all, not 2 per port');
  ga.release();
  gb.release();
  await sched.wait(jobs.map((j) => j.id));
  t.ok(sa.max + sb.max <= 4 && Math.max(sa.max, sb.max) <= 2);
});

t.test('a 429 with a huge Retry-After waits queued (capped), without holding a slot', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/limited.png', { status: 429, headers: { 'retry-after': '86400' }, body: 'slow down' });
  origin.route('/ok.png', { body: png(800) });
  const { sched, events } = await setup(t, { concurrency: 1 });
  sched.start();
  const [lim] = await sched.enqueue([{ url: origin.url('/limited.png'), source: 'rpc' }], { priority: 0 });
  const waiting = await waitFor(() => (sched.get(lim.id)?.nextRetryAt ? sched.get(lim.id) : undefined), { what: '429 seen' });
  t.equal(waiting.state, 'queued');
  const wait = Date.parse(waiting.nextRetryAt!) - Date.now();
  t.ok(wait > 200_000 && wait <= 300_000, `Retry-After of a day capped at 5 min (${wait} ms)`);
  t.match(events.find((e) => e.type === 'job.retrying'), { delayMs: 300_000, error: { code: 'E_HTTP', status: 429 } });
  t.same(sched.active(), [], 'no slot held while waiting');
  const [ok] = await sched.enqueue([{ url: origin.url('/ok.png'), source: 'rpc' }], { priority: 0 });
  t.equal((await sched.wait([ok.id]))[0].state, 'done', 'the only slot serves other work');
  const c = await sched.cancel({ id: lim.id });
  t.match(c, { cancelled: true, job: { state: 'failed', error: { code: 'E_ABORTED' } } });
});

t.test('a stalled transfer lends its slot (lag detection)', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const stats = { inFlight: 0, max: 0, order: [] as string[] };
  const g = gated(origin, stats);
  g.add('/stuck.png', 900);
  origin.route('/fresh.png', { body: png(901) });
  const { sched } = await setup(t, { concurrency: 1, lagWindowMs: 300 });
  sched.start();
  const [stuck] = await sched.enqueue([{ url: origin.url('/stuck.png'), source: 'rpc' }], { priority: 0 });
  await waitFor(() => g.held === 1, { what: 'stuck request at origin' });
  const t0 = Date.now();
  const [fresh] = await sched.enqueue([{ url: origin.url('/fresh.png'), source: 'rpc' }], { priority: 0 });
  t.equal((await sched.wait([fresh.id]))[0].state, 'done');
  t.ok(Date.now() - t0 < 5000, 'fresh work ran beside the stalled one');
  t.match(sched.active(), [{ jobId: stuck.id, stalled: true }]);
  g.release();
  t.equal((await sched.wait([stuck.id]))[0].state, 'done', 'the stalled one still finishes');
});

t.test('done is persisted only after the index flush', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/r.png', { body: png(1000) });
  let releaseFlush!: () => void;
  const flushGate = new Promise<void>((r) => (releaseFlush = r));
  let flushCalls = 0;
  // Fault injection: an index whose flush is slow (a busy disk).
  const { sched, store } = await setup(t, {
    cache: (c) => ({
      download: (url, o) => c.download(url, o),
      index: {
        flush: async () => {
          flushCalls++;
          await flushGate;
          await c.index.flush();
        },
        embedded: c.index.embedded,
      },
    }),
  });
  sched.start();
  const [j] = await sched.enqueue([{ url: origin.url('/r.png'), source: 'rpc' }], { priority: 0 });
  await waitFor(() => flushCalls === 1, { what: 'commit waiting for the index' });
  await store.flush();
  const onDisk = await JobStore.open(store.dir);
  t.equal(onDisk.get(j.id)?.state, 'running', 'not done on disk while the record is not durable');
  t.equal(sched.get(j.id)?.state, 'running');
  releaseFlush();
  t.equal((await sched.wait([j.id]))[0].state, 'done');
});

t.test('after a crash, a done job whose record is missing runs again; after a clean stop it does not', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/lost.png', { body: png(1100) });
  origin.route('/removed.png', { body: png(1101) });
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-repair-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'jobs');
  const mk = (s: JobStore, url: string) => {
    const seq = s.nextSeq();
    const now = new Date().toISOString();
    s.put({ id: `j${seq}`, seq, url, state: 'done', priority: 0, attempts: 1, createdAt: now, updatedAt: now, source: 'rpc', md5: 'f'.repeat(32) });
    return `j${seq}`;
  };
  // A run that died: the store is flushed but never closed.
  const crashed = await JobStore.open(dir);
  const lost = mk(crashed, origin.url('/lost.png'));
  await crashed.flush();
  const cache = await MediaCache.open({ cacheDir: path.join(root, 'cache'), retries: 0 });
  t.teardown(() => cache.close());
  const store = await JobStore.open(dir);
  t.equal(store.recoveredFromCrash, true);
  const sched = new Scheduler({ cache, store, concurrency: 2, logger: silentLogger, lagWindowMs: 0 });
  sched.start();
  t.equal(store.get(lost)?.state !== 'done', true, 're-queued at start');
  const [end] = await sched.wait([lost]);
  t.equal(end.state, 'done');
  t.equal(end.md5, (await cache.findByUrl(origin.url('/lost.png')))?.md5, 'now with its record');
  t.equal(origin.hits('/lost.png'), 1);
  const removed = mk(store, origin.url('/removed.png'));
  await sched.drain(0);
  await store.close();
  // A clean stop: a done job without record (removed on purpose) stays done.
  const store2 = await JobStore.open(dir);
  t.equal(store2.recoveredFromCrash, false);
  const sched2 = new Scheduler({ cache, store: store2, concurrency: 2, logger: silentLogger, lagWindowMs: 0 });
  sched2.start();
  t.equal(store2.get(removed)?.state, 'done');
  t.equal(origin.hits('/removed.png'), 0);
  await sched2.drain(0);
  await store2.close();
});

t.test('add --pin of a queued URL is kept with the job: after a restart the content is still pinned once cached', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/p.png', { body: png(71) });
  origin.route('/q.png', { body: png(72) });
  origin.route('/r.png', { body: png(73) });
  const { sched, store, root, cache } = await setup(t);
  // Not started: the jobs stay queued, as when the daemon stops before running them.
  const [p] = await sched.enqueue([{ url: origin.url('/p.png'), source: 'rpc' }], { priority: 0, pin: true });
  const [q] = await sched.enqueue([{ url: origin.url('/q.png'), source: 'rpc' }], { priority: 0 });
  const [r] = await sched.enqueue([{ url: origin.url('/r.png'), source: 'rpc' }], { priority: 0 });
  const [q2] = await sched.enqueue([{ url: origin.url('/q.png'), source: 'rpc' }], { priority: 0, pin: true });
  t.equal(q2.id, q.id, 'a second add of a queued URL joins its job');
  t.notOk('pin' in p, 'the flag is internal: not in the public job');
  await sched.drain(0);
  await store.close();
  await cache.close();
  // "Restart": a new cache (nothing of the first one's memory) and the same job folder.
  const cache2 = await MediaCache.open({ cacheDir: path.join(root, 'cache'), retries: 0, timeoutMs: 10_000 });
  const store2 = await JobStore.open(store.dir);
  t.equal(store2.get(p.id)?.pin, true, 'pin stored with the job');
  t.equal(store2.get(q.id)?.pin, true, 'pin of a later add stored with the queued job');
  t.notOk(store2.get(r.id)?.pin);
  const sched2 = new Scheduler({ cache: cache2, store: store2, concurrency: 2, logger: silentLogger });
  sched2.start();
  const done = await sched2.wait([p.id, q.id, r.id]);
  t.same(done.map((j) => j.state), ['done', 'done', 'done']);
  t.equal((await cache2.findByUrl(origin.url('/p.png')))?.pinned, true, 'pinned after the restart');
  t.equal((await cache2.findByUrl(origin.url('/q.png')))?.pinned, true);
  t.notOk((await cache2.findByUrl(origin.url('/r.png')))?.pinned, 'a job without --pin leaves its content unpinned');
  t.same((await cache2.stats()).pinned?.count, 2);
  await sched2.drain(0);
  await store2.close();
  await cache2.close();
});
