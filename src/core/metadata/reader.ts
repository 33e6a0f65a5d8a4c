/**
 * Bounded random-access reads of one file for the metadata parsers.
 *
 * Invariants: every read is checked against a deadline, an abort signal, a
 * byte budget and a read-count budget, so no parser can read a whole large
 * file by accident or loop on a hostile one: it gets a MetadataError instead.
 * Reads go through one cached window, so walking many small headers in a row
 * costs one system call per window, while a large payload (an MP4 `mdat`, a
 * Matroska cluster) is skipped without being read.
 */
import fs from 'node:fs';
import { MetadataError } from './types.js';

export interface ReaderLimits {
  /** Wall-clock time (ms since epoch) after which reads fail. */
  deadline: number;
  signal?: AbortSignal;
  /** Bytes read from disk at most (default 16 MiB). */
  maxBytes?: number;
  /** Reads at most (default 4096). */
  maxReads?: number;
}

const WINDOW = 64 * 1024;

export class RangeReader {
  private win: Buffer = Buffer.alloc(0);
  private winPos = 0;
  private bytesRead = 0;
  private reads = 0;
  private readonly maxBytes: number;
  private readonly maxReads: number;

  private fh: fs.promises.FileHandle | undefined;
  /** The file's first bytes, known already (a download's head): reads inside them cost no I/O. */
  private head: Buffer = Buffer.alloc(0);
  private filePath = '';

  private constructor(
    fh: fs.promises.FileHandle | undefined,
    readonly size: number,
    private readonly limits: ReaderLimits,
  ) {
    this.fh = fh;
    this.maxBytes = limits.maxBytes ?? 16 * 1024 * 1024;
    this.maxReads = limits.maxReads ?? 4096;
  }

  /**
   * A reader that serves [0, head.length) from `head` and opens the file only
   * for a read beyond it. `size` must be the file's size (the download's byte count).
   */
  static withHead(filePath: string, size: number, head: Buffer, limits: ReaderLimits): RangeReader {
    const r = new RangeReader(undefined, size, limits);
    r.head = head.subarray(0, Math.min(head.length, size));
    r.filePath = filePath;
    return r;
  }

  static async open(filePath: string, limits: ReaderLimits): Promise<RangeReader> {
    const fh = await fs.promises.open(filePath, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new MetadataError('not a regular file');
      return new RangeReader(fh, st.size, limits);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Throws when the time is up or the caller gave up (parsers call it in long loops too). */
  check(): void {
    this.limits.signal?.throwIfAborted();
    if (Date.now() > this.limits.deadline) throw new MetadataError('time limit reached');
  }

  /**
   * Up to `len` bytes at `pos` (fewer at the end of the file, none past it).
   * The result may share memory with the window: copy what must outlive the next read.
   */
  async read(pos: number, len: number): Promise<Buffer> {
    if (!Number.isSafeInteger(pos) || pos < 0 || !Number.isSafeInteger(len) || len < 0) throw new MetadataError(`bad read ${pos}+${len}`);
    const end = Math.min(this.size, pos + len);
    if (pos >= end) return Buffer.alloc(0);
    if (end <= this.head.length) return this.head.subarray(pos, end);
    if (pos >= this.winPos && end <= this.winPos + this.win.length) return this.win.subarray(pos - this.winPos, end - this.winPos);
    this.check();
    if (!this.fh) {
      this.fh = await fs.promises.open(this.filePath, 'r');
      const st = await this.fh.stat();
      if (!st.isFile() || st.size !== this.size) throw new MetadataError('the file is not the one described');
    }
    const fh = this.fh;
    const want = Math.min(this.size - pos, Math.max(end - pos, WINDOW));
    if (++this.reads > this.maxReads) throw new MetadataError('too many reads');
    this.bytesRead += want;
    if (this.bytesRead > this.maxBytes) throw new MetadataError('read budget exceeded');
    const buf = Buffer.allocUnsafe(want);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await fh.read(buf, got, want - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    this.win = buf.subarray(0, got);
    this.winPos = pos;
    return this.win.subarray(0, Math.min(got, end - pos));
  }

  /** Exactly `len` bytes at `pos`, else a MetadataError (the file ends early). */
  async readExact(pos: number, len: number): Promise<Buffer> {
    const b = await this.read(pos, len);
    if (b.length !== len) throw new MetadataError(`file ends before byte ${pos + len}`);
    return b;
  }

  async close(): Promise<void> {
    await this.fh?.close();
  }
}

export const ascii = (b: Uint8Array, from: number, to: number): string => {
  let s = '';
  for (let i = from; i < to && i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
};
