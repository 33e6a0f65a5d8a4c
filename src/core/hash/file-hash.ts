/**
 * Streaming MD5 + SHA-256 of a file on disk (verify, repair checks). Reads in
 * large chunks so a multi-GiB file costs constant memory.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';

export interface FileHashes {
  md5: string;
  sha256: string;
  size: number;
}

const CHUNK = 1024 * 1024;

/**
 * Open flags for hashing a file that should be a regular file. O_NONBLOCK:
 * opening a FIFO for reading would otherwise wait for a writer forever,
 * holding a thread of libuv's small pool (and so stalling every download's
 * file I/O); with it the open returns at once and fstat tells what it is.
 * It changes nothing for regular files. (Windows has no FIFOs in the cache.)
 */
export const HASH_OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

/** What is at the path is not a regular file (a FIFO, a device, a directory): it is not the content asked about. */
export class NotRegularFileError extends Error {
  readonly code = 'ENOTREG';
  constructor(readonly path: string) {
    super(`not a regular file: ${path}`);
    this.name = 'NotRegularFileError';
  }
}

export function isNotRegularFile(e: unknown): e is NotRegularFileError {
  return e instanceof NotRegularFileError;
}

/**
 * Hash a file. Resolves `undefined` when the file does not exist (ENOENT or
 * ENOTDIR); rejects with NotRegularFileError when something else than a
 * regular file is there (checked on the opened fd, never blocking); every
 * other error (EACCES, EIO) rejects, so "missing" and "unreadable" are never
 * confused.
 */
export async function hashFile(path: string, opts: { signal?: AbortSignal } = {}): Promise<FileHashes | undefined> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(path, HASH_OPEN_FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
  try {
    if (!(await handle.stat()).isFile()) throw new NotRegularFileError(path);
    const md5 = createHash('md5');
    const sha = createHash('sha256');
    const buf = Buffer.allocUnsafe(CHUNK);
    let size = 0;
    for (;;) {
      opts.signal?.throwIfAborted();
      const { bytesRead } = await handle.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      const view = buf.subarray(0, bytesRead);
      md5.update(view);
      sha.update(view);
      size += bytesRead;
    }
    return { md5: md5.digest('hex'), sha256: sha.digest('hex'), size };
  } finally {
    await handle.close();
  }
}
