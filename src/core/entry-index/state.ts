/**
 * The index in memory: records by md5 (as rows, see index-record.ts) in one
 * Map per shard, the URL→md5 map derived from the records' `urls`, and stats
 * kept incrementally. Pure data structure: no I/O, no timers; every change
 * reports the record (and its shard) it touched through `onDirty` so IndexDb
 * can persist it: a change to a record that no longer exists is a removal.
 *
 * Invariants:
 * - urlMap.get(u) === m  ⇔  record m lists u (a URL belongs to one record;
 *   claiming it for another record drops it from the previous one).
 * - totals equal the sum over all records, at every moment; rowChars the sum
 *   of their rows' lengths (the size of the shards, for the journal's
 *   compaction threshold).
 * - A row in a shard Map is never mutated, only replaced.
 */
import { MediaCacheError } from '../errors.js';
import {
  assertMd5,
  assertRecord,
  fromRow,
  laterClaim,
  normalizePrefix,
  parseRow,
  SHARD_COUNT,
  SHARD_DIGITS,
  shardOf,
  toRow,
} from './record-codec.js';
import type { Logger } from '../util/logger.js';
import { emptyStats, type CacheStats, type StoredRecord } from '../types.js';

export class IndexState {
  /** Per shard: md5 → row. */
  private readonly shards: Map<string, string>[] = Array.from({ length: SHARD_COUNT }, () => new Map<string, string>());
  private readonly urlMap = new Map<string, string>();
  private readonly totals: CacheStats = emptyStats();
  private chars = 0;
  /** Records flagged `evicting` (their file's state is being changed; see StoredRecord.evicting). */
  private readonly inFlux = new Set<string>();

  constructor(
    private readonly onDirty: (shard: number, md5: string) => void,
    private readonly logger: Logger,
  ) {}

  /** Records, evicted ones included. */
  get size(): number {
    return this.totals.totalFiles + this.totals.evicted!.count;
  }

  /** Md5s of records flagged `evicting` (a crash interrupted a change of their file). */
  evictingMd5s(): string[] {
    return [...this.inFlux];
  }

  /** Total length of all rows: about the bytes the shards take on disk. */
  get rowChars(): number {
    return this.chars;
  }

  /** The stored row of `md5` (what a shard holds and the journal appends), undefined when there is none. */
  row(md5: string): string | undefined {
    if (typeof md5 !== 'string' || md5.length !== 32) return undefined;
    return this.shards[shardOf(md5)]?.get(md5);
  }

  get(md5: string): StoredRecord | undefined {
    const row = this.row(md5);
    return row === undefined ? undefined : fromRow(row);
  }

  has(md5: string): boolean {
    return this.row(md5) !== undefined;
  }

  md5ForUrl(url: string): string | undefined {
    return this.urlMap.get(url);
  }

  /** Records whose md5 starts with `prefix` (1..32 hex digits, any case), in md5 order. */
  findByPrefix(prefix: string, limit = Infinity): StoredRecord[] {
    const p = normalizePrefix(prefix);
    if (!(limit > 0)) return [];
    if (p.length === 32) {
      const row = this.row(p);
      return row === undefined ? [] : [fromRow(row)];
    }
    // Only the shards that can hold the prefix: one when it covers the shard
    // digits, 16^(digits-len) otherwise.
    let first: number;
    let last: number;
    if (p.length >= SHARD_DIGITS) {
      first = last = parseInt(p.slice(0, SHARD_DIGITS), 16);
    } else {
      const span = 16 ** (SHARD_DIGITS - p.length);
      first = parseInt(p, 16) * span;
      last = first + span - 1;
    }
    const hits: string[] = [];
    for (let i = first; i <= last; i++) {
      for (const md5 of this.shards[i].keys()) if (md5.startsWith(p)) hits.push(md5);
    }
    hits.sort();
    return hits.slice(0, Math.min(limit, hits.length)).map((md5) => fromRow(this.row(md5)!));
  }

  /** Insert or replace the record for rec.md5; its URLs now point to it. */
  put(rec: StoredRecord): void {
    assertRecord(rec);
    const row = toRow(rec);
    this.store(fromRow(row), row); // canonical: deduplicated urls, no stray keys, own copies
  }

  /**
   * put() for a record replayed from the journal: `rec` was validated by
   * parseRow and `row` is the line it came from (written by toRow), so it is
   * stored as it is, as loadShard does: no re-encoding (a 32 MiB journal is
   * ~120k of these at open). Same effect as put(rec).
   */
  replayPut(rec: StoredRecord, row: string): void {
    // Already exactly this (a journal whose effects the shards hold): nothing changes.
    if (this.row(rec.md5) === row && rec.urls.every((u) => this.urlMap.get(u) === rec.md5)) return;
    this.store(rec, row);
  }

  /** Replace (or add) the row of `rec`, whose encoding is `row`, keeping stats and URL map in step. */
  private store(rec: StoredRecord, row: string): void {
    const i = shardOf(rec.md5);
    const prevRow = this.shards[i].get(rec.md5);
    if (prevRow !== undefined) this.unaccount(prevRow, rec.urls);
    this.setRow(i, rec.md5, row);
    this.account(rec, +1);
    for (const u of rec.urls) this.claimUrl(u, rec.md5);
    this.onDirty(i, rec.md5);
  }

  /** Record one more URL for existing content (E_NOT_FOUND when md5 is unknown). */
  addUrl(md5: string, url: string): void {
    assertMd5(md5);
    if (typeof url !== 'string' || url === '') throw new MediaCacheError('E_BAD_REQUEST', 'url must be a non-empty string');
    const row = this.row(md5);
    if (row === undefined) throw new MediaCacheError('E_NOT_FOUND', `no record for md5 ${md5}`);
    const rec = fromRow(row);
    if (rec.urls.includes(url) && this.urlMap.get(url) === md5) return;
    if (!rec.urls.includes(url)) {
      rec.urls.push(url);
      this.setRow(shardOf(md5), md5, toRow(rec));
    }
    this.claimUrl(url, md5);
    this.onDirty(shardOf(md5), md5);
  }

  remove(md5: string): StoredRecord | undefined {
    const row = this.row(md5);
    if (row === undefined) return undefined;
    const rec = fromRow(row);
    const i = shardOf(md5);
    this.chars -= row.length;
    this.shards[i].delete(md5);
    this.account(rec, -1);
    for (const u of rec.urls) if (this.urlMap.get(u) === md5) this.urlMap.delete(u);
    this.onDirty(i, md5);
    return rec;
  }

  /** Every record, shard by shard (fresh copies; changes during iteration are allowed). */
  *records(): IterableIterator<StoredRecord> {
    for (const shard of this.shards) {
      for (const row of [...shard.values()]) yield fromRow(row);
    }
  }

  /** Every md5, shard by shard, without decoding records (cheaper than records()). */
  *md5s(): IterableIterator<string> {
    for (const shard of this.shards) yield* [...shard.keys()];
  }

  stats(): CacheStats {
    return structuredClone(this.totals);
  }

  /** The rows of shard i, as they are now (what a write of that shard persists). */
  shardRows(i: number): string[] {
    return [...this.shards[i].values()];
  }

  shardSize(i: number): number {
    return this.shards[i].size;
  }

  /**
   * Take the rows of shard i as read from disk: each is validated (and must
   * belong to shard i); a damaged one is skipped. Returns how many were.
   */
  loadShard(i: number, rows: string[]): number {
    const shard = this.shards[i];
    let invalid = 0;
    for (let k = 0; k < rows.length; k++) {
      const r = parseRow(rows[k]);
      if (r === undefined || shardOf(r.md5) !== i) {
        invalid++;
        continue;
      }
      if (shard.has(r.md5)) {
        // One md5 twice in a shard (hand edit): keep the first, rewrite the shard.
        this.onDirty(i, r.md5);
        continue;
      }
      this.setRow(i, r.md5, rows[k]);
      this.account(r, +1);
      for (const u of r.urls) this.adoptUrl(u, r);
    }
    return invalid;
  }

  // ---- internals ----

  /**
   * Take a record that is being replaced out of the stats and the url map.
   * URLs the new version keeps stay mapped: deleting and re-adding a key
   * leaves a hole in the Map, and at a million URLs the rehash that clears
   * the holes is a long pause (a sweep replaces every record once).
   */
  private unaccount(prevRow: string, keep: string[]): void {
    const prev = fromRow(prevRow);
    this.account(prev, -1);
    for (const u of prev.urls) if (this.urlMap.get(u) === prev.md5 && !keep.includes(u)) this.urlMap.delete(u);
  }

  /** Store a row (new or replacing one), keeping rowChars right. */
  private setRow(i: number, md5: string, row: string): void {
    const prev = this.shards[i].get(md5);
    if (prev !== undefined) this.chars -= prev.length;
    this.shards[i].set(md5, row);
    this.chars += row.length;
  }

  /**
   * Evicted records count apart from the totals (their files are gone);
   * pinned ones also in `pinned`.
   */
  private account(r: StoredRecord, sign: 1 | -1): void {
    if (r.evicting) {
      if (sign > 0) this.inFlux.add(r.md5);
      else this.inFlux.delete(r.md5);
    }
    if (r.evictedAt !== undefined) {
      this.totals.evicted!.count += sign;
      this.totals.evicted!.size += sign * r.fileSize;
      return;
    }
    if (r.pinned) {
      this.totals.pinned!.count += sign;
      this.totals.pinned!.size += sign * r.fileSize;
    }
    this.totals.totalFiles += sign;
    this.totals.totalSize += sign * r.fileSize;
    const t = this.totals.byType[r.mediaType];
    t.count += sign;
    t.size += sign * r.fileSize;
  }

  /** Point `url` at `md5`, taking it away from any other record that listed it. */
  private claimUrl(url: string, md5: string): void {
    const prevMd5 = this.urlMap.get(url);
    if (prevMd5 !== undefined && prevMd5 !== md5) this.dropUrl(prevMd5, url);
    this.urlMap.set(url, md5);
  }

  /** Remove `url` from the urls of record `md5` (the url map is the caller's business). */
  private dropUrl(md5: string, url: string): void {
    const row = this.row(md5);
    if (row === undefined) return;
    const rec = fromRow(row);
    rec.urls = rec.urls.filter((u) => u !== url);
    this.setRow(shardOf(md5), md5, toRow(rec));
    this.onDirty(shardOf(md5), md5);
  }

  /**
   * Map a URL read from disk. Two records claiming one URL (a crash between
   * the two shard renames of one flush) are resolved for the later fetch; the
   * loser drops the URL and its shard is rewritten.
   */
  private adoptUrl(url: string, r: StoredRecord): void {
    const otherMd5 = this.urlMap.get(url);
    if (otherMd5 === undefined || otherMd5 === r.md5) {
      this.urlMap.set(url, r.md5);
      return;
    }
    const other = fromRow(this.row(otherMd5)!);
    const winner = laterClaim(r, other);
    const loser = winner === r ? other : r;
    this.urlMap.set(url, winner.md5);
    // The loser's row is already in its shard map (r was added just before its URLs).
    this.dropUrl(loser.md5, url);
    if (loser === r) r.urls = r.urls.filter((u) => u !== url);
    this.logger.warn('index: url claimed by two records; kept the later fetch', { url, kept: winner.md5, dropped: loser.md5 });
  }
}
