import t from 'tap';
import { withRetries, parseRetryAfter, backoffDelay, abortableSleep, RETRY_DEFAULTS, type RetryOptions } from '../../../src/core/fetch/retry.js';
import { MediaCacheError } from '../../../src/core/errors.js';

const NOW = Date.parse('2026-01-01T00:00:00Z');

t.test('parseRetryAfter: seconds, HTTP dates, garbage', async (t) => {
  t.equal(parseRetryAfter(undefined, NOW), undefined);
  t.equal(parseRetryAfter('', NOW), undefined);
  t.equal(parseRetryAfter('1', NOW), 1000);
  t.equal(parseRetryAfter(' 120 ', NOW), 120_000);
  t.equal(parseRetryAfter('0', NOW), 0);
  t.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', NOW), 30_000);
  t.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', NOW), 0, 'past dates mean now');
  t.equal(parseRetryAfter('Thursday, 01-Jan-26 00:01:00 GMT', NOW), 60_000, 'RFC 850 date');
  for (const bad of ['-1', '1.5', 'soon', '10s', '99999999999999999999']) t.equal(parseRetryAfter(bad, NOW), undefined, bad);
});

t.test('backoffDelay: full jitter under an exponential cap; Retry-After wins, capped', async (t) => {
  const o = { baseDelayMs: 500, maxDelayMs: 30_000, maxRetryAfterMs: 60_000 };
  t.equal(backoffDelay(0, undefined, o, () => 0.999999), 499);
  t.equal(backoffDelay(3, undefined, o, () => 0.5), 2000);
  t.equal(backoffDelay(10, undefined, o, () => 0.5), 15_000, 'capped at maxDelayMs');
  t.equal(backoffDelay(2000, undefined, o, () => 0.5), 15_000, 'no overflow');
  t.equal(backoffDelay(2, undefined, o, () => 0), 0, 'full jitter reaches zero');
  t.equal(backoffDelay(0, 1000, o, () => 0.5), 1000);
  t.equal(backoffDelay(0, 3_600_000, o, () => 0.5), 60_000, 'Retry-After capped');
  t.equal(RETRY_DEFAULTS.baseDelayMs, 500);
  t.equal(RETRY_DEFAULTS.maxDelayMs, 30_000);
  t.equal(RETRY_DEFAULTS.maxRetryAfterMs, 60_000);
});

function opts(extra: Partial<RetryOptions> = {}): RetryOptions & { slept: number[] } {
  const slept: number[] = [];
  return {
    retries: 3,
    baseDelayMs: 500,
    maxDelayMs: 30_000,
    maxRetryAfterMs: 60_000,
    random: () => 0.5,
    sleep: async (ms) => void slept.push(ms),
    slept,
    ...extra,
  };
}

const transient = (extra: { retryAfterMs?: number } = {}): MediaCacheError =>
  new MediaCacheError('E_HTTP', 'HTTP 503', { status: 503, retryable: true, ...extra });

t.test('retries retryable errors with growing delays, then succeeds', async (t) => {
  const o = opts();
  const attempts: number[] = [];
  const retried: Array<[string, number, number]> = [];
  o.onRetry = (e, n, d) => void retried.push([e.code, n, d]);
  const v = await withRetries(async (attempt) => {
    attempts.push(attempt);
    if (attempt < 2) throw transient();
    return 'ok';
  }, o);
  t.equal(v, 'ok');
  t.same(attempts, [0, 1, 2]);
  t.same(o.slept, [250, 500]);
  t.same(retried, [['E_HTTP', 1, 250], ['E_HTTP', 2, 500]]);
});

t.test('honours Retry-After (capped)', async (t) => {
  const o = opts({ maxRetryAfterMs: 5000 });
  let n = 0;
  await withRetries(async () => {
    if (n++ === 0) throw transient({ retryAfterMs: 1000 });
    if (n === 2) throw transient({ retryAfterMs: 999_999 });
    return 1;
  }, o);
  t.same(o.slept, [1000, 5000]);
});

t.test('gives up after `retries` and throws the last error', async (t) => {
  const o = opts({ retries: 2 });
  let n = 0;
  const err = await withRetries(async () => {
    n++;
    throw new MediaCacheError('E_NETWORK', `fail ${n}`, { retryable: true });
  }, o).catch((e: unknown) => e);
  t.equal(n, 3, 'first try + 2 retries');
  t.equal((err as MediaCacheError).message, 'fail 3');
  t.equal(o.slept.length, 2);
});

t.test('non-retryable and foreign errors are thrown at once', async (t) => {
  for (const e of [
    new MediaCacheError('E_HTTP', 'HTTP 404', { status: 404 }),
    new MediaCacheError('E_UNSUPPORTED_TYPE', 'html'),
    new MediaCacheError('E_TOO_LARGE', 'big'),
    new Error('plain'),
  ]) {
    const o = opts();
    let n = 0;
    const got = await withRetries(async () => {
      n++;
      throw e;
    }, o).catch((x: unknown) => x);
    t.equal(got, e);
    t.equal(n, 1, e.message);
    t.same(o.slept, []);
  }
});

t.test('retries: 0 means one attempt', async (t) => {
  let n = 0;
  await t.rejects(withRetries(async () => {
    n++;
    throw transient();
  }, opts({ retries: 0 })));
  t.equal(n, 1);
});

t.test('abort during the real backoff sleep is E_ABORTED, promptly', async (t) => {
  const ac = new AbortController();
  let n = 0;
  const t0 = Date.now();
  const p = withRetries(async () => {
    n++;
    setTimeout(() => ac.abort(), 20);
    throw transient({ retryAfterMs: 10_000 });
  }, { retries: 3, baseDelayMs: 500, maxDelayMs: 30_000, maxRetryAfterMs: 60_000, signal: ac.signal });
  await t.rejects(p, { code: 'E_ABORTED' });
  t.equal(n, 1);
  t.ok(Date.now() - t0 < 5000, 'did not sleep the full 10 s');
});

t.test('an already-aborted signal never calls fn', async (t) => {
  const ac = new AbortController();
  ac.abort();
  let n = 0;
  await t.rejects(withRetries(async () => void n++, opts({ signal: ac.signal })), { code: 'E_ABORTED' });
  t.equal(n, 0);
});

t.test('abortableSleep resolves after the delay and rejects on abort', async (t) => {
  const t0 = Date.now();
  await abortableSleep(30);
  t.ok(Date.now() - t0 >= 25);
  const ac = new AbortController();
  const p = abortableSleep(60_000, ac.signal);
  ac.abort();
  await t.rejects(p, { code: 'E_ABORTED' });
  const reason = new MediaCacheError('E_ABORTED', 'shutting down');
  const ac2 = new AbortController();
  ac2.abort(reason);
  await t.rejects(abortableSleep(10, ac2.signal), reason, 'keeps an E_ABORTED reason');
});
