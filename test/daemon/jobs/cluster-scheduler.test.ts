/**
 * ClusterScheduler against a real PostgreSQL, with two schedulers (two
 * daemons) on one database and one content root: overlapping URL lists end
 * done once each, the per-host limit holds for the cluster, and the jobs of
 * a daemon that died are taken over when its lease expires.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { PgQueue } from '../../../src/core/postgres/index.js';
import { silentLogger } from '../../../src/core/util/logger.js';
import { ClusterScheduler } from '../../../src/daemon/jobs/cluster-scheduler.js';
import { countingRoutes, heldRoute, startOrigin } from '../../helpers/origin.js';
import { mediaBody, md5Of } from '../../helpers/media.js';
import { pgServer } from '../../helpers/postgres.js';
import { waitFor } from '../../helpers/wait.js';

const pg = await pgServer(t);

async function member(t: Test, root: string, url: string, nodeId: string, o: { concurrency: number; perHost: number; leaseMs?: number; pollMs?: number }): Promise<{ cache: MediaCache; sched: ClusterScheduler; queue: PgQueue }> {
  const cache = await MediaCache.open({ cacheDir: root, database: url, retries: 0 });
  const queue = new PgQueue(cache.database!);
  const sched = new ClusterScheduler({ cache, queue, nodeId, logger: silentLogger, pollMs: 50, ...o });
  t.teardown(async () => {
    await sched.drain(0);
    await cache.close();
  });
  sched.start();
  return { cache, sched, queue };
}

t.test('two daemons, overlapping lists: every URL done once, one file per content, per-host limit held cluster-wide', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const bodies = new Map<string, Buffer>();
  // 30 URLs, 20 distinct contents: /u20../u29 serve the bytes of /u0../u9.
  for (let i = 0; i < 30; i++) bodies.set(`/u${i}.png`, mediaBody(`c${i % 20}`, 9000));
  const { peak } = countingRoutes(origin, bodies, 120);
  const url = await pg.freshDatabase();
  const root = t.testdir();
  const a = await member(t, root, url, 'node-a', { concurrency: 4, perHost: 3 });
  const b = await member(t, root, url, 'node-b', { concurrency: 4, perHost: 3 });
  const urls = [...bodies.keys()].map((p) => origin.url(p));
  const [ja, jb] = await Promise.all([
    a.sched.enqueue(urls.slice(0, 20).map((u) => ({ url: u, source: 'rpc' })), { priority: 0 }),
    b.sched.enqueue(urls.slice(10).map((u) => ({ url: u, source: 'inbox:1' })), { priority: 10 }),
  ]);
  for (let i = 10; i < 20; i++) t.equal(ja[i].id, jb[i - 10].id, `URL ${i} queued by both is one job`);
  const ended = await Promise.all([a.sched.wait(ja.map((j) => j.id)), b.sched.wait(jb.map((j) => j.id))]);
  t.ok(ended.flat().every((j) => j.state === 'done'), 'all done');
  for (const p of bodies.keys()) t.equal(origin.hits(p), 1, `${p} fetched once`);
  const files = fs.readdirSync(path.join(root, 'images')).sort();
  t.same(files, [...new Set([...bodies.values()].map((b) => `${md5Of(b)}.png`))].sort(), 'one file per distinct content');
  t.equal((await a.cache.stats()).totalFiles, 20, 'the database agrees with the files');
  for (const [p, body] of bodies) t.equal((await b.cache.findByUrl(origin.url(p)))?.md5, md5Of(body));
  t.ok(peak() <= 3, `the origin saw at most 3 requests at once (saw ${peak()}) with two daemons of concurrency 4`);
  t.ok(peak() >= 2, 'and the daemons did run in parallel');
  const counts = await a.queue.counts();
  t.same(counts, { queued: 0, running: 0, done: 30, failed: 0 });
  const shares = await a.queue.shares();
  t.equal((shares.get('node-a')?.done ?? 0) + (shares.get('node-b')?.done ?? 0), 30, 'shares add up');
});

t.test("a dead daemon's claimed jobs are finished by another once the lease expires", async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const bodies = new Map<string, Buffer>([0, 1, 2].map((i) => [`/d${i}.png`, mediaBody(`dead${i}`, 9000)]));
  countingRoutes(origin, bodies, 10);
  const url = await pg.freshDatabase();
  const root = t.testdir();
  const b = await member(t, root, url, 'node-b', { concurrency: 2, perHost: 0 });
  await b.sched.drain(0); // b only runs once the dead node holds its jobs
  const jobs = await b.queue.enqueue([...bodies.keys()].map((p) => ({ url: origin.url(p), source: 'rpc' })));
  // What a daemon killed with SIGKILL leaves: jobs claimed under a lease nobody renews.
  const claimed = await b.queue.claim('node-dead', 3, { perHostLimit: 0, leaseMs: 800 });
  t.equal(claimed.length, 3);
  const b2 = new ClusterScheduler({ cache: b.cache, queue: b.queue, nodeId: 'node-b', logger: silentLogger, pollMs: 50, concurrency: 2, perHost: 0 });
  t.teardown(() => b2.drain(0));
  b2.start();
  const t0 = Date.now();
  const done = await b2.wait(jobs.map((j) => j.job.id));
  t.ok(done.every((j) => j.state === 'done'), 'finished');
  t.ok(Date.now() - t0 >= 500, 'not before the lease expired');
  for (const j of await b.queue.getMany(jobs.map((x) => x.job.id))) t.equal(j.doneBy, 'node-b');
  for (const p of bodies.keys()) t.equal(origin.hits(p), 1, `${p} fetched once`);
  await waitFor(async () => (await b.queue.counts()).running === 0, { what: 'nothing left running' });
});

t.test('a slot freed by a finished job is filled at once, not at the next poll', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const bodies = new Map<string, Buffer>([0, 1, 2, 3, 4, 5].map((i) => [`/n${i}.png`, mediaBody(`next${i}`, 9000)]));
  countingRoutes(origin, bodies, 20);
  const url = await pg.freshDatabase();
  // The poll timer is a minute away: only claims on "queued" and "ended" can move these six jobs through one slot.
  const a = await member(t, t.testdir(), url, 'node-a', { concurrency: 1, perHost: 0, pollMs: 60_000 });
  await a.sched.enqueue([...bodies.keys()].map((p) => ({ url: origin.url(p), source: 'rpc' })), { priority: 0 });
  await waitFor(async () => (await a.queue.counts()).done === 6, { timeoutMs: 20_000, what: 'six jobs done, one after another' });
  for (const p of bodies.keys()) t.equal(origin.hits(p), 1, `${p} fetched once`);
});

t.test('cancel by URL in cluster mode: a queued job of another daemon and one running here, both ended E_ABORTED with job.failed', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const held = heldRoute(origin, '/held.png', mediaBody('held', 9000));
  t.teardown(() => held.release());
  const url = await pg.freshDatabase();
  const root = t.testdir();
  const a = await member(t, root, url, 'node-a', { concurrency: 1, perHost: 0 });
  const b = await member(t, root, url, 'node-b', { concurrency: 1, perHost: 0 });
  await b.sched.drain(0); // b only queues
  const failed: string[] = [];
  a.sched.on('event', (ev) => void (ev.type === 'job.failed' && failed.push(`a:${ev.job.id}:${ev.error.code}`)));
  b.sched.on('event', (ev) => void (ev.type === 'job.failed' && failed.push(`b:${ev.job.id}:${ev.error.code}`)));
  const [running] = await a.sched.enqueue([{ url: origin.url('/held.png'), source: 'rpc' }], { priority: 0 });
  await waitFor(() => origin.hits('/held.png') === 1, { what: 'the held download started on a' });
  const [queued] = await b.sched.enqueue([{ url: origin.url('/later.png'), source: 'rpc' }], { priority: 0 });

  // Another spelling of the same URL finds the job (normalised as on enqueue).
  const c1 = await a.sched.cancel({ url: origin.url('/later.png').replace('http://', 'HTTP://') });
  t.same([c1.job.id, c1.cancelled, c1.job.state, c1.job.error?.code], [queued.id, true, 'failed', 'E_ABORTED'], 'the queued job b queued is cancelled from a');
  const c2 = await b.sched.cancel({ url: origin.url('/held.png') });
  t.same([c2.job.id, c2.cancelled], [running.id, true], "b cancels the job running on a");
  const c3 = await a.sched.cancel({ url: origin.url('/held.png') }).catch((e: unknown) => e);
  t.match(c3, { code: 'E_NOT_FOUND' }, 'no queued or running job left for that URL');
  t.ok(failed.includes(`a:${queued.id}:E_ABORTED`) && failed.includes(`b:${running.id}:E_ABORTED`), 'job.failed raised where the cancel was asked');
  held.release();
  const [endedRunning, endedQueued] = await a.sched.wait([running.id, queued.id]);
  t.same([endedRunning.state, endedRunning.error?.code, endedQueued.state], ['failed', 'E_ABORTED', 'failed'], 'neither is done afterwards');
  t.equal(origin.hits('/later.png'), 0, 'the queued URL was never fetched');
  t.same(await a.queue.counts(), { queued: 0, running: 0, done: 0, failed: 2 });
});

t.test('a queued URL already cached is a cache hit when claimed (the claim says it is mapped): no second fetch', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const bodies = new Map<string, Buffer>([
    ['/known.png', mediaBody('known', 9000)],
    ['/new.png', mediaBody('new', 9000)],
  ]);
  countingRoutes(origin, bodies, 10);
  const url = await pg.freshDatabase();
  const a = await member(t, t.testdir(), url, 'node-a', { concurrency: 2, perHost: 0 });
  await a.cache.download(origin.url('/known.png'));
  t.equal(origin.hits('/known.png'), 1);
  const jobs = await a.sched.enqueue([...bodies.keys()].map((p) => ({ url: origin.url(p), source: 'inbox:1' })), { priority: 10 });
  const ended = await a.sched.wait(jobs.map((j) => j.id));
  t.same(ended.map((j) => [j.state, j.md5]), [...bodies.values()].map((b) => ['done', md5Of(b)]));
  t.equal(origin.hits('/known.png'), 1, 'the cached URL was not fetched again');
  t.equal(origin.hits('/new.png'), 1, 'the new one was fetched once');
});
