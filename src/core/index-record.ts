/**
 * The index's in-memory and on-disk form of a record, and its validation.
 *
 * In memory every record is an `Entry`: one hidden class for all (optional
 * fields are present as `undefined`), the few distinct mime types and
 * extensions interned so a million records share a handful of strings. The
 * caller never sees an Entry: get()/records() hand out fresh StoredRecords, so
 * nobody can mutate the index behind its back (stats stay exact).
 *
 * On disk a shard is `{"v":1,"records":[StoredRecord…]}` in compact JSON;
 * JSON.stringify of an Entry produces exactly a StoredRecord (undefined
 * fields are dropped).
 */
import { MediaCacheError } from './errors.js';
import { MEDIA_TYPES, type MediaType, type StoredRecord } from './types.js';

export const MD5_RE = /^[0-9a-f]{32}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
const HEX_PREFIX_RE = /^[0-9a-f]{1,32}$/;

/** Shard files hold this many leading md5 hex digits' worth of records (2 → 256 shards). */
export const SHARD_DIGITS = 2;
export const SHARD_COUNT = 16 ** SHARD_DIGITS;

export function shardOf(md5: string): number {
  return parseInt(md5.slice(0, SHARD_DIGITS), 16);
}

export function shardName(i: number): string {
  return i.toString(16).padStart(SHARD_DIGITS, '0');
}

const interned = new Map<string, string>();
/** Share one copy of strings that repeat across records (mime types, extensions). */
function intern(s: string): string {
  const hit = interned.get(s);
  if (hit !== undefined) return hit;
  if (interned.size < 10_000) interned.set(s, s);
  return s;
}

export class Entry {
  md5: string;
  sha256: string;
  fileSize: number;
  mimeType: string;
  mediaType: MediaType;
  extension: string;
  width: number | undefined;
  height: number | undefined;
  urls: string[];
  fetchedAt: string;
  verifiedAt: string;
  etag: string | undefined;
  lastModified: string | undefined;

  constructor(r: StoredRecord) {
    this.md5 = r.md5;
    this.sha256 = r.sha256;
    this.fileSize = r.fileSize;
    this.mimeType = intern(r.mimeType);
    this.mediaType = r.mediaType;
    this.extension = intern(r.extension);
    this.width = r.width;
    this.height = r.height;
    this.urls = r.urls.length > 1 ? [...new Set(r.urls)] : r.urls.slice();
    this.fetchedAt = r.fetchedAt;
    this.verifiedAt = r.verifiedAt;
    this.etag = r.etag;
    this.lastModified = r.lastModified;
  }

  toStored(): StoredRecord {
    const out: StoredRecord = {
      md5: this.md5,
      sha256: this.sha256,
      fileSize: this.fileSize,
      mimeType: this.mimeType,
      mediaType: this.mediaType,
      extension: this.extension,
      urls: this.urls.slice(),
      fetchedAt: this.fetchedAt,
      verifiedAt: this.verifiedAt,
    };
    if (this.width !== undefined) out.width = this.width;
    if (this.height !== undefined) out.height = this.height;
    if (this.etag !== undefined) out.etag = this.etag;
    if (this.lastModified !== undefined) out.lastModified = this.lastModified;
    return out;
  }
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const optStr = (v: unknown): boolean => v === undefined || typeof v === 'string';
const optDim = (v: unknown): boolean => v === undefined || (Number.isInteger(v) && (v as number) >= 0);

/** Why `x` is not a valid StoredRecord, or undefined when it is. */
export function recordProblem(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return 'not an object';
  const r = x as Record<string, unknown>;
  if (!isStr(r.md5) || !MD5_RE.test(r.md5)) return 'md5 must be 32 lowercase hex digits';
  if (!isStr(r.sha256) || !SHA256_RE.test(r.sha256)) return 'sha256 must be 64 lowercase hex digits';
  if (!Number.isSafeInteger(r.fileSize) || (r.fileSize as number) < 0) return 'fileSize must be a non-negative integer';
  if (!isStr(r.mimeType)) return 'mimeType must be a string';
  if (!(MEDIA_TYPES as readonly unknown[]).includes(r.mediaType)) return 'mediaType is not a known media type';
  if (!isStr(r.extension)) return 'extension must be a string';
  if (!optDim(r.width) || !optDim(r.height)) return 'width/height must be non-negative integers';
  if (!Array.isArray(r.urls) || !r.urls.every(isStr)) return 'urls must be an array of strings';
  if (!isStr(r.fetchedAt) || !isStr(r.verifiedAt)) return 'fetchedAt/verifiedAt must be strings';
  if (!optStr(r.etag) || !optStr(r.lastModified)) return 'etag/lastModified must be strings';
  return undefined;
}

export function assertRecord(x: unknown): asserts x is StoredRecord {
  const problem = recordProblem(x);
  if (problem) throw new MediaCacheError('E_BAD_REQUEST', `invalid index record: ${problem}`);
}

export function assertMd5(md5: unknown): asserts md5 is string {
  if (typeof md5 !== 'string' || !MD5_RE.test(md5)) {
    throw new MediaCacheError('E_BAD_REQUEST', `not an md5 (32 lowercase hex digits): ${String(md5)}`);
  }
}

/** Lowercased prefix, or E_BAD_REQUEST when it is not 1..32 hex digits. */
export function normalizePrefix(prefix: string): string {
  const p = typeof prefix === 'string' ? prefix.trim().toLowerCase() : '';
  if (!HEX_PREFIX_RE.test(p)) {
    throw new MediaCacheError('E_BAD_REQUEST', `an md5 prefix is 1 to 32 hex digits, got ${JSON.stringify(prefix)}`);
  }
  return p;
}

/** Which of two records claiming one URL keeps it: the later fetch, then the larger md5 (deterministic). */
export function laterClaim(a: Entry, b: Entry): Entry {
  const ta = Date.parse(a.fetchedAt);
  const tb = Date.parse(b.fetchedAt);
  if (ta !== tb && !(Number.isNaN(ta) && Number.isNaN(tb))) {
    if (Number.isNaN(ta)) return b;
    if (Number.isNaN(tb)) return a;
    return ta > tb ? a : b;
  }
  return a.md5 > b.md5 ? a : b;
}
