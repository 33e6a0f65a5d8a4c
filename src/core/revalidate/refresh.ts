/**
 * Asking the origin whether cached content changed (`refresh`, and sweeps
 * with revalidateAfterMs): a GET with If-None-Match / If-Modified-Since.
 *
 * - 304: nothing transferred; the record notes `revalidatedAt`.
 * - 200 with the same bytes: the record notes `revalidatedAt` (and the new
 *   validators); a missing or evicted file is put back from those bytes.
 * - 200 with other bytes, "changed upstream": the new content becomes its own
 *   record and the URL moves to it; the old content stays under its md5 for
 *   its other URLs; the change is noted on both records and emitted as an
 *   `upstream.changed` event.
 */
import { MediaCacheError } from '../errors.js';
import type { Fetched } from '../fetch/download.js';
import { conditionalHeaders } from './plan.js';
import type { EntryStore } from '../entry-index/store.js';
import type { MediaRecord, StoredRecord, UpstreamChange } from '../types.js';

export type RefreshState = 'not-modified' | 'unchanged' | 'changed';

export interface RefreshOutcome {
  url: string;
  state: RefreshState;
  /** The record the URL maps to now. */
  record: MediaRecord;
  /** For 'changed': the move. */
  change?: UpstreamChange;
  /** Body bytes received (0 for a 304). */
  bytes: number;
}

/** What refreshUrl needs of a MediaCache. */
export interface RefreshTarget {
  readonly index: EntryStore;
  fetchUrl(url: URL, o: { headers?: Record<string, string>; signal?: AbortSignal }): Promise<Fetched>;
  commitFetched(f: Fetched, href: string): Promise<{ record: MediaRecord; change?: UpstreamChange }>;
  toRecord(stored: StoredRecord, url?: string): MediaRecord;
  now(): number;
}

function isNotModified(e: unknown): boolean {
  return e instanceof MediaCacheError && e.code === 'E_HTTP' && e.status === 304;
}

/** Revalidate one URL the index knows (E_NOT_FOUND otherwise). */
export async function refreshUrl(t: RefreshTarget, href: string, signal?: AbortSignal): Promise<RefreshOutcome> {
  const rec = await t.index.getByUrl(href);
  if (!rec) throw new MediaCacheError('E_NOT_FOUND', `no cached content for ${href}`, { url: href });
  let f: Fetched;
  try {
    f = await t.fetchUrl(new URL(href), { headers: conditionalHeaders(rec), signal });
  } catch (e) {
    if (!isNotModified(e)) throw e;
    const cur = (await t.index.get(rec.md5)) ?? rec;
    const next = { ...cur, revalidatedAt: new Date(t.now()).toISOString() };
    await t.index.put(next);
    return { url: href, state: 'not-modified', record: t.toRecord(next, href), bytes: 0 };
  }
  const { record, change } = await t.commitFetched(f, href);
  const cur = await t.index.get(record.md5);
  let out = record;
  if (cur) {
    const next = { ...cur, revalidatedAt: new Date(t.now()).toISOString() };
    await t.index.put(next);
    out = t.toRecord(next, href);
  }
  return { url: href, state: change ? 'changed' : 'unchanged', record: out, ...(change ? { change } : {}), bytes: f.size };
}
