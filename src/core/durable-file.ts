/**
 * A lowdb adapter that survives crashes and power loss.
 *
 * lowdb's own JSONFile (steno) renames a temp file over the target, which is
 * atomic, but never fsyncs: after a power cut the renamed file may be empty or
 * truncated. This adapter:
 *   1. stringifies synchronously (so the bytes are a snapshot of `data` at the
 *      moment write() is called, whatever the caller mutates afterwards),
 *   2. writes them to a unique temp file in the SAME directory (rename is only
 *      atomic within one filesystem),
 *   3. fsyncs the temp file, renames it over the target, fsyncs the directory.
 * Invariant: at every instant the target path holds either the complete old
 * content or the complete new content, never a mix, and once write() resolves
 * the new content is on stable storage.
 *
 * read() returns null for a missing file (lowdb keeps its default data) and
 * throws DurableFileParseError — distinct from I/O errors — for content that
 * does not parse, so the caller can move the file aside and rebuild instead of
 * dying. DurableJSONFile is compact JSON; DurableDataFile takes any text
 * format (the index shards are JSON lines).
 */
import { open, readFile, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Adapter } from 'lowdb';
import { renameWithRetry } from './store.js';

/** The file exists but is not valid JSON (truncated, empty, garbage). */
export class DurableFileParseError extends Error {
  readonly code = 'EJSONPARSE';
  readonly path: string;
  constructor(path: string, cause: unknown) {
    super(`${path}: does not parse: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'DurableFileParseError';
    this.path = path;
  }
}

export function isDurableFileParseError(e: unknown): e is DurableFileParseError {
  return e instanceof DurableFileParseError;
}

/** Prefix of every temp file this module creates; stale ones can be removed at open. */
export const TEMP_PREFIX = '.tmp-';

let tempSeq = 0;

/** How a DurableDataFile turns text into data and back (lowdb's DataFile has the same shape). */
export interface DataFormat<T> {
  /** Throwing means "damaged content": read() turns it into DurableFileParseError. */
  parse(text: string): T;
  stringify(data: T): string;
}

/** lowdb adapter for any text format, written durably (see module comment). */
export class DurableDataFile<T> implements Adapter<T> {
  readonly filename: string;
  private readonly format: DataFormat<T>;
  private readonly syncDir: boolean;

  /**
   * `syncDir: false` leaves the directory fsync to the caller, who writes many
   * files into one directory and fsyncs it once (`fsyncDir`) before calling
   * the batch durable.
   */
  constructor(filename: string, format: DataFormat<T>, opts: { syncDir?: boolean } = {}) {
    this.filename = filename;
    this.format = format;
    this.syncDir = opts.syncDir ?? true;
  }

  async read(): Promise<T | null> {
    let text: string;
    try {
      // Bytes, then one decode: readFile(path, 'utf8') streams through a
      // StringDecoder, measurably slower for the index's megabyte shards.
      text = (await readFile(this.filename)).toString('utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    try {
      return this.format.parse(text);
    } catch (e) {
      throw new DurableFileParseError(this.filename, e);
    }
  }

  async write(data: T): Promise<void> {
    // Serialize before the first await: the written bytes are this instant's state.
    const text = this.format.stringify(data);
    await writeFileDurable(this.filename, text, { syncDir: this.syncDir });
  }
}

/** Compact JSON (one JSON document per file). */
export class DurableJSONFile<T> extends DurableDataFile<T> {
  constructor(filename: string) {
    super(filename, { parse: (text) => JSON.parse(text) as T, stringify: (data) => JSON.stringify(data) });
  }
}

/** Atomically replace `filename` with `text`, durable once resolved (see module comment). */
export async function writeFileDurable(filename: string, text: string, opts: { syncDir?: boolean } = {}): Promise<void> {
  const dir = dirname(filename);
  const tmp = join(dir, `${TEMP_PREFIX}${basename(filename)}-${process.pid}-${++tempSeq}`);
  let renamed = false;
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await renameWithRetry(tmp, filename);
    renamed = true;
    if (opts.syncDir !== false) await fsyncDir(dir);
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}


/**
 * fsync a directory so a rename inside it is durable. Windows cannot open a
 * directory for fsync (EPERM/EISDIR); NTFS journals the rename itself there.
 */
export async function fsyncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
  } catch (e) {
    if (process.platform === 'win32') return;
    throw e;
  }
  try {
    await fh.sync();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EPERM' && code !== 'EISDIR') throw e;
  } finally {
    await fh.close();
  }
}
