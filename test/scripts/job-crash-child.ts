/**
 * Child for the job/index crash test: a daemon's download path in one
 * process (MediaCache + JobStore + Scheduler) fetching `<base>/f<i>.png` for
 * i < count. The index flushes lazily (2 s) and the job store eagerly (5 ms),
 * the widest window for a `done` job to reach the disk before its record.
 * Reports `done <jobId>` per finished job on stderr and `all done` (then
 * exits) once nothing is queued. The test SIGKILLs it at arbitrary moments.
 * Arguments: cache dir, origin base URL, count.
 */
import path from 'node:path';
import { MediaCache } from '../../src/core/cache/media-cache.js';
import { silentLogger } from '../../src/core/util/logger.js';
import { JobStore } from '../../src/daemon/jobs/job-store.js';
import { Scheduler } from '../../src/daemon/jobs/scheduler.js';

const [cacheDir, base, countArg] = process.argv.slice(2);
const count = Number(countArg);
const cache = await MediaCache.open({ cacheDir, flushDelayMs: 2000, retries: 0 });
const store = await JobStore.open(path.join(cacheDir, 'index', 'jobs'), { flushDelayMs: 5, lazyFlushDelayMs: 5 });
const sched = new Scheduler({ cache, store, concurrency: 4, logger: silentLogger, lagWindowMs: 0 });
let finished = false;
const finishIfIdle = async (): Promise<void> => {
  const c = store.counts();
  if (finished || c.queued + c.running > 0) return;
  finished = true;
  await sched.drain(0);
  await store.close();
  await cache.close();
  process.stderr.write('all done\n');
  process.exit(0);
};
sched.on('event', (ev: { type: string; job?: { id: string } }) => {
  if (ev.type === 'job.done' || ev.type === 'job.failed') {
    process.stderr.write(`${ev.type === 'job.done' ? 'done' : 'failed'} ${ev.job!.id}\n`);
    void finishIfIdle();
  }
});
sched.start();
if (store.size === 0) {
  await sched.enqueue(Array.from({ length: count }, (_, i) => ({ url: `${base}/f${i}.png`, source: `crash:${i}` })), { priority: 10 });
}
process.stderr.write(`started ${store.size}\n`);
await finishIfIdle();
