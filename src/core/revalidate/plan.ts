/**
 * Revalidation decisions, pure: the conditional request headers a record
 * allows, which records a sweep should ask about, and how a change is noted
 * on a record. revalidate.ts does the requests.
 */
import type { StoredRecord, UpstreamChange } from '../types.js';

/** Changes kept per record (newest last): enough to say what happened, bounded. */
export const MAX_UPSTREAM_CHANGES = 8;

/**
 * If-None-Match from the ETag (weak ones too: If-None-Match uses weak
 * comparison), If-Modified-Since from Last-Modified; none when the record
 * has neither (then only a full GET can tell).
 */
export function conditionalHeaders(r: Pick<StoredRecord, 'etag' | 'lastModified'>): Record<string, string> {
  const h: Record<string, string> = {};
  if (r.etag) h['if-none-match'] = r.etag;
  if (r.lastModified) h['if-modified-since'] = r.lastModified;
  return h;
}

/** When the origin last confirmed (or delivered) the content, ms; -Infinity when unknown. */
export function lastConfirmed(r: Pick<StoredRecord, 'revalidatedAt' | 'fetchedAt'>): number {
  const a = r.revalidatedAt === undefined ? Number.NaN : Date.parse(r.revalidatedAt);
  const b = Date.parse(r.fetchedAt);
  const best = Math.max(Number.isNaN(a) ? -Infinity : a, Number.isNaN(b) ? -Infinity : b);
  return best;
}

/** Whether a sweep with `revalidateAfterMs` asks the origin about this record now. */
export function dueForRevalidation(r: Pick<StoredRecord, 'revalidatedAt' | 'fetchedAt' | 'urls' | 'evictedAt'>, nowMs: number, revalidateAfterMs: number): boolean {
  if (!(revalidateAfterMs > 0) || r.urls.length === 0 || r.evictedAt !== undefined) return false;
  return nowMs - lastConfirmed(r) >= revalidateAfterMs;
}

/** `r` with `change` appended to its upstreamChanges (oldest dropped past MAX_UPSTREAM_CHANGES). */
export function withUpstreamChange<R extends StoredRecord>(r: R, change: UpstreamChange): R {
  const list = [...(r.upstreamChanges ?? []), change];
  return { ...r, upstreamChanges: list.slice(Math.max(0, list.length - MAX_UPSTREAM_CHANGES)) };
}
