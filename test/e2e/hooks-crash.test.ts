/**
 * End to end: webhook deliveries are kept across a daemon kill -9. The
 * receiver stalls (takes requests, never answers) while jobs end; the daemon
 * is SIGKILLed with every delivery pending; after a restart, with the
 * receiver answering, every event arrives (at least once, signed).
 */
import t from 'tap';
import fs from 'node:fs';
import crypto from 'node:crypto';
import { makeRoot, startDaemon } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { startReceiver } from '../daemon/hooks/receiver.js';
import { pendingInOutbox } from './hooks-helpers.js';

const SECRET = 'crash-secret';

t.test('kill -9 with deliveries pending: all delivered after the restart', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const rx = await startReceiver(SECRET);
  t.teardown(() => rx.close());
  const png = fixture('sample.png');
  const bodies = Array.from({ length: 6 }, (_, i) => Buffer.concat([png, Buffer.from(`body-${i}`)]));
  bodies.forEach((b, i) => origin.route(`/p${i}.png`, { body: b, headers: { 'content-type': 'image/png' } }));
  origin.route('/gone.png', { status: 410, body: 'gone' });
  const urls = [...bodies.map((_, i) => origin.url(`/p${i}.png`)), origin.url('/gone.png')];

  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const args = ['--webhook', rx.url, '--webhook-secret', SECRET, '--hook-timeout', '2m'];
  rx.mode = 'stall';
  const d1 = await startDaemon(t, { root, args });
  const added = await d1.rpc('add', { urls, wait: true });
  t.same(added.items.map((i) => i.state), [...bodies.map(() => 'done'), 'failed']);
  const jobs = await d1.rpc('jobs', {});
  t.equal(jobs.jobs.filter((j) => j.state === 'done' || j.state === 'failed').length, 7);

  // Every end is in the outbox (on disk) and the receiver holds requests it never answers.
  // (7 job ends, plus the sweep.done of the new cache's start-up sweep.)
  await waitFor(() => pendingInOutbox(d1.cacheDir).length >= 7, { what: 'the job deliveries in the outbox file', timeoutMs: 30_000 });
  await waitFor(() => rx.seen.length >= 1, { what: 'a stalled request at the receiver' });
  t.equal(rx.delivered.length, 0, 'nothing acknowledged yet');
  const stalledIds = rx.seen.map((x) => x.id);
  d1.kill('SIGKILL');
  t.equal((await d1.exited).signal, 'SIGKILL');
  const pendingIds = pendingInOutbox(d1.cacheDir);
  t.ok(pendingIds.length >= 7, `the outbox survived the kill (${pendingIds.length} pending)`);

  rx.mode = 'ok';
  await rx.stop(); // drop the stalled connections
  await rx.start();
  const d2 = await startDaemon(t, { root, args });
  await waitFor(() => pendingIds.every((id) => rx.delivered.some((x) => x.id === id)), { what: 'every pending delivery after the restart', timeoutMs: 60_000 });
  await waitFor(() => pendingInOutbox(d2.cacheDir).length === 0, { what: 'outbox drained' });
  t.ok(rx.delivered.every((x) => x.verified), 'signed');
  const done = rx.delivered.filter((x) => x.event === 'job.done');
  t.same(
    [...new Set(done.map((x) => (x.json.data.record as { md5: string }).md5))].sort(),
    bodies.map((b) => crypto.createHash('md5').update(b).digest('hex')).sort(),
    'a job.done for every download',
  );
  t.ok(rx.delivered.some((x) => x.event === 'job.failed' && x.json.data.status === 410), 'and the failure');
  t.ok(stalledIds.every((id) => rx.seen.filter((x) => x.id === id).length >= 2), 'those stalled at the kill were sent again, same delivery id (receivers dedupe on it)');
  t.equal((await d2.stop()).code, 0);
});
