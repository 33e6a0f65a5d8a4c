/**
 * Records and the URL map in PostgreSQL: the async counterpart of IndexDb
 * (same meaning of put/addUrl/remove; every call is durable once it resolves,
 * so there is no flush).
 *
 * Invariants (as IndexDb's): a URL belongs to one record (media_url.url_key is
 * the primary key); put() makes the record's URLs point to it, taking them
 * from any other record, and drops URLs the record no longer lists; a
 * record's `urls` come back in the order they were first associated.
 * Totals for stats() are maintained by triggers in the same transaction as
 * the change, so they are right whatever process writes.
 */
import { MediaCacheError } from '../errors.js';
import { assertMd5, assertRecord, normalizePrefix } from '../entry-index/record-codec.js';
import { emptyStats, MEDIA_TYPES, TYPE_DIRS, type CacheStats, type MediaType, type StoredRecord } from '../types.js';
import { readCounter } from './pg-counters.js';
import type { PgDatabase, PgTx } from './pg-db.js';
import { writeBatcherOf } from './pg-write-batch.js';
import { fromJobRow } from './pg-job-row.js';
import type { JobCompletion } from '../entry-index/store.js';

interface MediaRow {
  md5: string;
  sha256: string;
  size: number;
  mime: string;
  media_type: MediaType;
  width: number | null;
  height: number | null;
  extension: string;
  storage_path: string;
  fetched_at: Date;
  verified_at: Date;
  etag: string | null;
  last_modified: string | null;
  extra: Record<string, unknown> | null;
  urls: string[] | null;
}

/** Record fields stored in their own columns (or media_url); every other field goes to `extra`. */
const COLUMN_FIELDS = new Set(['md5', 'sha256', 'fileSize', 'mimeType', 'mediaType', 'width', 'height', 'extension', 'urls', 'fetchedAt', 'verifiedAt', 'etag', 'lastModified']);

function extraOf(rec: StoredRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rec)) if (!COLUMN_FIELDS.has(k) && v !== undefined) out[k] = v;
  return out;
}

/** A media row with its URLs in association order. */
const SELECT_RECORD = `
  SELECT m.*, (SELECT array_agg(u.url ORDER BY u.seq) FROM mediacache.media_url u WHERE u.md5 = m.md5) AS urls
    FROM mediacache.media m`;

const UPSERT_MEDIA = `
  INSERT INTO mediacache.media (md5, sha256, size, mime, media_type, width, height, extension, storage_path,
                                fetched_at, verified_at, etag, last_modified, extra)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
  ON CONFLICT (md5) DO UPDATE SET
    sha256 = excluded.sha256, size = excluded.size, mime = excluded.mime, media_type = excluded.media_type,
    width = excluded.width, height = excluded.height, extension = excluded.extension,
    storage_path = excluded.storage_path, fetched_at = excluded.fetched_at, verified_at = excluded.verified_at,
    etag = excluded.etag, last_modified = excluded.last_modified, extra = excluded.extra`;

/**
 * Associate URLs (in array order) with a record. A URL new to the map gets
 * first_seen = last_seen = now(); one that belonged to another record moves
 * (last_seen = now()); one already here is left alone, so re-putting a record
 * (a sweep refreshing verified_at) does not rewrite its URL rows.
 */
const CLAIM_URLS = `
  INSERT INTO mediacache.media_url (url, md5)
    SELECT u, $1 FROM unnest($2::text[]) WITH ORDINALITY AS x(u, i) ORDER BY i
  ON CONFLICT (url_key) DO UPDATE SET md5 = excluded.md5, last_seen = now()
    WHERE mediacache.media_url.md5 IS DISTINCT FROM excluded.md5`;

/** Relative to the content root, always with "/" (the same on every machine of a cluster). */
export function storagePathOf(rec: Pick<StoredRecord, 'md5' | 'mediaType' | 'extension'>): string {
  return `${TYPE_DIRS[rec.mediaType]}/${rec.md5}${rec.extension}`;
}

function fromRow(r: MediaRow): StoredRecord {
  const rec: StoredRecord = {
    ...(r.extra as Partial<StoredRecord> | null),
    md5: r.md5,
    sha256: r.sha256,
    fileSize: r.size,
    mimeType: r.mime,
    mediaType: r.media_type,
    extension: r.extension,
    urls: r.urls ?? [],
    fetchedAt: r.fetched_at.toISOString(),
    verifiedAt: r.verified_at.toISOString(),
  };
  if (r.width !== null) rec.width = r.width;
  if (r.height !== null) rec.height = r.height;
  if (r.etag !== null) rec.etag = r.etag;
  if (r.last_modified !== null) rec.lastModified = r.last_modified;
  return rec;
}

function mediaValues(rec: StoredRecord): unknown[] {
  return [
    rec.md5,
    rec.sha256,
    rec.fileSize,
    rec.mimeType,
    rec.mediaType,
    rec.width ?? null,
    rec.height ?? null,
    rec.extension,
    storagePathOf(rec),
    checkTime(rec.fetchedAt, 'fetchedAt'),
    checkTime(rec.verifiedAt, 'verifiedAt'),
    rec.etag ?? null,
    rec.lastModified ?? null,
    JSON.stringify(extraOf(rec)),
  ];
}

function checkTime(iso: string, what: string): string {
  if (Number.isNaN(Date.parse(iso))) throw new MediaCacheError('E_BAD_REQUEST', `invalid index record: ${what} is not a date: ${iso}`);
  return iso;
}

function checkUrl(url: unknown): asserts url is string {
  if (typeof url !== 'string' || url === '') throw new MediaCacheError('E_BAD_REQUEST', 'url must be a non-empty string');
}

/** Keys per round trip of getMany/getManyByUrl. */
const MANY_CHUNK = 1000;

export class PgRecords {
  constructor(private readonly db: PgDatabase) {}

  async get(md5: string): Promise<StoredRecord | undefined> {
    assertMd5(md5);
    const rows = await this.db.query<MediaRow>(`${SELECT_RECORD} WHERE m.md5 = $1`, [md5], 'mc_get');
    return rows.length ? fromRow(rows[0]) : undefined;
  }

  async md5ForUrl(url: string): Promise<string | undefined> {
    checkUrl(url);
    const rows = await this.db.query<{ md5: string }>(
      'SELECT md5 FROM mediacache.media_url WHERE url_key = mediacache.url_key($1)',
      [url],
      'mc_md5_for_url',
    );
    return rows[0]?.md5;
  }

  /**
   * The record for md5 and the md5 `url` maps to now, in one round trip
   * (what a download's commit checks before it writes).
   */
  async getWithUrl(md5: string, url: string): Promise<{ record: StoredRecord | undefined; urlMd5: string | undefined }> {
    assertMd5(md5);
    checkUrl(url);
    const rows = await this.db.query<MediaRow & { url_md5: string | null }>(
      `SELECT x.url_md5, m.*, (SELECT array_agg(u.url ORDER BY u.seq) FROM mediacache.media_url u WHERE u.md5 = m.md5) AS urls
         FROM (SELECT (SELECT md5 FROM mediacache.media_url WHERE url_key = mediacache.url_key($2)) AS url_md5) x
         LEFT JOIN mediacache.media m ON m.md5 = $1`,
      [md5, url],
      'mc_get_with_url',
    );
    const r = rows[0];
    return { record: r && r.md5 !== null ? fromRow(r) : undefined, urlMd5: r?.url_md5 ?? undefined };
  }

  /** The record a URL maps to, in one round trip. */
  async getByUrl(url: string): Promise<StoredRecord | undefined> {
    checkUrl(url);
    const rows = await this.db.query<MediaRow>(
      `${SELECT_RECORD} JOIN mediacache.media_url x ON x.md5 = m.md5 WHERE x.url_key = mediacache.url_key($1)`,
      [url],
      'mc_get_by_url',
    );
    return rows.length ? fromRow(rows[0]) : undefined;
  }

  /** Records of many md5s in one round trip per 1,000 (unknown ones left out), by md5. */
  async getMany(md5s: readonly string[]): Promise<Map<string, StoredRecord>> {
    const out = new Map<string, StoredRecord>();
    const keys = [...new Set(md5s)];
    for (const m of keys) assertMd5(m);
    for (let i = 0; i < keys.length; i += MANY_CHUNK) {
      const rows = await this.db.query<MediaRow>(`${SELECT_RECORD} WHERE m.md5 = ANY($1::text[])`, [keys.slice(i, i + MANY_CHUNK)], 'mc_get_many');
      for (const r of rows) out.set(r.md5, fromRow(r));
    }
    return out;
  }

  /** The records many URLs map to, in one round trip per 1,000 (unmapped URLs left out), by URL as given. */
  async getManyByUrl(urls: readonly string[]): Promise<Map<string, StoredRecord>> {
    const out = new Map<string, StoredRecord>();
    const keys = [...new Set(urls)];
    for (const u of keys) checkUrl(u);
    for (let i = 0; i < keys.length; i += MANY_CHUNK) {
      const rows = await this.db.query<MediaRow & { asked: string }>(
        `SELECT q.asked, m.*, (SELECT array_agg(u.url ORDER BY u.seq) FROM mediacache.media_url u WHERE u.md5 = m.md5) AS urls
           FROM unnest($1::text[]) AS q(asked)
           JOIN mediacache.media_url x ON x.url_key = mediacache.url_key(q.asked)
           JOIN mediacache.media m ON m.md5 = x.md5`,
        [keys.slice(i, i + MANY_CHUNK)],
        'mc_get_many_by_url',
      );
      for (const r of rows) out.set(r.asked, fromRow(r));
    }
    return out;
  }

  /** Records whose md5 starts with `prefix`, in md5 order (a btree range: md5 is "C"-collated). */
  async findByPrefix(prefix: string, limit = Infinity): Promise<StoredRecord[]> {
    const p = normalizePrefix(prefix);
    if (limit <= 0) return [];
    const rows = await this.db.query<MediaRow>(
      `${SELECT_RECORD} WHERE m.md5 >= $1 AND m.md5 < $2 ORDER BY m.md5 LIMIT $3`,
      [p, `${p}g`, Number.isFinite(limit) ? Math.floor(limit) : null],
    );
    return rows.map(fromRow);
  }

  /** Insert or replace the record for rec.md5 with its URL list, in one transaction. */
  async put(rec: StoredRecord): Promise<void> {
    assertRecord(rec);
    const values = mediaValues(rec);
    const urls = [...new Set(rec.urls)];
    await this.db.tx((c) => putIn(c, rec.md5, values, urls));
  }

  /**
   * Insert or update the record for rec.md5, adding rec.urls to the URLs it
   * already has and never dropping one. This is what a download stores: two
   * daemons that fetch the same content from different URLs at once both keep
   * their URL, where two read-modify-write put() calls would lose one.
   * Concurrent upserts (and job completions) share one transaction
   * (pg-write-batch.ts); this resolves once the one holding it committed.
   * With `completion`, that job is ended in the same statement (PgQueue.complete's meaning).
   */
  async upsert(rec: StoredRecord, completion?: JobCompletion): Promise<void> {
    assertRecord(rec);
    const end = completion && { nodeId: completion.nodeId, jobId: completion.jobId };
    const row = await writeBatcherOf(this.db).upsert(rec.md5, mediaValues(rec), [...new Set(rec.urls)], end);
    if (completion) {
      completion.written = true;
      completion.job = row && fromJobRow(row);
    }
  }

  /**
   * Many records in one transaction (migration from an embedded index). A URL
   * listed by two of them ends with the later one in the array.
   */
  async putMany(recs: StoredRecord[]): Promise<void> {
    const prepared = recs.map((rec) => {
      assertRecord(rec);
      return { md5: rec.md5, values: mediaValues(rec), urls: [...new Set(rec.urls)] };
    });
    await this.db.tx(async (c) => {
      for (const p of prepared) await putIn(c, p.md5, p.values, p.urls);
    });
  }

  /**
   * One more URL for existing content (E_NOT_FOUND when md5 is unknown); moves
   * it from another record if needed and marks it seen now.
   */
  async addUrl(md5: string, url: string): Promise<void> {
    assertMd5(md5);
    checkUrl(url);
    const rows = await this.db.query(
      `INSERT INTO mediacache.media_url (url, md5)
         SELECT $2, md5 FROM mediacache.media WHERE md5 = $1
       ON CONFLICT (url_key) DO UPDATE SET md5 = excluded.md5, last_seen = now()
       RETURNING md5`,
      [md5, url],
    );
    if (rows.length === 0) throw new MediaCacheError('E_NOT_FOUND', `no record for md5 ${md5}`);
  }

  /** Delete the record and its URLs; the removed record, or undefined when there was none. */
  async remove(md5: string): Promise<StoredRecord | undefined> {
    assertMd5(md5);
    return this.db.tx(async (c) => {
      const rows = (await c.query<MediaRow>(`${SELECT_RECORD} WHERE m.md5 = $1 FOR UPDATE OF m`, [md5])).rows;
      if (rows.length === 0) return undefined;
      await c.query('DELETE FROM mediacache.media WHERE md5 = $1', [md5]);
      return fromRow(rows[0]);
    });
  }

  /**
   * Every record in md5 order, fetched `batchSize` at a time by keyset (no
   * long transaction, no cursor to lose on a reconnect: a sweep that sees
   * E_UNAVAILABLE can resume with `after` = the last md5 it handled).
   * Records changed during the walk are seen as they are when their page is read.
   */
  async *records(opts: { batchSize?: number; after?: string } = {}): AsyncGenerator<StoredRecord> {
    const batch = opts.batchSize ?? 500;
    let after = opts.after ?? '';
    for (;;) {
      const rows = await this.db.query<MediaRow>(`${SELECT_RECORD} WHERE m.md5 > $1 ORDER BY m.md5 LIMIT $2`, [after, batch]);
      for (const r of rows) yield fromRow(r);
      if (rows.length < batch) return;
      after = rows[rows.length - 1].md5;
    }
  }

  /** Number of records (from the maintained totals). */
  async count(): Promise<number> {
    return (await this.stats()).totalFiles;
  }

  /** Totals by media type; reads the trigger-maintained counters, not the media table. */
  async stats(): Promise<CacheStats> {
    const sums = await readCounter(this.db, 'media');
    const out = emptyStats();
    for (const t of MEDIA_TYPES) {
      const v = sums.get(t);
      if (!v) continue;
      out.byType[t] = { count: v.n, size: v.bytes };
      out.totalFiles += v.n;
      out.totalSize += v.bytes;
    }
    return out;
  }
}

async function putIn(c: PgTx, md5: string, values: unknown[], urls: string[]): Promise<void> {
  await c.query(UPSERT_MEDIA, values);
  await c.query('DELETE FROM mediacache.media_url WHERE md5 = $1 AND NOT (url = ANY($2::text[]))', [md5, urls]);
  if (urls.length > 0) await c.query(CLAIM_URLS, [md5, urls]);
}
