/**
 * Reading one inbox file safely and with bounded memory.
 *
 * The inbox is written by other users (a shared, group-writable folder), so
 * nothing about a name in it is trusted:
 * - The file is opened with O_NOFOLLOW (a symlink is refused, never read
 *   through) and O_NONBLOCK (a FIFO or device cannot park the open), and the
 *   checks are made on the opened descriptor (fstat), not on the path: it must
 *   be a regular file with a single link (a hard link to a file the writer
 *   cannot read is refused too).
 * - It is read in fixed-size chunks; lines are parsed as they come
 *   (UrlsLineSplitter) and handed on in groups, so memory is one chunk plus
 *   one group whatever the file's size.
 * - Size and line caps are checked before anything is enqueued: bytes from
 *   fstat, lines by a counting pass that stops at the cap.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { ErrorCode } from '../../core/errors.js';
import { parseUrlsLine, UrlsLineSplitter, type UrlsLine } from '../../core/util/urls-file.js';

const READ_CHUNK = 64 * 1024;
const C = fs.constants;
/** O_NOFOLLOW/O_NONBLOCK do not exist on Windows; there the checks on the opened handle remain. */
const OPEN_FLAGS = C.O_RDONLY | (C.O_NOFOLLOW ?? 0) | (C.O_NONBLOCK ?? 0) | (C.O_NOCTTY ?? 0);

/** A file the inbox will not read: moved to processed/ with a one-row report saying why. */
export class RefusedFile extends Error {
  constructor(
    readonly code: ErrorCode,
    readonly reason: string,
  ) {
    super(reason);
    this.name = 'RefusedFile';
  }
}

/** What a stability look records (from lstat: a symlink is looked at, not through). */
export interface Look {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  dev: number;
  ino: number;
  regular: boolean;
  kind: string;
}

export function kindOf(st: fs.Stats): string {
  if (st.isFile()) return 'regular file';
  if (st.isSymbolicLink()) return 'symbolic link';
  if (st.isDirectory()) return 'directory';
  if (st.isFIFO()) return 'FIFO';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'device';
  return 'special file';
}

export async function look(p: string): Promise<Look | undefined> {
  try {
    const st = await fs.promises.lstat(p);
    return { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, dev: st.dev, ino: st.ino, regular: st.isFile(), kind: kindOf(st) };
  } catch {
    return undefined;
  }
}

/**
 * A batch's identity: the same file (inbox, name, size, mtime, inode) seen
 * again — after a failed attempt or a crash — is the same batch.
 */
export function batchIdOf(inbox: string, name: string, l: Pick<Look, 'size' | 'mtimeMs' | 'dev' | 'ino'>): string {
  return crypto.createHash('sha256').update(`${inbox}\0${name}\0${l.size}\0${l.mtimeMs}\0${l.dev}:${l.ino}`).digest('hex').slice(0, 32);
}

/** Open for reading without following links or blocking; the descriptor must be a lone regular file. */
export async function openInboxFile(p: string): Promise<{ fh: FileHandle; st: fs.Stats }> {
  let fh: FileHandle;
  try {
    fh = await fs.promises.open(p, OPEN_FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // ELOOP (Linux, macOS) / EMLINK (FreeBSD): the last component is a symlink.
    if (code === 'ELOOP' || code === 'EMLINK') throw new RefusedFile('E_BAD_REQUEST', 'not a regular file (a symbolic link); symbolic links are never followed');
    // ENXIO: a socket, or a FIFO opened for writing only; EACCES etc. go to the caller.
    if (code === 'ENXIO' || code === 'ENODEV') throw new RefusedFile('E_BAD_REQUEST', 'not a regular file');
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new RefusedFile('E_BAD_REQUEST', `not a regular file (a ${kindOf(st)})`);
    if (st.nlink > 1) throw new RefusedFile('E_BAD_REQUEST', `a regular file with ${st.nlink} hard links; drop a copy, not a link`);
    return { fh, st };
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}

/** Read the whole descriptor in chunks from offset 0; returns the byte count. */
async function readChunks(fh: FileHandle, onChunk: (b: Buffer) => void | Promise<void>): Promise<number> {
  const buf = Buffer.allocUnsafe(READ_CHUNK);
  let pos = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) return pos;
    pos += bytesRead;
    await onChunk(buf.subarray(0, bytesRead));
  }
}

/** Non-blank, non-comment lines, counting stops once past `max` (returns max + 1 then). */
export async function countUrlLines(fh: FileHandle, max: number): Promise<{ lines: number; bytes: number }> {
  let lines = 0;
  const s = new UrlsLineSplitter(() => void lines++);
  const stop = new Error('past the cap');
  let bytes = 0;
  try {
    bytes = await readChunks(fh, (b) => {
      s.push(b);
      if (lines > max) throw stop;
    });
    s.end();
  } catch (e) {
    if (e !== stop) throw e;
  }
  return { lines: Math.min(lines, max + 1), bytes };
}

/**
 * Parse the file and hand its lines on in groups of about `groupSize`
 * (awaited, so the consumer's pace bounds what is held). Returns the bytes read.
 */
export async function streamUrlLines(fh: FileHandle, groupSize: number, onGroup: (lines: UrlsLine[]) => Promise<void>): Promise<number> {
  let group: UrlsLine[] = [];
  const s = new UrlsLineSplitter((raw, line, tooLong) => group.push(parseUrlsLine(raw, line, tooLong)));
  const flush = async (): Promise<void> => {
    if (group.length === 0) return;
    const g = group;
    group = [];
    await onGroup(g);
  };
  const bytes = await readChunks(fh, async (b) => {
    s.push(b);
    if (group.length >= groupSize) await flush();
  });
  s.end();
  await flush();
  return bytes;
}
