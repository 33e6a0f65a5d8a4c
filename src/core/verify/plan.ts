/**
 * The pure half of a sweep: which records to check first, what a file found
 * in a type folder is, where a quarantined file goes, what counts as stale
 * tmp. No IO here; sweep.ts does the IO and calls these.
 */
import path from 'node:path';
import { SNIFF_TYPES, type Sniffed } from '../content/sniff.js';
import { MEDIA_TYPES, TYPE_DIRS, type MediaType, type StoredRecord } from '../types.js';

export const QUARANTINE_DIR = '.quarantine';

/** Files in `.tmp/` older than this are leftovers of a crash or a kill. */
export const TMP_MAX_AGE_MS = 24 * 3600 * 1000;

/**
 * Records in the order a sweep re-checks them: least recently verified first
 * (unparseable dates count as never), ties by md5. An incremental sweep that
 * stops early has therefore checked the stalest files, and the ones it
 * checked move to the back: every file is re-checked within
 * ceil(total bytes / bytes per run) runs.
 */
export function orderForRehash<R extends Pick<StoredRecord, 'md5' | 'verifiedAt'>>(records: Iterable<R>): R[] {
  const keyed = [...records].map((r) => {
    const t = Date.parse(r.verifiedAt);
    return { r, t: Number.isNaN(t) ? -Infinity : t };
  });
  keyed.sort((a, b) => a.t - b.t || (a.r.md5 < b.r.md5 ? -1 : a.r.md5 > b.r.md5 ? 1 : 0));
  return keyed.map((k) => k.r);
}

/** What a file found in a type folder is, from its name alone. */
export type FolderEntry =
  /** Exactly where the index expects this record's file. */
  | { kind: 'indexed'; md5: string }
  /** A well-formed content name the index does not know: hash and sniff it to decide. */
  | { kind: 'candidate'; md5: string; ext: string; expected: Sniffed }
  /** Not ours: wrong name, wrong folder for its extension, a leftover, or a second copy. */
  | { kind: 'junk'; reason: string };

const CONTENT_NAME = /^([0-9a-f]{32})(\.[a-z0-9]{1,8})$/;

/** Sniff answers by extension; several sniff keys may share an extension, the first one wins. */
const BY_EXT = new Map<string, Sniffed>();
for (const s of Object.values(SNIFF_TYPES) as Sniffed[]) if (!BY_EXT.has(s.extension)) BY_EXT.set(s.extension, s);

export function mediaTypeOfDir(dir: string): MediaType | undefined {
  return MEDIA_TYPES.find((t) => TYPE_DIRS[t] === dir);
}

/**
 * Classify `name` found in the folder of `mediaType`. `lookup` is the index:
 * a file is "indexed" only when a record has this md5 AND maps to this very
 * folder and extension; any other file carrying a known md5 is a stray copy.
 */
export function classifyFolderEntry(
  mediaType: MediaType,
  name: string,
  lookup: (md5: string) => Pick<StoredRecord, 'mediaType' | 'extension'> | undefined,
): FolderEntry {
  const m = CONTENT_NAME.exec(name);
  if (!m) return { kind: 'junk', reason: 'not named {md5}.{ext}' };
  const [, md5, ext] = m;
  const rec = lookup(md5);
  if (rec) {
    if (rec.mediaType === mediaType && rec.extension === ext) return { kind: 'indexed', md5 };
    return { kind: 'junk', reason: `stray copy: the index keeps ${md5} as ${TYPE_DIRS[rec.mediaType]}/${md5}${rec.extension}` };
  }
  const expected = BY_EXT.get(ext);
  if (!expected) return { kind: 'junk', reason: `unknown extension ${ext}` };
  if (expected.mediaType !== mediaType) return { kind: 'junk', reason: `${ext} belongs in ${TYPE_DIRS[expected.mediaType]}/` };
  return { kind: 'candidate', md5, ext, expected };
}

/**
 * Why a hashed and sniffed candidate may not be adopted, or undefined when it
 * may: the content must hash to its name and sniff to the type its name and
 * folder claim.
 */
export function adoptionProblem(
  entry: { md5: string; ext: string; expected: Sniffed },
  actual: { md5: string; size: number },
  sniffed: Sniffed | undefined,
): string | undefined {
  if (actual.md5 !== entry.md5) return `content hashes to ${actual.md5}, not to its name`;
  if (actual.size === 0) return 'empty file';
  if (!sniffed) return 'content is not a supported media type';
  if (sniffed.mediaType !== entry.expected.mediaType || sniffed.extension !== entry.ext) {
    return `content is ${sniffed.mimeType} (${sniffed.extension}), not ${entry.ext}`;
  }
  return undefined;
}

/** Local calendar date YYYY-MM-DD: the quarantine folder of the day. */
export function dayStamp(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/**
 * `<cacheDir>/.quarantine/<YYYY-MM-DD>/<name>`, or `<name>.1`, `.2`… when
 * `taken` says the name is used (the same file may go bad twice in a day;
 * quarantine never overwrites).
 */
export function quarantineTarget(cacheDir: string, originalName: string, when: Date, taken: (p: string) => boolean): string {
  const dir = path.join(cacheDir, QUARANTINE_DIR, dayStamp(when));
  const base = path.basename(originalName);
  let candidate = path.join(dir, base);
  for (let i = 1; taken(candidate); i++) candidate = path.join(dir, `${base}.${i}`);
  return candidate;
}

export function isStaleTmp(mtimeMs: number, nowMs: number, maxAgeMs = TMP_MAX_AGE_MS): boolean {
  return nowMs - mtimeMs > maxAgeMs;
}

/** Whether a sweep started at `startMs` with `maxDurationMs` (0 = none) must stop taking new work. */
export function pastDeadline(startMs: number, maxDurationMs: number, nowMs: number): boolean {
  return maxDurationMs > 0 && nowMs - startMs >= maxDurationMs;
}

/**
 * Emit at most one progress event per `intervalMs` per step, plus the last
 * one (done === total) always: listeners get a smooth bar without a flood.
 */
export class ProgressThrottle {
  private last = -Infinity;
  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number,
  ) {}

  reset(): void {
    this.last = -Infinity;
  }

  shouldEmit(done: number, total: number | undefined): boolean {
    const t = this.now();
    if (done === total || t - this.last >= this.intervalMs) {
      this.last = t;
      return true;
    }
    return false;
  }
}
