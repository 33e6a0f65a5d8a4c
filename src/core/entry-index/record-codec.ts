/**
 * The index's stored form of a record (the ROW codec) and its validation.
 * The shard file format is in index-shard.ts, the journal format in
 * index-journal-format.ts; both store rows as written here, each followed
 * by its own checksum (checkedLine).
 *
 * In memory a record is its ROW: one string, the record as a compact JSON
 * array in COLUMNS order. A row is one heap object where a parsed record is a
 * dozen (object, strings, urls array…); at a million records that is the
 * difference between seconds and a fraction of that in GC work at open, and a
 * smaller heap for the collector to walk afterwards. An array row carries no
 * key names: ~25% less text to keep, write and parse than an object would.
 * Rows are immutable: get() decodes a fresh copy, so callers can never change
 * the index (or its stats) behind its back.
 */
import { crc32 } from 'node:zlib';
import { MediaCacheError } from '../errors.js';
import { MEDIA_TYPES, type MediaType, type StoredRecord } from '../types.js';
import { isCleanMetadata, METADATA_FIELDS } from '../metadata/types.js';

/** Shard files hold this many leading md5 hex digits' worth of records (2 → 256 shards). */
export const SHARD_DIGITS = 2;
export const SHARD_COUNT = 16 ** SHARD_DIGITS;

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
export const LEGACY_COLUMNS = COLUMNS.slice(0, LEGACY_COLUMN_COUNT);
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

/**
 * One line with its own check: `<payload>\t<crc32 of payload, 8 hex digits>`.
 * JSON text never holds a raw tab (JSON.stringify escapes it), so the last
 * tab of a line is the separator. The check lets a reader keep every other
 * line of a file in which one byte changed: a row that only fails validation
 * would be caught, but a flipped hex digit in a sha256 or a letter in a URL
 * still validates, and a record with a wrong sha256 makes the sweep
 * quarantine an intact file.
 */
export function checkedLine(payload: string): string {
  return `${payload}\t${crcHex(payload)}`;
}

/**
 * Reading a checkedLine: for the line buf[start, end) (without its '\n'),
 * the end of the payload (the tab) when the checksum matches, else -1. The
 * CRC runs over the bytes as read: no decode, no string copies (open reads
 * a million rows through here).
 */
export function checkedLineEnd(buf: Buffer, start: number, end: number): number {
  const tab = end - 9;
  if (tab <= start || buf[tab] !== 9) return -1;
  let crc = 0;
  for (let k = tab + 1; k < end; k++) {
    const c = buf[k];
    const v = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (v < 0) return -1;
    crc = crc * 16 + v;
  }
  return crc32(buf.subarray(start, tab)) === crc ? tab : -1;
}

function crcHex(s: string): string {
  return crc32(s).toString(16).padStart(8, '0');
}

/**
 * The md5 a damaged row or tombstone line seems to name (first 32 hex digits
 * after `["` or `{"rm":"`), for logs: a hint, never trusted as data.
 */
export function md5Hint(line: string): string | undefined {
  const at = line.startsWith('["') ? 2 : line.startsWith('{"rm":"') ? 7 : -1;
  const m = at < 0 ? undefined : line.slice(at, at + 32);
  return m !== undefined && isHex(m, 32) ? m : undefined;
}
