/**
 * The EntryStore of cluster mode: records and the URL map in PostgreSQL,
 * shared by every daemon of the cluster. Each write is durable once it
 * resolves (flush has nothing to do); upserts share transactions with other
 * concurrent writes (pg-write-batch.ts). Closing the store closes the pool only
 * when the store opened it.
 */
import type { EntryStore, JobCompletion } from '../entry-index/store.js';
import type { CacheStats, StoredRecord } from '../types.js';
import type { PgDatabase } from './pg-db.js';
import { PgRecords } from './pg-records.js';
import { writeBatcherOf } from './pg-write-batch.js';

export class PgEntryStore implements EntryStore {
  readonly kind = 'postgres' as const;
  readonly embedded = undefined;
  readonly records_: PgRecords;

  constructor(
    readonly db: PgDatabase,
    private readonly ownsDb: boolean,
  ) {
    this.records_ = new PgRecords(db);
  }

  get(md5: string): Promise<StoredRecord | undefined> {
    return this.records_.get(md5);
  }

  md5ForUrl(url: string): Promise<string | undefined> {
    return this.records_.md5ForUrl(url);
  }

  getByUrl(url: string): Promise<StoredRecord | undefined> {
    return this.records_.getByUrl(url);
  }

  getWithUrl(md5: string, url: string): Promise<{ record: StoredRecord | undefined; urlMd5: string | undefined }> {
    return this.records_.getWithUrl(md5, url);
  }

  getMany(md5s: readonly string[]): Promise<Map<string, StoredRecord>> {
    return this.records_.getMany(md5s);
  }

  getManyByUrl(urls: readonly string[]): Promise<Map<string, StoredRecord>> {
    return this.records_.getManyByUrl(urls);
  }

  findByPrefix(prefix: string, limit?: number): Promise<StoredRecord[]> {
    return this.records_.findByPrefix(prefix, limit);
  }

  put(rec: StoredRecord): Promise<void> {
    return this.records_.put(rec);
  }

  upsert(rec: StoredRecord, completion?: JobCompletion): Promise<void> {
    return this.records_.upsert(rec, completion);
  }

  addUrl(md5: string, url: string): Promise<void> {
    return this.records_.addUrl(md5, url);
  }

  remove(md5: string): Promise<StoredRecord | undefined> {
    return this.records_.remove(md5);
  }

  records(): AsyncIterable<StoredRecord> {
    return this.records_.records();
  }

  count(): Promise<number> {
    return this.records_.count();
  }

  stats(): Promise<CacheStats> {
    return this.records_.stats();
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    // Writes already handed to the group commit land (or fail) before the pool goes.
    await writeBatcherOf(this.db).idle().catch(() => {});
    if (this.ownsDb) await this.db.close();
  }
}
