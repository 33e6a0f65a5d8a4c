import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ManualClock, realClock } from '../../../src/daemon/hooks/clock.js';
import type { HookEvent } from '../../../src/daemon/hooks/events.js';
import { Outbox } from '../../../src/daemon/hooks/outbox.js';
import { WebhookDeliverer } from '../../../src/daemon/hooks/webhook.js';
import { silentLogger } from '../../../src/core/util/logger.js';
import { duplicates, startReceiver } from './receiver.js';
import { waitFor } from '../../helpers/wait.js';

const SECRET = 'test-secret';
function tmp(t: { teardown(fn: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-webhook-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}
const ev = (id: string): HookEvent => ({ id, type: 'job.failed', createdAt: '2024-01-01T00:00:00.000Z', data: { jobId: id, url: `http://o/${id}`, source: 'rpc', attempts: 1, code: 'E_HTTP', message: 'HTTP 404', status: 404 } });

t.test('signed POSTs, each event once, acknowledged in the outbox', async (t) => {
  const rx = await startReceiver(SECRET);
  t.teardown(() => rx.close());
  const ob = await Outbox.open(tmp(t), { logger: silentLogger });
  const d = new WebhookDeliverer({ outbox: ob, secret: SECRET, timeoutMs: 5000, logger: silentLogger });
  t.teardown(async () => {
    await d.close();
    await ob.close();
  });
  for (let i = 0; i < 20; i++) ob.add(ev(`e${i}`), [rx.url]);
  d.kick();
  await waitFor(() => rx.delivered.length === 20 && ob.size === 0, { what: '20 deliveries' });
  t.same(duplicates(rx.delivered), []);
  t.ok(rx.delivered.every((x) => x.verified), 'every signature verifies');
  t.ok(rx.delivered.every((x) => x.event === 'job.failed' && x.json.id === x.id && x.attempt === 1));
  t.same(JSON.parse(rx.delivered.find((x) => x.id === 'e3')!.body), ev('e3'), 'the body is the event');
});

t.test('a receiver down for over a minute (simulated clock) gets everything afterwards', async (t) => {
  const rx = await startReceiver(SECRET);
  t.teardown(() => rx.close());
  const clock = new ManualClock();
  const ob = await Outbox.open(tmp(t), { logger: silentLogger, now: () => clock.now() });
  const d = new WebhookDeliverer({ outbox: ob, secret: SECRET, timeoutMs: 5000, logger: silentLogger, clock, random: () => 0.5, baseDelayMs: 1000, maxDelayMs: 30_000 });
  t.teardown(async () => {
    await d.close();
    await ob.close();
  });
  const t0 = clock.now();
  rx.mode = 'fail'; // 503 for the first half
  for (let i = 0; i < 5; i++) ob.add(ev(`e${i}`), [rx.url]);
  d.kick();
  const attemptsAt: number[] = [];
  const settled = (): number => d.failedAttempts + d.delivered;
  // The first round goes out in parallel (up to 4); after that one probe at a time.
  await waitFor(() => d.failedAttempts >= 1 && d.inFlightCount === 0, { what: 'first round fails' });
  attemptsAt.push(clock.now());
  // Step the clock from retry to retry while the receiver is down: 503s, then connection refused.
  while (clock.now() - t0 < 65_000) {
    if (clock.now() - t0 > 30_000 && rx.mode === 'fail') await rx.stop();
    const before = settled();
    clock.advance(clock.nextAt()! - clock.now());
    await waitFor(() => settled() > before, { what: 'retry settled' });
    attemptsAt.push(clock.now());
  }
  t.equal(d.delivered, 0, 'nothing delivered while down');
  t.equal(ob.size, 5, 'all five still pending');
  const gaps = attemptsAt.slice(1).map((x, i) => x - attemptsAt[i]);
  t.ok(gaps.every((g, i) => i === 0 || g >= gaps[i - 1]), `backoff grows: ${gaps.join(', ')} ms`);
  t.ok(Math.max(...gaps) <= 30_000, 'and is capped');
  t.ok(d.failedAttempts < 15, `one probe at a time, not a storm (${d.failedAttempts} attempts for 5 entries over 65 s: ${attemptsAt.length} retry times)`);

  rx.mode = 'ok';
  await rx.start(); // same port
  const up = clock.now();
  while (ob.size > 0) {
    const at = clock.nextAt();
    if (at !== undefined) clock.advance(at - clock.now());
    await waitFor(() => d.inFlightCount === 0, { what: 'requests settled' });
  }
  t.ok(clock.now() - up <= 30_000, `delivered within one capped retry interval of coming back (${clock.now() - up} ms)`);
  t.same(rx.delivered.map((x) => x.id).sort(), ['e0', 'e1', 'e2', 'e3', 'e4'], 'every event delivered');
  t.same(duplicates(rx.delivered), [], 'once each');
  t.ok(rx.delivered.every((x) => x.verified));
  t.ok(rx.delivered.some((x) => x.attempt > 1), 'the attempt header counts the retries');
});

t.test('short real outage: the receiver goes away and comes back on the same port', async (t) => {
  const rx = await startReceiver(SECRET);
  t.teardown(() => rx.close());
  const ob = await Outbox.open(tmp(t), { logger: silentLogger });
  const d = new WebhookDeliverer({ outbox: ob, secret: SECRET, timeoutMs: 2000, logger: silentLogger, clock: realClock, baseDelayMs: 100, maxDelayMs: 500 });
  t.teardown(async () => {
    await d.close();
    await ob.close();
  });
  await rx.stop();
  for (let i = 0; i < 3; i++) ob.add(ev(`r${i}`), [rx.url]);
  d.kick();
  await waitFor(() => d.failedAttempts >= 3, { what: 'a few refused attempts' });
  await rx.start();
  await waitFor(() => ob.size === 0, { what: 'delivered after the receiver is back', timeoutMs: 15_000 });
  t.same(rx.delivered.map((x) => x.id).sort(), ['r0', 'r1', 'r2']);
});

t.test('a stalled receiver: the request times out and is retried; a shutdown leaves entries pending', async (t) => {
  const rx = await startReceiver(SECRET);
  t.teardown(() => rx.close());
  const dir = tmp(t);
  const ob = await Outbox.open(dir, { logger: silentLogger });
  const d = new WebhookDeliverer({ outbox: ob, secret: SECRET, timeoutMs: 300, logger: silentLogger, baseDelayMs: 50, maxDelayMs: 200 });
  rx.mode = 'stall';
  ob.add(ev('s1'), [rx.url]);
  d.kick();
  await waitFor(() => d.failedAttempts >= 1, { what: 'timed out' });
  rx.mode = 'ok';
  await waitFor(() => ob.size === 0, { what: 'delivered on retry', timeoutMs: 10_000 });
  t.same(rx.delivered.map((x) => x.id), ['s1']);
  t.ok(rx.seen.length >= 2, 'the stalled attempt was seen too (a receiver dedupes by id)');

  rx.mode = 'stall';
  ob.add(ev('s2'), [rx.url]);
  d.kick();
  await waitFor(() => rx.seen.some((x) => x.id === 's2'), { what: 's2 in flight' });
  await d.close();
  await ob.close();
  const again = await Outbox.open(dir, { logger: silentLogger });
  t.same(again.entries().map((e) => e.event.id), ['s2'], 'unanswered delivery still pending after close');
  await again.close();
});
