/**
 * EntryStore: the records and URL map as MediaCache, the sweep steps and the
 * daemon's handlers use them, whatever holds them: the embedded IndexDb (one
 * process, in memory, journaled) or PostgreSQL (several daemons sharing one
 * database). Every method is async so either fits.
 *
 * Invariants every implementation keeps (IndexDb's):
 * - A URL belongs to one record; put/upsert move a record's URLs to it.
 * - put replaces the record (URLs it no longer lists are dropped); upsert
 *   only adds URLs, never drops one: what a download commits, so two writers
 *   (two daemons) that store one content from two URLs at once both keep theirs.
 * - A resolved write is seen by every later read of the same store (and, for
 *   PostgreSQL, of every daemon); flush() makes writes durable (a no-op where
 *   each write already is).
 */
import type { CacheStats, StoredRecord } from '../types.js';
import type { PgJob } from '../postgres/pg-job-row.js';
import type { IndexDb } from './index-db.js';

/**
 * A queue job to end together with a download's record (cluster mode: the
 * job's completion goes in the same transaction as the record, one commit
 * instead of two). A store that did it sets `written`, and `job` to the ended
 * job (undefined when this daemon no longer holds it); otherwise the caller
 * completes the job itself.
 */
export interface JobCompletion {
  nodeId: string;
  jobId: string;
  written?: boolean;
  job?: PgJob;
}

export interface EntryStore {
  /** 'embedded' (IndexDb) or 'postgres'. */
  readonly kind: 'embedded' | 'postgres';
  /** The IndexDb behind an embedded store (quota and index diagnostics need its synchronous view); undefined otherwise. */
  readonly embedded: IndexDb | undefined;
  get(md5: string): Promise<StoredRecord | undefined>;
  md5ForUrl(url: string): Promise<string | undefined>;
  /** The record a URL maps to. */
  getByUrl(url: string): Promise<StoredRecord | undefined>;
  /** get(md5) and md5ForUrl(url) together (one round trip where that matters): what a download's commit checks. */
  getWithUrl(md5: string, url: string): Promise<{ record: StoredRecord | undefined; urlMd5: string | undefined }>;
  /** get() of many md5s (one round trip per chunk where that matters), by md5; unknown ones are left out. */
  getMany(md5s: readonly string[]): Promise<Map<string, StoredRecord>>;
  /** getByUrl() of many URLs (one round trip per chunk where that matters), by URL as given; unmapped ones are left out. */
  getManyByUrl(urls: readonly string[]): Promise<Map<string, StoredRecord>>;
  /** Records whose md5 starts with `prefix` (1..32 hex digits), in md5 order; E_BAD_REQUEST otherwise. */
  findByPrefix(prefix: string, limit?: number): Promise<StoredRecord[]>;
  /** Insert or replace the record for rec.md5 (its URL list exactly). */
  put(rec: StoredRecord): Promise<void>;
  /**
   * Insert or update the record, adding rec.urls to those it has (never
   * dropping one); with `completion`, end that queue job in the same write
   * where the store can (see JobCompletion).
   */
  upsert(rec: StoredRecord, completion?: JobCompletion): Promise<void>;
  /** One more URL for existing content (E_NOT_FOUND when md5 is unknown). */
  addUrl(md5: string, url: string): Promise<void>;
  /** The removed record, or undefined when there was none. */
  remove(md5: string): Promise<StoredRecord | undefined>;
  /** Every record (changes during the walk are allowed; a record changed meanwhile may be seen either way). */
  records(): AsyncIterable<StoredRecord>;
  /** Number of records. */
  count(): Promise<number>;
  /** Totals by media type. */
  stats(): Promise<CacheStats>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** The embedded IndexDb behind the async seam (every call is synchronous underneath). */
export class EmbeddedEntryStore implements EntryStore {
  readonly kind = 'embedded' as const;
  constructor(readonly embedded: IndexDb) {}

  async get(md5: string): Promise<StoredRecord | undefined> {
    return this.embedded.get(md5);
  }

  async md5ForUrl(url: string): Promise<string | undefined> {
    return this.embedded.md5ForUrl(url);
  }

  async getByUrl(url: string): Promise<StoredRecord | undefined> {
    return this.byUrl(url);
  }

  private byUrl(url: string): StoredRecord | undefined {
    const md5 = this.embedded.md5ForUrl(url);
    return md5 === undefined ? undefined : this.embedded.get(md5);
  }

  async getWithUrl(md5: string, url: string): Promise<{ record: StoredRecord | undefined; urlMd5: string | undefined }> {
    return { record: this.embedded.get(md5), urlMd5: this.embedded.md5ForUrl(url) };
  }

  async getMany(md5s: readonly string[]): Promise<Map<string, StoredRecord>> {
    const out = new Map<string, StoredRecord>();
    for (const m of md5s) {
      const r = this.embedded.get(m);
      if (r) out.set(m, r);
    }
    return out;
  }

  async getManyByUrl(urls: readonly string[]): Promise<Map<string, StoredRecord>> {
    const out = new Map<string, StoredRecord>();
    for (const u of urls) {
      const r = this.byUrl(u);
      if (r) out.set(u, r);
    }
    return out;
  }

  async findByPrefix(prefix: string, limit?: number): Promise<StoredRecord[]> {
    return this.embedded.findByPrefix(prefix, limit);
  }

  async put(rec: StoredRecord): Promise<void> {
    this.embedded.put(rec);
  }

  async upsert(rec: StoredRecord): Promise<void> {
    // Read and write in one synchronous step: nothing can interleave.
    const cur = this.embedded.get(rec.md5);
    if (!cur) {
      this.embedded.put(rec);
      return;
    }
    const urls = [...cur.urls, ...rec.urls.filter((u) => !cur.urls.includes(u))];
    this.embedded.put({ ...rec, urls });
  }

  async addUrl(md5: string, url: string): Promise<void> {
    this.embedded.addUrl(md5, url);
  }

  async remove(md5: string): Promise<StoredRecord | undefined> {
    return this.embedded.remove(md5);
  }

  async *records(): AsyncGenerator<StoredRecord> {
    yield* this.embedded.records();
  }

  async count(): Promise<number> {
    return this.embedded.size;
  }

  async stats(): Promise<CacheStats> {
    return this.embedded.stats();
  }

  flush(): Promise<void> {
    return this.embedded.flush();
  }

  close(): Promise<void> {
    return this.embedded.close();
  }
}
