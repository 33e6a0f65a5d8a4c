/**
 * Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>` with a shared
 * secret. The timestamp (Unix seconds, sent in X-Mediacache-Timestamp) is
 * inside the signed text, so a receiver that refuses timestamps outside a
 * window refuses replays of old deliveries, and one that remembers delivery
 * ids (X-Mediacache-Delivery) for that window refuses replays inside it.
 *
 * This module imports only node:crypto so a receiver can use it alone
 * (`import { verifySignature } from 'mediacache/webhook'`).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const EVENT_HEADER = 'x-mediacache-event';
export const DELIVERY_HEADER = 'x-mediacache-delivery';
export const TIMESTAMP_HEADER = 'x-mediacache-timestamp';
export const SIGNATURE_HEADER = 'x-mediacache-signature';
export const ATTEMPT_HEADER = 'x-mediacache-attempt';

/** Default replay window of verifySignature: 5 minutes either side. */
export const DEFAULT_TOLERANCE_SEC = 300;

/** `sha256=<hex>` of HMAC-SHA256(secret, `${timestamp}.${body}`). */
export function sign(secret: string | Buffer, timestamp: number | string, body: string | Buffer): string {
  const h = createHmac('sha256', secret);
  h.update(`${timestamp}.`);
  h.update(body);
  return `sha256=${h.digest('hex')}`;
}

export interface VerifyInput {
  secret: string | Buffer;
  /** The raw request body, exactly as received (not re-serialized JSON). */
  body: string | Buffer;
  /** X-Mediacache-Timestamp. */
  timestamp: string | string[] | undefined;
  /** X-Mediacache-Signature. */
  signature: string | string[] | undefined;
  /** Now, ms since the epoch (default Date.now()). */
  now?: number;
  /** Accept timestamps this many seconds from now at most (default 300). */
  toleranceSec?: number;
}

export type VerifyResult = { ok: true; timestamp: number } | { ok: false; reason: 'missing' | 'malformed' | 'stale' | 'mismatch' };

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/**
 * Check a delivery's signature and freshness in constant time. `reason`:
 * missing (a header absent), malformed (not `sha256=<64 hex>` or not a
 * number), stale (timestamp outside the window: a replay or a wrong clock),
 * mismatch (wrong secret or changed body).
 */
export function verifySignature(i: VerifyInput): VerifyResult {
  const ts = one(i.timestamp)?.trim();
  const sig = one(i.signature)?.trim();
  if (!ts || !sig) return { ok: false, reason: 'missing' };
  if (!/^\d{1,12}$/.test(ts) || !/^sha256=[0-9a-f]{64}$/i.test(sig)) return { ok: false, reason: 'malformed' };
  const t = Number(ts);
  const now = (i.now ?? Date.now()) / 1000;
  if (Math.abs(now - t) > (i.toleranceSec ?? DEFAULT_TOLERANCE_SEC)) return { ok: false, reason: 'stale' };
  const want = Buffer.from(sign(i.secret, ts, i.body).slice(7), 'hex');
  const got = Buffer.from(sig.slice(7), 'hex');
  if (!timingSafeEqual(want, got)) return { ok: false, reason: 'mismatch' };
  return { ok: true, timestamp: t };
}
