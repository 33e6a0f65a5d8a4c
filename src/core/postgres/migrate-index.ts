/**
 * Copy an embedded index into PostgreSQL (to go to cluster mode) and back,
 * without touching the content files: records keep their md5, sha256 and
 * URLs, so nothing is downloaded again. Each copy is checked afterwards:
 * record and URL counts equal, and every record's md5 and sha256 equal on
 * both sides.
 *
 * Neither side may be written meanwhile: the caller holds the cache's lock
 * and no daemon runs on the database (a target that already holds records
 * is refused, so a copy never merges two caches by accident).
 */
import fs from 'node:fs';
import { MediaCacheError } from '../errors.js';
import { IndexDb } from '../entry-index/index-db.js';
import type { StoredRecord } from '../types.js';
import type { Logger } from '../util/logger.js';
import { silentLogger } from '../util/logger.js';
import { PgDatabase } from './pg-db.js';
import { PgRecords } from './pg-records.js';

/** Records per transaction when writing to PostgreSQL. */
const BATCH = 500;

export interface IndexCopyResult {
  records: number;
  urls: number;
  ms: number;
}

interface Digest {
  sha256: string;
  urls: number;
}

function digestOf(recs: Iterable<StoredRecord>): Map<string, Digest> {
  const out = new Map<string, Digest>();
  for (const r of recs) out.set(r.md5, { sha256: r.sha256, urls: r.urls.length });
  return out;
}

/** Throws E_INTEGRITY naming the first differences; returns the totals. */
async function compare(source: Map<string, Digest>, target: AsyncIterable<StoredRecord>, what: string): Promise<{ records: number; urls: number }> {
  const problems: string[] = [];
  let records = 0;
  let urls = 0;
  let targetUrls = 0;
  for (const d of source.values()) urls += d.urls;
  const seen = new Set<string>();
  for await (const r of target) {
    records++;
    targetUrls += r.urls.length;
    seen.add(r.md5);
    const s = source.get(r.md5);
    if (!s) problems.push(`${r.md5} is in the ${what} but not in the source`);
    else if (s.sha256 !== r.sha256) problems.push(`${r.md5}: sha256 differs`);
    else if (s.urls !== r.urls.length) problems.push(`${r.md5}: ${r.urls.length} URLs instead of ${s.urls}`);
    if (problems.length >= 5) break;
  }
  if (problems.length === 0 && records !== source.size) {
    for (const md5 of source.keys()) if (!seen.has(md5)) problems.push(`${md5} is missing from the ${what}`);
  }
  if (problems.length === 0 && targetUrls !== urls) problems.push(`${targetUrls} URLs in the ${what}, ${urls} in the source`);
  if (problems.length > 0) {
    throw new MediaCacheError('E_INTEGRITY', `the copy does not match its source: ${problems.slice(0, 5).join('; ')}`);
  }
  return { records, urls };
}

async function* syncToAsync<T>(it: Iterable<T>): AsyncGenerator<T> {
  yield* it;
}

/** Embedded index at `indexDir` → an empty PostgreSQL database (migrated to the current schema first). */
export async function copyIndexToPostgres(indexDir: string, database: string, opts: { logger?: Logger } = {}): Promise<IndexCopyResult> {
  const t0 = Date.now();
  const logger = opts.logger ?? silentLogger;
  // Opening creates an empty index where there is none: check first.
  if (!fs.existsSync(indexDir)) throw new MediaCacheError('E_NOT_FOUND', `no embedded index at ${indexDir}`);
  const index = await IndexDb.open(indexDir, { logger });
  let db: PgDatabase | undefined;
  try {
    db = await PgDatabase.open({ database, logger });
    const pg = new PgRecords(db);
    const have = await pg.count();
    if (have > 0) throw new MediaCacheError('E_BAD_REQUEST', `the database already holds ${have} records; migrate only into an empty one`);
    let batch: StoredRecord[] = [];
    for (const r of index.records()) {
      batch.push(r);
      if (batch.length >= BATCH) {
        await pg.putMany(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await pg.putMany(batch);
    const totals = await compare(digestOf(index.records()), pg.records({ batchSize: 2000 }), 'database');
    return { ...totals, ms: Date.now() - t0 };
  } finally {
    await db?.close();
    await index.close();
  }
}

/** PostgreSQL → an embedded index at `indexDir` that holds no records yet. */
export async function copyPostgresToIndex(database: string, indexDir: string, opts: { logger?: Logger } = {}): Promise<IndexCopyResult> {
  const t0 = Date.now();
  const logger = opts.logger ?? silentLogger;
  const db = await PgDatabase.open({ database, logger, migrate: false });
  let index: IndexDb | undefined;
  try {
    const pg = new PgRecords(db);
    index = await IndexDb.open(indexDir, { logger });
    if (index.size > 0) throw new MediaCacheError('E_BAD_REQUEST', `the embedded index at ${indexDir} already holds ${index.size} records; migrate only into an empty one`);
    const source = new Map<string, Digest>();
    for await (const r of pg.records({ batchSize: 2000 })) {
      index.put(r);
      source.set(r.md5, { sha256: r.sha256, urls: r.urls.length });
    }
    await index.flush();
    const totals = await compare(source, syncToAsync(index.records()), 'embedded index');
    return { ...totals, ms: Date.now() - t0 };
  } finally {
    await index?.close();
    await db.close();
  }
}
