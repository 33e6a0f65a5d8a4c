/**
 * Job control and visible retries against the real daemon (spawned):
 * a hanging origin shows attempts and the next retry in `jobs`, `--retries 0`
 * fails after one timeout, `cancel` (running and queued), `retry {failed}`,
 * explicit and automatic pruning.
 */
import t from 'tap';
import type http from 'node:http';
import { fixture, startOrigin } from '../helpers/origin.js';
import { startDaemon, RpcError } from '../helpers/daemon.js';
import { waitFor } from '../helpers/wait.js';

const PNG = fixture('sample.png');
const png = (n: number): Buffer => Buffer.concat([PNG, Buffer.from(`jobs-${n}`)]);

/** The RpcError a call rejects with. */
async function failure(p: Promise<unknown>): Promise<RpcError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  if (!(e instanceof RpcError)) throw new Error(`expected an RpcError, got ${String(e)}`);
  return e;
}

/** A route that never answers (the request hangs until the client gives up). */
function hang(held: http.ServerResponse[]) {
  return (_req: http.IncomingMessage, res: http.ServerResponse): void => void held.push(res);
}

t.test('a hanging origin: attempts and next retry in jobs; then failed after 1 + retries', async (t) => {
  const origin = await startOrigin();
  const held: http.ServerResponse[] = [];
  t.teardown(() => origin.close());
  origin.route('/hang.png', hang(held));
  const d = await startDaemon(t, { args: ['--timeout', '800', '--retries', '1', '--retry-delay', '2s'] });
  const sub = await d.connect();
  await sub.call('subscribe', { events: ['job.retrying', 'job.failed'] });
  const [item] = (await d.rpc('add', { urls: [origin.url('/hang.png')] })).items;
  const waiting = await waitFor(async () => (await d.rpc('jobs', {})).jobs.find((j) => j.id === item.jobId && j.nextRetryAt), { timeoutMs: 15_000, what: 'job waiting for its retry' });
  t.match(waiting, { state: 'queued', attempts: 1, maxAttempts: 2, lastError: { code: 'E_TIMEOUT' } });
  t.ok(Date.parse(waiting.nextRetryAt!) > Date.now() - 1000, 'nextRetryAt is in the future (or just now)');
  const ev = await sub.nextEvent((e) => e.type === 'job.retrying');
  t.match(ev, { type: 'job.retrying', job: { id: item.jobId, attempts: 1 }, error: { code: 'E_TIMEOUT' } });
  const failed = await sub.nextEvent((e) => e.type === 'job.failed', 20_000);
  t.match(failed, { job: { id: item.jobId, attempts: 2, state: 'failed' }, error: { code: 'E_TIMEOUT' } });
  t.equal(origin.hits('/hang.png'), 2, 'two tries, two requests');
});

t.test('--retries 0 fails after one timeout', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/hang.png', hang([]));
  const d = await startDaemon(t, { args: ['--timeout', '800', '--retries', '0'] });
  const t0 = Date.now();
  const [item] = (await d.rpc('add', { urls: [origin.url('/hang.png')], wait: true })).items;
  t.match(item, { state: 'failed', error: { code: 'E_TIMEOUT' } });
  t.ok(Date.now() - t0 < 10_000, `one timeout, no retry (${Date.now() - t0} ms)`);
  t.equal(origin.hits('/hang.png'), 1);
  t.match((await d.rpc('jobs', { state: 'failed' })).jobs[0], { attempts: 1, maxAttempts: 1 });
});

t.test('cancel a running and a queued job; retry --failed; prune', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const held: http.ServerResponse[] = [];
  origin.route('/slow.png', hang(held));
  origin.route('/queued.png', { body: png(1) });
  let up = false;
  origin.route('/flaky.png', (_req, res) => {
    if (!up) {
      res.writeHead(404).end('no');
      return;
    }
    const b = png(2);
    res.writeHead(200, { 'content-length': b.length }).end(b);
  });
  const d = await startDaemon(t, { args: ['--concurrency', '1', '--job-history', '3'] });

  // Running: cancelled promptly, ends as failed with E_ABORTED.
  const [run] = (await d.rpc('add', { urls: [origin.url('/slow.png')] })).items;
  await waitFor(() => held.length === 1, { what: 'request at the origin' });
  const [queued] = (await d.rpc('add', { urls: [origin.url('/queued.png')] })).items;
  t.equal(queued.state, 'queued', 'concurrency 1: the second waits');
  const c1 = await d.rpc('cancel', { id: run.jobId! });
  t.match(c1, { cancelled: true, job: { id: run.jobId, state: 'failed', error: { code: 'E_ABORTED' } } });
  // The freed slot runs the queued job.
  await waitFor(async () => (await d.rpc('jobs', { state: 'done' })).total === 1, { what: 'queued job done after the cancel' });

  // Queued, cancelled by URL before it runs (the slot is busy again).
  const [run2] = (await d.rpc('add', { urls: [origin.url('/slow.png')] })).items;
  await waitFor(() => held.length === 2, { what: 'second slow request' });
  const [q2] = (await d.rpc('add', { urls: [origin.url('/flaky.png')] })).items;
  const c2 = await d.rpc('cancel', { url: origin.url('/flaky.png') });
  t.match(c2, { cancelled: true, job: { id: q2.jobId, state: 'failed', error: { code: 'E_ABORTED' } } });
  t.equal(origin.hits('/flaky.png'), 0, 'a cancelled queued job never reaches the origin');
  const again = await d.rpc('cancel', { id: q2.jobId! });
  t.equal(again.cancelled, false, 'an ended job is not cancelled twice');
  t.match(await failure(d.rpc('cancel', { id: 'j999999' })), { data: { code: 'E_NOT_FOUND' } });
  await d.rpc('cancel', { id: run2.jobId! });

  // retry {failed}: the cancelled ones come back; the origin works now.
  up = true;
  for (const r of held.splice(0)) r.destroy();
  origin.route('/slow.png', { body: png(3) });
  const re = await d.rpc('retry', { failed: true });
  t.equal(re.jobs.length, 2, 'two distinct failed URLs re-queued (slow, flaky)');
  t.ok(re.jobs.every((j) => j.state === 'queued' && j.attempts === 0));
  const ended = await waitFor(async () => {
    const done = await d.rpc('jobs', { state: 'done' });
    return done.jobs.filter((j) => j.url === origin.url('/flaky.png') || j.url === origin.url('/slow.png')).length === 2 ? done : undefined;
  }, { timeoutMs: 15_000, what: 're-queued jobs done' });
  t.ok(ended.jobs.some((j) => j.id === q2.jobId), 'the job keeps its id');
  t.match(await failure(d.rpc('retry', { id: q2.jobId! })), { data: { code: 'E_BAD_REQUEST' } }, 'a done job cannot be retried');

  // Explicit prune: keep 1 ended job.
  const before = await d.rpc('stats', {});
  const ended0 = before.queue.done + before.queue.failed;
  t.ok(ended0 >= 2, `${ended0} ended jobs`);
  const p = await d.rpc('prune', { keep: 1 });
  t.same(p, { pruned: ended0 - 1, remaining: 1 });
  const st = await d.rpc('stats', {});
  t.equal(st.queue.done + st.queue.failed, 1);

  // Automatic: --job-history 3 bounds the history without being asked.
  await d.rpc('add', { urls: [1, 2, 3, 4, 5].map((n) => origin.url(`/auto${n}.png`)), wait: true });
  await waitFor(async () => {
    const s = await d.rpc('stats', {});
    return s.queue.done + s.queue.failed <= 3;
  }, { timeoutMs: 30_000, what: 'automatic pruning to --job-history 3' });
  t.pass('history pruned to 3 automatically');
});

t.test('add {priority}: higher runs sooner', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const order: string[] = [];
  const held: http.ServerResponse[] = [];
  origin.route('/block.png', hang(held));
  for (const n of ['low', 'mid', 'high']) {
    origin.route(`/${n}.png`, (req, res) => {
      order.push(n);
      const b = png(n.length * 7 + n.charCodeAt(0));
      res.writeHead(200, { 'content-length': b.length }).end(b);
    });
  }
  const d = await startDaemon(t, { args: ['--concurrency', '1'] });
  await d.rpc('add', { urls: [origin.url('/block.png')] });
  await waitFor(() => held.length === 1, { what: 'slot taken' });
  await d.rpc('add', { urls: [origin.url('/low.png')], priority: -5 });
  await d.rpc('add', { urls: [origin.url('/mid.png')] });
  const hi = await d.rpc('add', { urls: [origin.url('/high.png')], priority: 5 });
  const jobs = await d.rpc('jobs', { state: 'queued' });
  t.same(jobs.jobs.map((j) => j.url.replace(/.*\//, '')), ['high.png', 'mid.png', 'low.png'], 'jobs lists dispatch order');
  t.equal(jobs.jobs[0].priority, -5, 'stored as lower-runs-first');
  t.match(await failure(d.rpc('add', { urls: [origin.url('/x.png')], priority: 1.5 })), { code: -32602 }, 'a fractional priority is a bad param');
  await d.rpc('cancel', { url: origin.url('/block.png') });
  await waitFor(() => order.length === 3, { what: 'three downloads' });
  t.same(order, ['high', 'mid', 'low']);
  t.ok(hi.items[0].jobId);
});
