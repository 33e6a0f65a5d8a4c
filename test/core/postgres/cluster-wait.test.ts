/**
 * ClusterScheduler.wait on a real PostgreSQL: jobs ended by this daemon end
 * the wait from its own events, without waiting for the next poll.
 */
import t from 'tap';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { PgQueue } from '../../../src/core/postgres/index.js';
import { silentLogger } from '../../../src/core/util/logger.js';
import { ClusterScheduler } from '../../../src/daemon/jobs/cluster-scheduler.js';
import { countingRoutes, startOrigin } from '../../helpers/origin.js';
import { mediaBody } from '../../helpers/media.js';
import { pgServer } from '../../helpers/postgres.js';

const pg = await pgServer(t);

t.test('wait() ends when the last job ends here, not at the next poll', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const bodies = new Map<string, Buffer>([0, 1, 2, 3, 4].map((i) => [`/w${i}.png`, mediaBody(`wait${i}`, 5000)]));
  countingRoutes(origin, bodies, 20);
  const cache = await MediaCache.open({ cacheDir: t.testdir(), database: await pg.freshDatabase(), retries: 0 });
  const queue = new PgQueue(cache.database!);
  // Poll a minute away: only an enqueue, a job's end or an event can move things along.
  const sched = new ClusterScheduler({ cache, queue, nodeId: 'node-w', logger: silentLogger, pollMs: 60_000, concurrency: 2, perHost: 0 });
  t.teardown(async () => {
    await sched.drain(0);
    await cache.close();
  });
  sched.start();
  const jobs = await sched.enqueue([...bodies.keys()].map((p) => ({ url: origin.url(p), source: 'rpc' })), { priority: 0 });
  const t0 = Date.now();
  const ended = await sched.wait(jobs.map((j) => j.id));
  t.ok(Date.now() - t0 < 30_000, `ended in ${Date.now() - t0} ms, long before a poll`);
  t.same(
    ended.map((j) => [j.id, j.state]),
    jobs.map((j) => [j.id, 'done']),
  );
  t.same(await queue.counts(), { queued: 0, running: 0, done: 5, failed: 0 }, 'the database agrees');
});
