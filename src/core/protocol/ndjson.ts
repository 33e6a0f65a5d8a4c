/**
 * Newline-delimited framing on raw bytes, shared by the daemon's socket
 * server and the client.
 *
 * A frame ends only at a 0x0a byte of the raw stream, so a line split across
 * packets, or a multi-byte UTF-8 character split across packets, is put back
 * together before anything is decoded. A line longer than `maxBytes` is
 * reported as soon as that is known (before the rest of it arrives), so a
 * peer cannot make us buffer without bound.
 */
export type SplitResult =
  | { kind: 'ok' }
  /** `onLine` asked to stop; `rest` (copied) holds the bytes after that line, to be pushed again later. */
  | { kind: 'stopped'; rest: Buffer | undefined }
  /** A line exceeded maxBytes; the splitter dropped what it held. */
  | { kind: 'too-long' };

const OK: SplitResult = { kind: 'ok' };
const TOO_LONG: SplitResult = { kind: 'too-long' };

export class LineSplitter {
  private parts: Buffer[] = [];
  private held = 0;

  constructor(readonly maxBytes: number) {}

  /** Bytes of an unfinished line held so far. */
  get pendingBytes(): number {
    return this.held;
  }

  /**
   * Feed one chunk. `onLine` gets each complete line without its "\n" (a view
   * that may share memory with `chunk`: decode it before returning) and may
   * return false to stop at that line.
   */
  push(chunk: Buffer, onLine: (line: Buffer) => boolean | void): SplitResult {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.held + piece.length > this.maxBytes) {
        this.reset();
        return TOO_LONG;
      }
      const line = this.held ? Buffer.concat([...this.parts, piece], this.held + piece.length) : piece;
      this.parts = [];
      this.held = 0;
      if (onLine(line) === false) return { kind: 'stopped', rest: start < chunk.length ? Buffer.from(chunk.subarray(start)) : undefined };
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.held += rest.length;
      if (this.held > this.maxBytes) {
        this.reset();
        return TOO_LONG;
      }
      // Copy: `chunk` may be a slab shared with later reads.
      this.parts.push(Buffer.from(rest));
    }
    return OK;
  }

  /** Drop any partial line. */
  reset(): void {
    this.parts = [];
    this.held = 0;
  }
}
