/**
 * The index's stored form of a record, its validation, and the shard format.
 *
 * In memory a record is its ROW: one string, the record as a compact JSON
 * array in COLUMNS order. A row is one heap object where a parsed record is a
 * dozen (object, strings, urls array…); at a million records that is the
 * difference between seconds and a fraction of that in GC work at open, and a
 * smaller heap for the collector to walk afterwards. An array row carries no
 * key names: ~25% less text to keep, write and parse than an object would.
 * Rows are immutable: get() decodes a fresh copy, so callers can never change
 * the index (or its stats) behind its back.
 *
 * A shard file is JSON lines: a header line naming the format and columns,
 * then one row per line. Writing a shard is a join of its rows: no stringify
 * of the whole shard.
 *
 * The journal (index-db.ts has its role) is JSON lines too, appended one
 * batch per flush; see JOURNAL_HEADER below for its format.
 */
import { crc32 } from 'node:zlib';
import { MediaCacheError } from '../errors.js';
import { MEDIA_TYPES, type MediaType, type StoredRecord } from '../types.js';
import type { DataFormat } from '../util/durable-file.js';
import { isCleanMetadata, METADATA_FIELDS } from '../metadata/types.js';

/** Shard files hold this many leading md5 hex digits' worth of records (2 → 256 shards). */
export const SHARD_DIGITS = 2;
export const SHARD_COUNT = 16 ** SHARD_DIGITS;
export const SHARD_FORMAT_VERSION = 1;

export function shardOf(md5: string): number {
  return parseInt(md5.slice(0, SHARD_DIGITS), 16);
}

export function shardName(i: number): string {
  return i.toString(16).padStart(SHARD_DIGITS, '0');
}

/** Lowercase hex of exactly `len` chars (a loop: cheaper than a RegExp per record at open). */
export function isHex(s: unknown, len: number): s is string {
  if (typeof s !== 'string' || s.length !== len) return false;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

const MEDIA_TYPE_SET: ReadonlySet<unknown> = new Set(MEDIA_TYPES);
const optStr = (v: unknown): boolean => v === undefined || typeof v === 'string';
const optBool = (v: unknown): boolean => v === undefined || typeof v === 'boolean';
const optChanges = (v: unknown): boolean =>
  v === undefined ||
  (Array.isArray(v) &&
    v.every((c) => {
      const o = c as Record<string, unknown> | null;
      return typeof o === 'object' && o !== null && typeof o.url === 'string' && isHex(o.from, 32) && isHex(o.to, 32) && typeof o.at === 'string';
    }));
const optDim = (v: unknown): boolean => v === undefined || (Number.isInteger(v) && (v as number) >= 0);

/** Record fields kept in a row's `meta` column (width/height have columns of their own). */
const META_KEYS: readonly string[] = [...METADATA_FIELDS.filter((k) => k !== 'width' && k !== 'height'), 'metadataVersion'];

/** Why a `meta` column (or a record's metadata fields, gathered) is invalid, else undefined. */
function metaProblem(m: Record<string, unknown>): string | undefined {
  const { metadataVersion, ...fields } = m;
  if (metadataVersion !== undefined && !(Number.isInteger(metadataVersion) && (metadataVersion as number) >= 1)) {
    return 'metadataVersion must be a positive integer';
  }
  for (const k of Object.keys(fields)) if (!META_KEYS.includes(k)) return `unknown metadata field ${k}`;
  return isCleanMetadata(fields) ? undefined : 'metadata fields out of range';
}

/** The record's metadata fields as the `meta` column's object, or null when it has none. */
function metaOf(r: StoredRecord): Record<string, unknown> | null {
  let out: Record<string, unknown> | null = null;
  for (const k of META_KEYS) {
    const v = (r as unknown as Record<string, unknown>)[k];
    if (v !== undefined) (out ??= {})[k] = v;
  }
  return out;
}

function allStrings(a: unknown[]): boolean {
  for (let i = 0; i < a.length; i++) if (typeof a[i] !== 'string') return false;
  return true;
}

/**
 * Why `x` is not a valid StoredRecord, or undefined when it is. Runs for every
 * record at open (1M times for a large cache), hence plain loops and typeofs.
 */
export function recordProblem(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return 'not an object';
  const r = x as Record<string, unknown>;
  if (!isHex(r.md5, 32)) return 'md5 must be 32 lowercase hex digits';
  if (!isHex(r.sha256, 64)) return 'sha256 must be 64 lowercase hex digits';
  if (!Number.isSafeInteger(r.fileSize) || (r.fileSize as number) < 0) return 'fileSize must be a non-negative integer';
  if (typeof r.mimeType !== 'string') return 'mimeType must be a string';
  if (!MEDIA_TYPE_SET.has(r.mediaType)) return 'mediaType is not a known media type';
  if (typeof r.extension !== 'string') return 'extension must be a string';
  if (!optDim(r.width) || !optDim(r.height)) return 'width/height must be non-negative integers';
  if (!Array.isArray(r.urls) || !allStrings(r.urls)) return 'urls must be an array of strings';
  if (typeof r.fetchedAt !== 'string' || typeof r.verifiedAt !== 'string') return 'fetchedAt/verifiedAt must be strings';
  if (!optStr(r.etag) || !optStr(r.lastModified)) return 'etag/lastModified must be strings';
  const meta = metaOf(r as unknown as StoredRecord);
  if (meta) {
    const problem = metaProblem(meta);
    if (problem) return problem;
  }
  if (!optStr(r.lastUsedAt) || !optStr(r.evictedAt) || !optStr(r.restoredAt) || !optStr(r.revalidatedAt)) {
    return 'lastUsedAt/evictedAt/restoredAt/revalidatedAt must be strings';
  }
  if (!optBool(r.pinned) || !optBool(r.evicting)) return 'pinned/evicting must be booleans';
  if (!optChanges(r.upstreamChanges)) return 'upstreamChanges must be a list of {url, from, to, at}';
  return undefined;
}

export function assertRecord(x: unknown): asserts x is StoredRecord {
  const problem = recordProblem(x);
  if (problem) throw new MediaCacheError('E_BAD_REQUEST', `invalid index record: ${problem}`);
}

export function assertMd5(md5: unknown): asserts md5 is string {
  if (!isHex(md5, 32)) {
    throw new MediaCacheError('E_BAD_REQUEST', `not an md5 (32 lowercase hex digits): ${String(md5)}`);
  }
}

/** Field order of a row. Changing it is a new schemaVersion. */
export const COLUMNS = [
  'md5',
  'sha256',
  'fileSize',
  'mimeType',
  'mediaType',
  'extension',
  'width',
  'height',
  'urls',
  'fetchedAt',
  'verifiedAt',
  'etag',
  'lastModified',
  // Media metadata (durations, codecs, pages, …) as one object column.
  'meta',
  // Quota, pinning and revalidation.
  'lastUsedAt',
  'pinned',
  'evictedAt',
  'evicting',
  'restoredAt',
  'revalidatedAt',
  'upstreamChanges',
] as const;
/** The columns of indexes written before metadata and quota: their shards and journals are read as they are. */
const LEGACY_COLUMN_COUNT = 13;
const LEGACY_COLUMNS = COLUMNS.slice(0, LEGACY_COLUMN_COUNT);
/** Rows may omit trailing optional columns (etag, lastModified, and everything after). */
const MIN_ROW_LENGTH = 11;

/**
 * The canonical row of a (valid) record: COLUMNS order, null for an absent
 * optional field (trailing ones dropped), URLs de-duplicated (first kept).
 */
export function toRow(r: StoredRecord): string {
  const t: unknown[] = [
    r.md5,
    r.sha256,
    r.fileSize,
    r.mimeType,
    r.mediaType,
    r.extension,
    r.width ?? null,
    r.height ?? null,
    r.urls.length > 1 ? [...new Set(r.urls)] : r.urls,
    r.fetchedAt,
    r.verifiedAt,
    r.etag ?? null,
    r.lastModified ?? null,
    metaOf(r),
    r.lastUsedAt ?? null,
    r.pinned === true ? true : null,
    r.evictedAt ?? null,
    r.evicting === true ? true : null,
    r.restoredAt ?? null,
    r.revalidatedAt ?? null,
    r.upstreamChanges && r.upstreamChanges.length ? r.upstreamChanges : null,
  ];
  while (t.length > MIN_ROW_LENGTH && t[t.length - 1] === null) t.pop();
  return JSON.stringify(t);
}

function tupleToRecord(t: unknown[]): StoredRecord {
  const r: StoredRecord = {
    md5: t[0] as string,
    sha256: t[1] as string,
    fileSize: t[2] as number,
    mimeType: t[3] as string,
    mediaType: t[4] as MediaType,
    extension: t[5] as string,
    urls: t[8] as string[],
    fetchedAt: t[9] as string,
    verifiedAt: t[10] as string,
  };
  if (t[6] != null) r.width = t[6] as number;
  if (t[7] != null) r.height = t[7] as number;
  if (t[11] != null) r.etag = t[11] as string;
  if (t[12] != null) r.lastModified = t[12] as string;
  if (t[13] != null) Object.assign(r, t[13]);
  if (t[14] != null) r.lastUsedAt = t[14] as string;
  if (t[15] === true) r.pinned = true;
  if (t[16] != null) r.evictedAt = t[16] as string;
  if (t[17] === true) r.evicting = true;
  if (t[18] != null) r.restoredAt = t[18] as string;
  if (t[19] != null) r.revalidatedAt = t[19] as string;
  if (t[20] != null) r.upstreamChanges = t[20] as StoredRecord['upstreamChanges'];
  return r;
}

/** Decode a row the index wrote (trusted: validated when it was put or loaded). */
export function fromRow(row: string): StoredRecord {
  return tupleToRecord(JSON.parse(row) as unknown[]);
}

const optDimOrNull = (v: unknown): boolean => v === null || (Number.isInteger(v) && (v as number) >= 0);
const optStrOrNull = (v: unknown): boolean => v === undefined || v === null || typeof v === 'string';
const optBoolOrNull = (v: unknown): boolean => v === undefined || v === null || typeof v === 'boolean';

/** Decode and fully validate a row read from disk; undefined when it is damaged. */
export function parseRow(row: string): StoredRecord | undefined {
  let t: unknown;
  try {
    t = JSON.parse(row);
  } catch {
    return undefined;
  }
  if (!Array.isArray(t) || t.length < MIN_ROW_LENGTH || t.length > COLUMNS.length) return undefined;
  const ok =
    isHex(t[0], 32) &&
    isHex(t[1], 64) &&
    Number.isSafeInteger(t[2]) &&
    t[2] >= 0 &&
    typeof t[3] === 'string' &&
    MEDIA_TYPE_SET.has(t[4]) &&
    typeof t[5] === 'string' &&
    optDimOrNull(t[6]) &&
    optDimOrNull(t[7]) &&
    Array.isArray(t[8]) &&
    allStrings(t[8]) &&
    typeof t[9] === 'string' &&
    typeof t[10] === 'string' &&
    optStrOrNull(t[11]) &&
    optStrOrNull(t[12]) &&
    (t[13] === undefined || t[13] === null || (typeof t[13] === 'object' && !Array.isArray(t[13]) && metaProblem(t[13] as Record<string, unknown>) === undefined)) &&
    optStrOrNull(t[14]) &&
    optBoolOrNull(t[15]) &&
    optStrOrNull(t[16]) &&
    optBoolOrNull(t[17]) &&
    optStrOrNull(t[18]) &&
    optStrOrNull(t[19]) &&
    (t[20] === undefined || t[20] === null || optChanges(t[20]));
  return ok ? tupleToRecord(t) : undefined;
}

/** Lowercased prefix, or E_BAD_REQUEST when it is not 1..32 hex digits. */
export function normalizePrefix(prefix: string): string {
  const p = typeof prefix === 'string' ? prefix.trim().toLowerCase() : '';
  if (p.length < 1 || p.length > 32 || !isHex(p, p.length)) {
    throw new MediaCacheError('E_BAD_REQUEST', `an md5 prefix is 1 to 32 hex digits, got ${JSON.stringify(prefix)}`);
  }
  return p;
}

/** Which of two records claiming one URL keeps it: the later fetch, then the larger md5 (deterministic). */
export function laterClaim(a: StoredRecord, b: StoredRecord): StoredRecord {
  const ta = Date.parse(a.fetchedAt);
  const tb = Date.parse(b.fetchedAt);
  if (ta !== tb && !(Number.isNaN(ta) && Number.isNaN(tb))) {
    if (Number.isNaN(ta)) return b;
    if (Number.isNaN(tb)) return a;
    return ta > tb ? a : b;
  }
  return a.md5 > b.md5 ? a : b;
}

/** One shard as read or written: its rows (each a record's compact JSON). */
export interface ShardData {
  rows: string[];
}

const SHARD_HEADER = JSON.stringify({ v: SHARD_FORMAT_VERSION, columns: COLUMNS });
/** The header of shards written before the metadata and quota columns: their rows are valid rows of today's format. */
const LEGACY_SHARD_HEADER = JSON.stringify({ v: SHARD_FORMAT_VERSION, columns: LEGACY_COLUMNS });

/**
 * JSON lines: a header `{"v":1,"columns":[…]}` then one row per line. parse()
 * only splits and checks the header and the final newline (throwing means a
 * damaged file: the adapter reports it as such); rows are validated by the
 * index as it loads them.
 */
export const SHARD_FORMAT: DataFormat<ShardData> = {
  parse(text: string): ShardData {
    const nl = text.indexOf('\n');
    const header = nl < 0 ? text : text.slice(0, nl);
    if (header !== SHARD_HEADER && header !== LEGACY_SHARD_HEADER) {
      const h = JSON.parse(header) as { v?: unknown };
      throw new Error(`not an index shard of format ${SHARD_FORMAT_VERSION} (header v=${String(h?.v)})`);
    }
    // Every line ends with '\n'; a file cut short loses its final newline.
    if (!text.endsWith('\n')) throw new Error('truncated shard (no final newline)');
    const rows = text.slice(nl + 1, -1);
    return { rows: rows === '' ? [] : rows.split('\n') };
  },
  stringify(data: ShardData): string {
    return data.rows.length === 0 ? `${SHARD_HEADER}\n` : `${SHARD_HEADER}\n${data.rows.join('\n')}\n`;
  },
};

// ---- journal ----

export const JOURNAL_FORMAT_VERSION = 1;

/**
 * First line of a journal file. After it, batches, one per flush, each
 * written by ONE write call:
 *   ["md5",…]                       a record as it now is (a row, as in shards)
 *   {"rm":"<md5>"}                  a removal (tombstone)
 *   {"commit":<n>,"crc":<crc32>}    end of batch: n entries, CRC-32 of every
 *                                   byte since the previous commit line (the
 *                                   first batch's CRC covers the header too)
 * A batch counts only with its commit line and a matching count and CRC, so
 * a batch cut short by a crash (its append was never acknowledged) is told
 * apart from damage inside a batch that was (see scanJournal).
 */
export const JOURNAL_HEADER = JSON.stringify({ v: JOURNAL_FORMAT_VERSION, journal: true, columns: COLUMNS });
/** A journal begun before the metadata and quota columns (appends go on in its format: rows are compatible). */
export const LEGACY_JOURNAL_HEADER = JSON.stringify({ v: JOURNAL_FORMAT_VERSION, journal: true, columns: LEGACY_COLUMNS });

/** The journal line of a removal. */
export function tombstoneLine(md5: string): string {
  return `{"rm":"${md5}"}`;
}

/**
 * One batch as bytes: the entry lines (rows and tombstones), then the commit
 * line; the header first when the batch opens a new file.
 */
export function journalBatch(lines: string[], withHeader: boolean): Buffer {
  const body = Buffer.from(`${withHeader ? `${JOURNAL_HEADER}\n` : ''}${lines.join('\n')}\n`, 'utf8');
  const commit = Buffer.from(`{"commit":${lines.length},"crc":${crc32(body)}}\n`, 'utf8');
  return Buffer.concat([body, commit], body.length + commit.length);
}

/** A journal entry as read back: a record put (validated, with its line as written), or the md5 of a removal. */
export type JournalEntry = { rec: StoredRecord; row: string; rm?: undefined } | { rm: string; rec?: undefined; row?: undefined };

/** What scanJournal found. */
export interface JournalScan {
  /** Bytes up to the end of the last intact batch: what a next append keeps. */
  validLength: number;
  /** Intact (committed, count and CRC right) batches. */
  batches: number;
  /** Entries handed to `apply`. */
  entries: number;
  /** Bytes after the last commit line: an append cut short by a crash (ignored). */
  tornBytes: number;
  /** Why the journal is damaged (a line or batch that is not what was written), else undefined. */
  damaged?: string;
}

const LF = 10;

/**
 * Read a journal: every COMMITTED batch's entries are handed to `apply` in
 * file order. Rules:
 * - after the last commit line, complete entry lines followed by at most one
 *   incomplete line are the tail of an append a crash cut short (SIGKILL can
 *   stop a write between pages): never acknowledged, ignored, not damage;
 * - anything else that is not what the writer writes (an unparsable or
 *   invalid line anywhere, a commit whose count or CRC does not match, a
 *   wrong header) sets `damaged`; the readable entries of committed batches
 *   are applied anyway (keep everything readable), the caller decides what
 *   to do with the file.
 * Yields to the event loop every `sliceMs` of work (replaying a large
 * journal must not block the loop for long).
 */
export async function scanJournal(buf: Buffer, apply: (e: JournalEntry) => void, sliceMs = 10): Promise<JournalScan> {
  const out: JournalScan = { validLength: 0, batches: 0, entries: 0, tornBytes: 0 };
  const damage = (why: string, at: number): void => {
    out.damaged ??= `${why} at byte ${at}`;
  };
  let batch: JournalEntry[] = [];
  let batchStart = 0;
  let batchGarbage = false;
  let pos = 0;
  let lines = 0;
  let sliceStart = performance.now();
  for (;;) {
    const nl = buf.indexOf(LF, pos);
    if (nl < 0) break;
    const line = buf.toString('utf8', pos, nl);
    if (pos === 0) {
      if (line !== JOURNAL_HEADER && line !== LEGACY_JOURNAL_HEADER) {
        batchGarbage = true;
        damage('not a journal header', 0);
      }
    } else if (line.charCodeAt(0) === 91 /* [ */) {
      const rec = parseRow(line);
      if (rec) batch.push({ rec, row: line });
      else {
        batchGarbage = true;
        damage('invalid record line', pos);
      }
    } else {
      let o: { rm?: unknown; commit?: unknown; crc?: unknown } | undefined;
      try {
        o = JSON.parse(line) as typeof o;
      } catch {
        o = undefined;
      }
      if (o !== null && typeof o === 'object' && isHex(o.rm, 32)) {
        batch.push({ rm: o.rm });
      } else if (o !== null && typeof o === 'object' && Number.isInteger(o.commit) && Number.isInteger(o.crc)) {
        const intact = !batchGarbage && o.commit === batch.length && crc32(buf.subarray(batchStart, pos)) === o.crc;
        if (!intact && !batchGarbage) damage(o.commit === batch.length ? 'batch CRC mismatch' : 'batch entry count mismatch', pos);
        for (const e of batch) apply(e);
        out.entries += batch.length;
        if (intact) out.batches++;
        // Even a damaged batch was committed: its end is where the next batch starts.
        out.validLength = nl + 1;
        batch = [];
        batchGarbage = false;
        batchStart = nl + 1;
      } else {
        batchGarbage = true;
        damage('unreadable line', pos);
      }
    }
    pos = nl + 1;
    if (++lines % 64 === 0 && performance.now() - sliceStart >= sliceMs) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
  out.tornBytes = buf.length - out.validLength;
  return out;
}
