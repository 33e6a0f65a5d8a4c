/**
 * File-level recovery for the index dir: reading a file that may be damaged,
 * moving a damaged one aside (kept for inspection, never deleted), removing
 * temp files a killed writer left behind, reading and deleting journals.
 */
import { readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isDurableFileParseError, TEMP_PREFIX, writeFileDurable, type DurableDataFile } from '../util/durable-file.js';
import type { Logger } from '../util/logger.js';
import { processAlive } from '../content/store.js';

export interface Recovery {
  logger: Logger;
  now: () => Date;
  /** Paths of the files moved aside so far (appended to). */
  recovered: string[];
}

/**
 * Read one file: undefined when missing; moved aside (and undefined) when it
 * does not parse or has the wrong shape. I/O errors other than a missing file
 * propagate: an unreadable index is not "empty".
 */
export async function readOrRecover<T>(adapter: DurableDataFile<T>, valid: (d: unknown) => d is T, r: Recovery): Promise<T | undefined> {
  let data: T | null;
  try {
    data = await adapter.read();
  } catch (e) {
    if (!isDurableFileParseError(e)) throw e;
    await moveAside(adapter.filename, e.message, r);
    return undefined;
  }
  if (data === null) {
    // null is also what a file containing JSON `null` parses to.
    if (await exists(adapter.filename)) await moveAside(adapter.filename, 'wrong shape', r);
    return undefined;
  }
  if (!valid(data)) {
    await moveAside(adapter.filename, 'wrong shape', r);
    return undefined;
  }
  return data;
}

/** Rename `file` to `<file>.corrupt-<ISO time without colons>[-n]` and record it. */
export async function moveAside(file: string, why: string, r: Recovery): Promise<void> {
  const target = await asideName(file, r);
  await rename(file, target);
  r.recovered.push(target);
  r.logger.warn('index: damaged file moved aside; run a sweep to re-adopt its files', { file, movedTo: target, why });
}

/**
 * Keep the bytes of a damaged file as `<file>.corrupt-<time>` (durable)
 * before the caller rewrites `file` from what could be read: a crash in
 * between leaves the damaged file in place, to be salvaged again. Returns
 * the copy's path (also recorded in `recovered`).
 */
export async function keepDamagedCopy(file: string, bytes: Buffer, why: string, r: Recovery): Promise<string> {
  const target = await asideName(file, r);
  await writeFileDurable(target, bytes);
  r.recovered.push(target);
  r.logger.warn('index: copy of a damaged file kept for inspection', { file, copy: target, why });
  return target;
}

async function asideName(file: string, r: Recovery): Promise<string> {
  const stamp = r.now().toISOString().replace(/:/g, '');
  let target = `${file}.corrupt-${stamp}`;
  for (let n = 1; await exists(target); n++) target = `${file}.corrupt-${stamp}-${n}`;
  return target;
}

/** A file's bytes, undefined when it does not exist (other I/O errors propagate). */
export async function readIfPresent(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Delete `file`; a file already gone is fine. */
export async function unlinkIfPresent(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Delete temp files a crashed writer left in `dir`; returns the other names. */
export async function removeStaleTemps(dir: string): Promise<string[]> {
  const names = await readdir(dir);
  const keep: string[] = [];
  for (const n of names) {
    if (!n.startsWith(TEMP_PREFIX)) keep.push(n);
    else if (!writerAlive(n)) await unlink(join(dir, n)).catch(() => undefined);
  }
  return keep;
}

/** Whether the process that created temp file `name` (`.tmp-<file>-<pid>-<seq>`) still runs. */
function writerAlive(name: string): boolean {
  const pid = Number(/-(\d+)-\d+$/.exec(name)?.[1]);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  return processAlive(pid);
}
