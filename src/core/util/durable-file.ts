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
import { fstatSync } from 'node:fs';
import { open, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Adapter } from 'lowdb';
import { renameWithRetry } from '../content/store.js';

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

/** Atomically replace `filename` with `text` (or bytes), durable once resolved (see module comment). */
export async function writeFileDurable(filename: string, text: string | Uint8Array, opts: { syncDir?: boolean } = {}): Promise<void> {
  const dir = dirname(filename);
  const tmp = join(dir, `${TEMP_PREFIX}${basename(filename)}-${process.pid}-${++tempSeq}`);
  let renamed = false;
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(text);
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
 * An append-only file (the index journal), written durably without ever
 * creating a file per write: the file is created once (and its directory
 * fsynced once); each append is one positional write of the caller's bytes,
 * then fdatasync. Anything after the last acknowledged append (the tail of
 * an append a crash or an error cut short) is truncated away before the next
 * append, so new data never glues onto garbage. Invariant: once append()
 * resolves, the file holds every byte of every acknowledged append, in order.
 * One writer at a time (the caller serializes appends).
 */
export class DurableAppendFile {
  readonly filename: string;
  private fh: FileHandle | undefined;
  private exists: boolean;
  /** Bytes acknowledged so far: where the next append goes. */
  private length: number;
  /** Size of the file as far as known; more than `length` when a tail must be cut first. */
  private size: number;

  /**
   * `existing`: the file as found (at open) — its size and how much of it is
   * good (`validLength`); omitted when there is no file yet.
   */
  constructor(filename: string, existing?: { size: number; validLength: number }) {
    this.filename = filename;
    this.exists = existing !== undefined;
    this.length = existing?.validLength ?? 0;
    this.size = existing?.size ?? 0;
  }

  /** Bytes acknowledged (the next append's offset). */
  get bytes(): number {
    return this.length;
  }

  /** Whether a file is there (created, or found at open). */
  get present(): boolean {
    return this.exists;
  }

  /**
   * Append the bytes `make(atStart)` returns (atStart: the file is empty, so
   * they open it, e.g. with a header); durable once resolved. Rejects with
   * code ENOENT when the file or its directory was deleted under us.
   */
  async append(make: (atStart: boolean) => Buffer): Promise<number> {
    const n = await this.appendUnlessDeleted(make);
    if (n === 'deleted') throw Object.assign(new Error(`${this.filename} was deleted`), { code: 'ENOENT' });
    return n;
  }

  /**
   * append(), but a file deleted while we held it open is an outcome, not an
   * error: resolves 'deleted' with nothing written and the handle released
   * (the next append opens the name again). Opening a missing file or
   * directory still rejects with the system's ENOENT.
   */
  async appendUnlessDeleted(make: (atStart: boolean) => Buffer): Promise<number | 'deleted'> {
    const fh = await this.handle();
    // A file deleted while we hold it open would swallow appends silently.
    // (fstatSync: one cheap syscall; the promise version's thread-pool round
    // trip cost more than the append's write.)
    if (fstatSync(fh.fd).nlink === 0) {
      await this.release();
      return 'deleted';
    }
    if (this.size !== this.length) {
      await fh.truncate(this.length);
      this.size = this.length;
    }
    const data = make(this.length === 0);
    try {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await fh.write(data, done, data.length - done, this.length + done);
        done += bytesWritten;
      }
      await fh.datasync();
    } catch (e) {
      // Part of it may be on disk: cut it away before the next append.
      this.size = Number.NaN;
      throw e;
    }
    this.length += data.length;
    this.size = this.length;
    return data.length;
  }

  /**
   * Close the handle and forget the file (it was renamed away or deleted by
   * the caller): the next append creates a new one.
   */
  async detach(): Promise<void> {
    await this.release();
    this.exists = false;
    this.length = 0;
    this.size = 0;
  }

  async close(): Promise<void> {
    await this.release();
  }

  private async handle(): Promise<FileHandle> {
    if (this.fh) return this.fh;
    if (this.exists) {
      this.fh = await open(this.filename, 'r+');
    } else {
      this.fh = await open(this.filename, 'wx', 0o644);
      this.exists = true;
      this.length = 0;
      this.size = 0;
      try {
        // Once per file: makes the new name durable.
        await fsyncDir(dirname(this.filename));
      } catch (e) {
        await this.release();
        await unlink(this.filename).catch(() => undefined);
        this.exists = false;
        throw e;
      }
    }
    return this.fh;
  }

  private async release(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => undefined);
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
