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
 * Hash a file. Resolves `undefined` when the file does not exist (ENOENT or
 * ENOTDIR); every other error (EACCES, EIO) rejects, so "missing" and
 * "unreadable" are never confused.
 */
export async function hashFile(path: string, opts: { signal?: AbortSignal } = {}): Promise<FileHashes | undefined> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
  try {
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
