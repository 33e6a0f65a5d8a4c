/**
 * An origin resource for resume tests: serves a body with an ETag and a
 * Last-Modified, honours `Range` + `If-Range` (unless told to ignore
 * ranges), can cut the connection or stall after a number of bytes, and
 * logs every request (its Range) and every byte it wrote.
 */
import type http from 'node:http';

export interface RangeLogEntry {
  range?: string;
  ifRange?: string;
  status: number;
  start: number;
  sent: number;
}

export class RangeResource {
  body: Buffer;
  etag: string;
  lastModified = 'Wed, 21 Oct 2015 07:28:00 GMT';
  /** Answer 200 with the whole body whatever the Range. */
  ignoreRange = false;
  /** The next response destroys the socket once this many bytes of the body (absolute offset) are written. */
  cutAt: number | undefined;
  /** The next response stops sending (stays open) at this absolute offset. */
  stallAt: number | undefined;
  /** Throttle every response to about this many bytes per second (0 = none). */
  bytesPerSec = 0;
  readonly log: RangeLogEntry[] = [];

  constructor(body: Buffer, etag = '"r1"') {
    this.body = body;
    this.etag = etag;
  }

  get served(): number {
    return this.log.reduce((n, e) => n + e.sent, 0);
  }

  readonly handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const range = req.headers.range;
    const ifRange = req.headers['if-range'] as string | undefined;
    let start = 0;
    let status = 200;
    const m = range === undefined ? null : /^bytes=(\d+)-$/.exec(range);
    const validatorOk = ifRange === undefined || ifRange === this.etag || ifRange === this.lastModified;
    if (m && !this.ignoreRange && validatorOk) {
      start = Number(m[1]);
      status = 206;
    }
    const entry: RangeLogEntry = { status, start, sent: 0, ...(range ? { range } : {}), ...(ifRange ? { ifRange } : {}) };
    this.log.push(entry);
    const headers: Record<string, string | number> = {
      'content-type': 'image/png',
      etag: this.etag,
      'last-modified': this.lastModified,
      'accept-ranges': this.ignoreRange ? 'none' : 'bytes',
      'content-length': this.body.length - start,
    };
    if (status === 206) headers['content-range'] = `bytes ${start}-${this.body.length - 1}/${this.body.length}`;
    res.writeHead(status, headers);
    const cutAt = this.cutAt;
    const stallAt = this.stallAt;
    this.cutAt = undefined;
    this.stallAt = undefined;
    const step = 256 * 1024;
    const interval = this.bytesPerSec > 0 ? Math.max(1, Math.round((step / this.bytesPerSec) * 1000)) : 0;
    let off = start;
    const pump = (): void => {
      while (off < this.body.length) {
        if (res.destroyed) return;
        if (cutAt !== undefined && off >= cutAt) return void res.socket?.destroy();
        if (stallAt !== undefined && off >= stallAt) return; // silent: the client's stall timer fires
        const end = Math.min(off + step, this.body.length);
        entry.sent += end - off;
        const ok = res.write(this.body.subarray(off, end));
        off = end;
        if (interval > 0) return void setTimeout(pump, interval);
        if (!ok) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  };
}
