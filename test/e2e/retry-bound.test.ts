/**
 * One retry layer per caller, counted at the origin: a URL whose origin
 * always fails is fetched at most 1 + retries times per library call and per
 * daemon job (README, "Retries"), and an internal fault (E_INTERNAL) fails
 * after one fetch.
 */
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Agent, type Dispatcher } from 'undici';
import { MediaCache } from '../../src/core/cache/media-cache.js';
import { silentLogger } from '../../src/core/util/logger.js';
import { JobStore } from '../../src/daemon/jobs/job-store.js';
import { Scheduler } from '../../src/daemon/jobs/scheduler.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { startDaemon } from '../helpers/daemon.js';

const PNG = fixture('sample.png');

type Tt = Parameters<Parameters<typeof t.test>[0]>[0];

/** An origin that accepts connections and resets each one when the request arrives. */
async function resetOrigin(t: Tt): Promise<{ url: (p: string) => string; hits: () => number }> {
  let hits = 0;
  const srv = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => {
      hits++;
      s.resetAndDestroy();
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const port = (srv.address() as net.AddressInfo).port;
  return { url: (p) => `http://127.0.0.1:${port}${p}`, hits: () => hits };
}

function tmpRoot(t: Tt): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-retry-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  return root;
}

/**
 * Fault injection (the one mock here): a real undici Agent whose response
 * handler throws a TypeError, as a bug in our handler would. Nothing else
 * produces an internal error on demand.
 */
function throwingDispatcher(): Dispatcher {
  return new Agent().compose((dispatch) => (opts, handler) =>
    dispatch(opts, {
      onRequestStart: (c, ctx) => handler.onRequestStart?.(c, ctx),
      onResponseStart: () => {
        throw new TypeError("Cannot read properties of undefined (reading 'md5')");
      },
      onResponseData: (c, d) => handler.onResponseData?.(c, d),
      onResponseEnd: (c, tr) => handler.onResponseEnd?.(c, tr),
      onResponseError: (c, e) => handler.onResponseError?.(c, e),
    }),
  );
}

t.test('library: 1 + retries fetches per call for 503 and for connection resets; per-call retries', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/busy.png', { status: 503, body: 'busy' });
  origin.route('/busy2.png', { status: 503, body: 'busy' });
  const reset = await resetOrigin(t);
  const cache = await MediaCache.open({ cacheDir: tmpRoot(t), retries: 2, retryBaseDelayMs: 5, retryMaxDelayMs: 20 });
  t.teardown(() => cache.close());

  await t.rejects(cache.download(origin.url('/busy.png')), { code: 'E_HTTP', status: 503 });
  t.equal(origin.hits('/busy.png'), 3, '503: 1 + 2 retries');
  await t.rejects(cache.download(reset.url('/r.png')), { code: 'E_NETWORK' });
  t.equal(reset.hits(), 3, 'reset: 1 + 2 retries');
  await t.rejects(cache.download(origin.url('/busy2.png'), { retries: 0 }), { code: 'E_HTTP' });
  t.equal(origin.hits('/busy2.png'), 1, 'retries: 0 is one fetch');
});

t.test('scheduler: the library does not retry inside a job; 1 + retries fetches per job', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/busy.png', { status: 503, headers: { 'retry-after': '0' }, body: 'busy' });
  const reset = await resetOrigin(t);
  const root = tmpRoot(t);
  // The cache's own default (3 retries) must not apply to scheduler jobs.
  const cache = await MediaCache.open({ cacheDir: path.join(root, 'c'), retries: 3, retryBaseDelayMs: 5 });
  const store = await JobStore.open(path.join(root, 'jobs'), { flushDelayMs: 10 });
  const sched = new Scheduler({ cache, store, concurrency: 2, logger: silentLogger, retries: 2, retryBaseMs: 10, lagWindowMs: 0 });
  t.teardown(async () => {
    await sched.drain(0);
    await store.close();
    await cache.close();
  });
  sched.start();
  const jobs = await sched.enqueue([{ url: origin.url('/busy.png'), source: 'rpc' }, { url: reset.url('/r.png'), source: 'rpc' }], { priority: 0 });
  const ended = await sched.wait(jobs.map((j) => j.id));
  t.match(ended, [
    { state: 'failed', attempts: 3, maxAttempts: 3, error: { code: 'E_HTTP', status: 503 } },
    { state: 'failed', attempts: 3, maxAttempts: 3, error: { code: 'E_NETWORK' } },
  ]);
  t.equal(origin.hits('/busy.png'), 3, '503 through the scheduler: 3 fetches, not 3 x 4');
  t.equal(reset.hits(), 3, 'resets through the scheduler: 3 fetches');
});

t.test('an internal error fails at once with E_INTERNAL: one fetch, no retry (library and scheduler)', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/a.png', { body: PNG });
  origin.route('/b.png', { body: PNG });
  const root = tmpRoot(t);
  const dispatcher = throwingDispatcher();
  t.teardown(() => dispatcher.close());
  const cache = await MediaCache.open({ cacheDir: path.join(root, 'c'), retries: 3, retryBaseDelayMs: 5, dispatcher });
  const store = await JobStore.open(path.join(root, 'jobs'), { flushDelayMs: 10 });
  const sched = new Scheduler({ cache, store, concurrency: 2, logger: silentLogger, retries: 3, retryBaseMs: 10, lagWindowMs: 0 });
  t.teardown(async () => {
    await sched.drain(0);
    await store.close();
    await cache.close();
  });

  const t0 = Date.now();
  await t.rejects(cache.download(origin.url('/a.png')), { code: 'E_INTERNAL', retryable: false, message: /TypeError/ });
  t.equal(origin.hits('/a.png'), 1, 'library: one fetch');

  sched.start();
  const [j] = await sched.enqueue([{ url: origin.url('/b.png'), source: 'rpc' }], { priority: 0 });
  const [end] = await sched.wait([j.id]);
  t.match(end, { state: 'failed', attempts: 1, error: { code: 'E_INTERNAL' } });
  t.equal(origin.hits('/b.png'), 1, 'scheduler: one fetch');
  t.ok(Date.now() - t0 < 5000, 'no backoff anywhere');
});

t.test('daemon (spawned): 1 + --retries fetches per URL per add, counted at the origin', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/busy.png', { status: 503, body: 'busy' });
  const reset = await resetOrigin(t);
  const d = await startDaemon(t, { args: ['--retries', '2', '--retry-delay', '20'] });
  const r = await d.rpc('add', { urls: [origin.url('/busy.png'), reset.url('/r.png')], wait: true });
  t.match(r.items, [
    { state: 'failed', error: { code: 'E_HTTP', status: 503 } },
    { state: 'failed', error: { code: 'E_NETWORK' } },
  ]);
  t.equal(origin.hits('/busy.png'), 3, '503: 1 + 2 fetches');
  t.equal(reset.hits(), 3, 'reset: 1 + 2 fetches');
  const jobs = await d.rpc('jobs', { state: 'failed' });
  t.ok(jobs.jobs.every((j) => j.attempts === 3 && j.maxAttempts === 3 && j.lastError !== undefined), 'attempts recorded');
  // A later add is a new job with a new budget.
  await d.rpc('add', { urls: [origin.url('/busy.png')], wait: true, retries: 0 });
  t.equal(origin.hits('/busy.png'), 4, 'add {retries: 0}: one more fetch');
});
