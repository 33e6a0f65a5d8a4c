/**
 * Webhook delivery: POST each outbox entry to its URL, signed (sign.ts),
 * until a 2xx answers; then the entry is acknowledged in the outbox.
 *
 * Invariants:
 * - At least once: an entry leaves the outbox only after a 2xx for it. A
 *   timeout, a network error, any other status (3xx is not followed) or a
 *   shutdown mid-request leaves it pending; it is sent again, same body and
 *   delivery id, fresh timestamp and signature.
 * - Backoff is per receiver URL: after a failure only one request (a probe)
 *   goes to that URL at a time, at exponentially growing intervals with
 *   jitter (base..cap, Retry-After honoured up to the cap); the first 2xx
 *   reopens it to `perTarget` parallel requests. A receiver that was down is
 *   thus tried at least every `maxDelayMs` and gets the backlog soon after it
 *   is back. The probe is the entry tried least recently, so one delivery a
 *   receiver always refuses cannot hold up the others.
 * - Every request is bounded by `timeoutMs` (connect, headers, body).
 * Timing (waits, backoff) runs on an injectable Clock; request timeouts and
 * the signature timestamp use real time.
 */
import type { Dispatcher } from 'undici';
import { Agent } from '../../core/fetch/undici-parts.js';
import type { Logger } from '../../core/util/logger.js';
import { parseRetryAfter } from '../../core/fetch/retry.js';
import { realClock, type Clock } from './clock.js';
import type { Outbox, OutboxEntry } from './outbox.js';
import { ATTEMPT_HEADER, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign, TIMESTAMP_HEADER } from './sign.js';

export interface WebhookOptions {
  outbox: Outbox;
  /** HMAC key; without one deliveries carry no signature header. */
  secret?: string;
  timeoutMs: number;
  logger: Logger;
  userAgent?: string;
  clock?: Clock;
  random?: () => number;
  /** First retry delay (default 1000 ms) and cap (default 60000 ms). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Parallel requests to one healthy URL (default 4). */
  perTarget?: number;
  dispatcher?: Dispatcher;
}

interface TargetState {
  /** Consecutive failures; > 0 means probing. */
  failures: number;
  nextAt: number;
  inFlight: number;
  failingSince?: number;
  /** When the last failure was counted: requests started before it fail with it, not on top of it. */
  lastFailAt: number;
}

/** Origin and path only: query strings and user info may hold tokens. */
export function redactUrl(u: string): string {
  try {
    const x = new URL(u);
    return `${x.origin}${x.pathname}`;
  } catch {
    return '(unparseable URL)';
  }
}

export class WebhookDeliverer {
  private readonly o: Required<Omit<WebhookOptions, 'secret' | 'dispatcher'>> & Pick<WebhookOptions, 'secret'>;
  private readonly dispatcher: Dispatcher;
  private readonly ownDispatcher: boolean;
  private readonly targets = new Map<string, TargetState>();
  private readonly lastTried = new Map<string, number>();
  private readonly attemptsOf = new Map<string, number>();
  private readonly inFlight = new Map<string, { ctrl: AbortController; done: Promise<void> }>();
  private cancelTimer: (() => void) | undefined;
  private timerAt = Infinity;
  private kickQueued = false;
  private closed = false;
  /** Counters (status, tests). */
  delivered = 0;
  failedAttempts = 0;
  /** Called after each successful delivery. */
  onDelivered?: (e: OutboxEntry, attempts: number) => void;

  constructor(o: WebhookOptions) {
    this.o = { userAgent: 'mediacache', clock: realClock, random: Math.random, baseDelayMs: 1000, maxDelayMs: 60_000, perTarget: 4, ...o };
    this.ownDispatcher = !o.dispatcher;
    this.dispatcher = o.dispatcher ?? new Agent({ connect: { timeout: o.timeoutMs }, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs });
  }

  get pending(): number {
    return this.o.outbox.size;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Look at the outbox again soon (new entries, or start-up). Coalesced. */
  kick(): void {
    if (this.kickQueued || this.closed) return;
    this.kickQueued = true;
    setImmediate(() => {
      this.kickQueued = false;
      this.tick();
    });
  }

  private target(url: string): TargetState {
    let st = this.targets.get(url);
    if (!st) this.targets.set(url, (st = { failures: 0, nextAt: 0, inFlight: 0, lastFailAt: -Infinity }));
    return st;
  }

  private tick(): void {
    if (this.closed) return;
    const now = this.o.clock.now();
    const byTarget = new Map<string, OutboxEntry[]>();
    let wake = Infinity;
    for (const e of this.o.outbox.entries()) {
      if (this.inFlight.has(e.key)) continue;
      const st = this.target(e.target);
      if (st.nextAt > now) {
        wake = Math.min(wake, st.nextAt);
        continue;
      }
      let list = byTarget.get(e.target);
      if (!list) byTarget.set(e.target, (list = []));
      list.push(e);
    }
    for (const [url, list] of byTarget) {
      const st = this.target(url);
      const room = (st.failures > 0 ? 1 : this.o.perTarget) - st.inFlight;
      if (room <= 0) continue;
      // Probing: least recently tried first (never tried counts as oldest); else oldest first.
      if (st.failures > 0) list.sort((a, b) => (this.lastTried.get(a.key) ?? -1) - (this.lastTried.get(b.key) ?? -1) || a.addedAt - b.addedAt);
      for (const e of list.slice(0, room)) this.send(e, st);
    }
    this.arm(wake);
  }

  /** One timer, at the earliest retry over all URLs (each tick computes it afresh). */
  private arm(at: number): void {
    if (at === this.timerAt) return;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.timerAt = at;
    if (at === Infinity) return;
    this.cancelTimer = this.o.clock.setTimer(() => {
      this.cancelTimer = undefined;
      this.timerAt = Infinity;
      this.tick();
    }, at - this.o.clock.now());
  }

  private send(e: OutboxEntry, st: TargetState): void {
    const ctrl = new AbortController();
    const attempt = (this.attemptsOf.get(e.key) ?? 0) + 1;
    const startedAt = this.o.clock.now();
    this.attemptsOf.set(e.key, attempt);
    this.lastTried.set(e.key, startedAt);
    st.inFlight++;
    const done = this.post(e, attempt, ctrl.signal).then((r) => {
      st.inFlight--;
      this.inFlight.delete(e.key);
      this.settle(e, st, attempt, startedAt, r);
    });
    this.inFlight.set(e.key, { ctrl, done });
  }

  private async post(e: OutboxEntry, attempt: number, signal: AbortSignal): Promise<{ ok: boolean; status?: number; error?: string; retryAfterMs?: number }> {
    const body = JSON.stringify(e.event);
    const ts = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': this.o.userAgent,
      [EVENT_HEADER]: e.event.type,
      [DELIVERY_HEADER]: e.event.id,
      [TIMESTAMP_HEADER]: String(ts),
      [ATTEMPT_HEADER]: String(attempt),
    };
    if (this.o.secret) headers[SIGNATURE_HEADER] = sign(this.o.secret, ts, body);
    const inner = new AbortController();
    const timer = setTimeout(() => inner.abort(new Error(`no answer within ${this.o.timeoutMs} ms`)), this.o.timeoutMs);
    const onOuter = (): void => inner.abort(new Error('shutting down'));
    signal.addEventListener('abort', onOuter, { once: true });
    try {
      const u = new URL(e.target);
      const res = await this.dispatcher.request({
        origin: u.origin,
        path: `${u.pathname}${u.search}`,
        method: 'POST',
        headers,
        body,
        signal: inner.signal,
        headersTimeout: this.o.timeoutMs,
        bodyTimeout: this.o.timeoutMs,
      });
      // The answer's body is not needed, only read (bounded) so the connection can be reused.
      await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      const ok = res.statusCode >= 200 && res.statusCode < 300;
      const ra = res.headers['retry-after'];
      const retryAfterMs = parseRetryAfter(Array.isArray(ra) ? ra[0] : ra, Date.now());
      return { ok, status: res.statusCode, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause;
      const msg = inner.signal.aborted ? String((inner.signal.reason as Error)?.message ?? 'aborted') : `${(err as Error).message}${cause ? ` (${String((cause as Error).message ?? cause)})` : ''}`;
      return { ok: false, error: msg };
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onOuter);
    }
  }

  private settle(e: OutboxEntry, st: TargetState, attempt: number, startedAt: number, r: { ok: boolean; status?: number; error?: string; retryAfterMs?: number }): void {
    const now = this.o.clock.now();
    const log = this.o.logger;
    const where = redactUrl(e.target);
    if (r.ok) {
      this.o.outbox.ack(e.key);
      this.attemptsOf.delete(e.key);
      this.lastTried.delete(e.key);
      this.delivered++;
      if (st.failures > 0) log.info('webhook receiver answers again', { url: where, downForMs: now - (st.failingSince ?? now), pending: this.o.outbox.size });
      st.failures = 0;
      st.nextAt = 0;
      st.lastFailAt = -Infinity;
      delete st.failingSince;
      log.debug('webhook delivered', { url: where, event: e.event.type, id: e.event.id, attempt, status: r.status });
      try {
        this.onDelivered?.(e, attempt);
      } catch {
        /* observers must not break delivery */
      }
    } else if (!this.closed) {
      this.failedAttempts++;
      // A parallel round that fails together counts as one failure.
      if (startedAt > st.lastFailAt) {
        st.failures++;
        st.lastFailAt = now;
      }
      st.failingSince ??= now;
      const ceiling = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** Math.min(st.failures - 1, 30));
      // Equal jitter: at least half the ceiling, so a retry never comes early.
      let delay = Math.floor(ceiling / 2 + (this.o.random() * ceiling) / 2);
      if (r.retryAfterMs !== undefined) delay = Math.max(delay, Math.min(r.retryAfterMs, this.o.maxDelayMs));
      st.nextAt = Math.max(st.nextAt, now + delay);
      const meta = { url: where, event: e.event.type, id: e.event.id, attempt, status: r.status, error: r.error, retryInMs: st.nextAt - now, pending: this.o.outbox.size };
      if (st.failures === 1 && st.failingSince === now) log.warn('webhook delivery failed; will retry', meta);
      else log.debug('webhook delivery failed again', meta);
    }
    if (!this.closed) this.tick();
  }

  /** Stop: abort requests in flight (their entries stay pending), cancel timers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancelTimer?.();
    const all = [...this.inFlight.values()];
    for (const f of all) f.ctrl.abort();
    await Promise.all(all.map((f) => f.done));
    if (this.ownDispatcher) await this.dispatcher.destroy().catch(() => undefined);
  }
}
