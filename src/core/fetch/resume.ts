/**
 * Resumable partial downloads in `.tmp/`.
 *
 * A large body (>= RESUME_MIN_BYTES, with a strong validator: a strong ETag
 * or a Last-Modified) is written to `.tmp/r-<sha256(url)>.part`, named from
 * its URL so a later attempt (a retry, or the next process after a crash)
 * finds it, next to a sidecar `r-<…>.json` holding the URL, the validators,
 * the total size and `durable`: how many leading bytes are known to be on
 * disk (fdatasync'd every CHECKPOINT_BYTES, and at an interruption).
 *
 * The next attempt asks for `Range: bytes=<durable>-` with `If-Range`; a 206
 * answer for exactly that offset continues the file after re-hashing the
 * kept prefix from disk (never fetched again). A 200 (no range support, or
 * the validator changed) starts the file over. Partials the sweep's
 * clean-tmp step finds untouched for a day are removed like other leftovers.
 *
 * Invariant: only bytes below `durable` are ever reused, so a power loss
 * that kept a longer but partly unwritten file cannot poison a resume; the
 * final file is hashed in full (prefix from disk + the rest from the wire),
 * as every download is.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { removeQuietly } from '../content/store.js';

export const RESUME_MIN_BYTES = 1024 * 1024;
/** Bytes between two fdatasync + sidecar checkpoints (what a crash may cost to fetch again). */
export const CHECKPOINT_BYTES = 8 * 1024 * 1024;
const SIDECAR_VERSION = 1;

export interface Sidecar {
  v: number;
  url: string;
  etag?: string;
  lastModified?: string;
  total: number;
  durable: number;
}

export interface PartialPaths {
  part: string;
  sidecar: string;
}

/** A partial found for a URL: where, and what to ask for. */
export interface Prior extends PartialPaths {
  offset: number;
  ifRange: string;
  total: number;
  sidecarData: Sidecar;
}

/** URLs whose resumable partial this process is writing (two fetches of one URL must not share one file). */
const claimed = new Set<string>();

export function partialPaths(tmpDir: string, url: string): PartialPaths {
  const key = createHash('sha256').update(url).digest('hex').slice(0, 40);
  return { part: path.join(tmpDir, `r-${key}.part`), sidecar: path.join(tmpDir, `r-${key}.json`) };
}

/** A strong validator for If-Range (weak ETags may not be used there), or undefined. */
export function ifRangeValidator(v: { etag?: string; lastModified?: string }): string | undefined {
  if (v.etag && !v.etag.startsWith('W/')) return v.etag;
  return v.lastModified || undefined;
}

/** Whether a fresh response should be written resumably. */
export function worthResuming(total: number | undefined, v: { etag?: string; lastModified?: string }): boolean {
  return total !== undefined && total >= RESUME_MIN_BYTES && ifRangeValidator(v) !== undefined;
}

/** Parse `Content-Range: bytes a-b/total`. */
export function parseContentRange(v: string | undefined): { start: number; end: number; total: number } | undefined {
  const m = v === undefined ? null : /^\s*bytes\s+(\d+)-(\d+)\/(\d+)\s*$/i.exec(v);
  if (!m) return undefined;
  const r = { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) };
  return r.end >= r.start && r.total > r.end ? r : undefined;
}

/**
 * Take the resumable slot for `url`: false when another fetch in this
 * process holds it (that one then goes on without resume). Release with
 * releasePartial.
 */
export function claimPartial(url: string): boolean {
  if (claimed.has(url)) return false;
  claimed.add(url);
  return true;
}

export function releasePartial(url: string): void {
  claimed.delete(url);
}

/**
 * Sidecar file names present in each tmp folder: read with one readdir at
 * first use, then kept current by writeSidecar, dropPartial and
 * removeSidecar. Only this process writes sidecars into its cache's tmp
 * folder (the writer lock; a folder per host in cluster mode), so "not
 * listed" means "not there", and a URL never tried before (nearly every
 * download) costs no open() of a sidecar that does not exist. A name listed
 * whose file something else removed (a sweep's clean-up) only costs the
 * failed read that findPrior would have made anyway.
 */
const sidecarNames = new Map<string, Promise<Set<string>>>();

function sidecarsIn(tmpDir: string): Promise<Set<string>> {
  let names = sidecarNames.get(tmpDir);
  if (!names) {
    names = fs.promises.readdir(tmpDir).then(
      (all) => new Set(all.filter((n) => n.startsWith('r-') && n.endsWith('.json'))),
      () => new Set<string>(), // no folder yet: no sidecar either
    );
    sidecarNames.set(tmpDir, names);
  }
  return names;
}

/** The partial left for `url` by an earlier attempt, if it can be resumed. */
export async function findPrior(tmpDir: string, url: string): Promise<Prior | undefined> {
  const p = partialPaths(tmpDir, url);
  if (!(await sidecarsIn(tmpDir)).has(path.basename(p.sidecar))) return undefined;
  let data: Sidecar;
  try {
    data = JSON.parse(await fs.promises.readFile(p.sidecar, 'utf8')) as Sidecar;
  } catch {
    return undefined;
  }
  const ifRange = ifRangeValidator(data);
  if (data?.v !== SIDECAR_VERSION || data.url !== url || !ifRange || !Number.isSafeInteger(data.durable) || !Number.isSafeInteger(data.total)) {
    await dropPartial(p);
    return undefined;
  }
  let size: number;
  try {
    size = (await fs.promises.stat(p.part)).size;
  } catch {
    await dropPartial(p);
    return undefined;
  }
  const offset = Math.min(size, data.durable);
  if (offset <= 0 || offset >= data.total) return undefined;
  return { ...p, offset, ifRange, total: data.total, sidecarData: data };
}

/** Write the sidecar (replace atomically: a torn sidecar would just mean no resume, but keep it whole). */
export async function writeSidecar(p: PartialPaths, data: Sidecar): Promise<void> {
  // Listed before the rename: a listing read later sees the file anyway.
  const names = await sidecarsIn(path.dirname(p.sidecar));
  const tmp = `${p.sidecar}.new`;
  await fs.promises.writeFile(tmp, JSON.stringify(data));
  await fs.promises.rename(tmp, p.sidecar);
  names.add(path.basename(p.sidecar));
}

/** Remove the sidecar of a completed partial (its part file is renamed into place by the commit). */
export async function removeSidecar(p: PartialPaths): Promise<void> {
  await removeQuietly(p.sidecar);
  (await sidecarNames.get(path.dirname(p.sidecar)))?.delete(path.basename(p.sidecar));
}

export function sidecarFor(url: string, v: { etag?: string; lastModified?: string }, total: number, durable: number): Sidecar {
  const s: Sidecar = { v: SIDECAR_VERSION, url, total, durable };
  if (v.etag) s.etag = v.etag;
  if (v.lastModified) s.lastModified = v.lastModified;
  return s;
}

export async function dropPartial(p: PartialPaths): Promise<void> {
  await removeQuietly(p.part);
  await removeSidecar(p);
}

/**
 * Feed the kept prefix of a partial into `prime` (hash, sniff, count: the
 * bytes are not fetched again), in bounded chunks, waiting for the hasher
 * when it asks to.
 */
export async function replayPrefix(file: string, length: number, prime: (chunk: Buffer, cb: (err?: Error | null) => void) => void): Promise<void> {
  if (length <= 0) return;
  const stream = fs.createReadStream(file, { start: 0, end: length - 1, highWaterMark: 512 * 1024 });
  for await (const chunk of stream) {
    await new Promise<void>((resolve, reject) => prime(chunk as Buffer, (err) => (err ? reject(err) : resolve())));
  }
}
