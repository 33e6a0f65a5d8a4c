/**
 * Live view of `mcctl add --wait`: on a terminal, one progress bar per
 * active download plus an overall bar (bytes and files), redrawn in place
 * with ANSI cursor movement; finished jobs are printed as permanent lines
 * above the bars. When the stream is not a TTY it prints only the plain
 * lines (one per finished job) and never an escape code.
 *
 * It writes to an injected stream ({write, isTTY, columns}) and takes an
 * injected clock, so tests drive it with a fake stream and read the text.
 */
import { formatSize } from '../core/util/format.js';
import type { AddItem, RpcEvent } from '../core/protocol/rpc.js';
import { renderAddItem, truncateLeft } from './render.js';

export interface OutStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const ESC = '\x1b[';
const HIDE_CURSOR = `${ESC}?25l`;
const SHOW_CURSOR = `${ESC}?25h`;
const CLEAR_DOWN = `${ESC}J`;

/** URL as the daemon reports it (WHATWG-normalised), for matching events to our request. */
export function normalizeUrl(u: string): string {
  try {
    return new URL(u.trim()).href;
  } catch {
    return u.trim();
  }
}

/** `[#####.....]` of `width` cells for a fraction in [0,1] (clamped). */
export function bar(fraction: number, width: number): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export function percent(fraction: number): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  return `${Math.floor(f * 100)}%`.padStart(4);
}

interface JobView {
  url: string;
  bytes: number;
  totalBytes?: number;
  ended: boolean;
}

export interface AddProgressOptions {
  stream: OutStream;
  /** URLs this `add` asked for; events about other URLs are ignored. */
  urls: readonly string[];
  /** Redraw at most this often (ms). Default 100. */
  minIntervalMs?: number;
  now?: () => number;
}

export class AddProgress {
  private readonly stream: OutStream;
  private readonly tty: boolean;
  private readonly ours: Set<string>;
  private readonly jobs = new Map<string, JobView>();
  private readonly printedJobs = new Set<string>();
  private readonly printedUrls = new Set<string>();
  private readonly minIntervalMs: number;
  private readonly now: () => number;
  private readonly totalFiles: number;
  private endedFiles = 0;
  private drawnLines = 0;
  private lastDraw = 0;
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private stopped = false;

  constructor(o: AddProgressOptions) {
    this.stream = o.stream;
    this.tty = o.stream.isTTY === true;
    this.ours = new Set(o.urls.map(normalizeUrl));
    this.totalFiles = this.ours.size;
    this.minIntervalMs = o.minIntervalMs ?? 100;
    this.now = o.now ?? Date.now;
  }

  get isTTY(): boolean {
    return this.tty;
  }

  /** Feed every pushed event; returns whether it was about one of our URLs. */
  onEvent(e: RpcEvent): boolean {
    if (this.stopped) return false;
    switch (e.type) {
      case 'job.queued':
        if (!this.ours.has(normalizeUrl(e.job.url))) return false;
        this.job(e.job.id, e.job.url);
        break;
      case 'job.progress': {
        if (!this.jobs.has(e.jobId) && !this.ours.has(normalizeUrl(e.url))) return false;
        const j = this.job(e.jobId, e.url);
        j.bytes = e.bytes;
        if (e.totalBytes !== undefined) j.totalBytes = e.totalBytes;
        break;
      }
      case 'job.done':
      case 'job.failed': {
        if (!this.jobs.has(e.job.id) && !this.ours.has(normalizeUrl(e.job.url))) return false;
        const j = this.job(e.job.id, e.job.url);
        const item: AddItem =
          e.type === 'job.done'
            ? { url: e.job.url, state: 'done', jobId: e.job.id, record: e.record }
            : { url: e.job.url, state: 'failed', jobId: e.job.id, error: e.error };
        if (e.type === 'job.done') {
          j.totalBytes = e.record.fileSize;
          j.bytes = e.record.fileSize;
        }
        this.end(j, item);
        break;
      }
      default:
        return false;
    }
    this.schedule();
    return true;
  }

  /** The final reply: print what no event told us about (cached URLs, invalid ones), then stop. */
  finish(items: readonly AddItem[]): void {
    for (const it of items) {
      if ((it.jobId && this.printedJobs.has(it.jobId)) || this.printedUrls.has(normalizeUrl(it.url))) continue;
      this.printLine(renderAddItem(it));
      if (it.jobId) this.printedJobs.add(it.jobId);
      this.printedUrls.add(normalizeUrl(it.url));
    }
    this.stop();
  }

  /** Remove the bars (the permanent lines stay) and give the cursor back. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.tty && this.started) this.stream.write(this.eraseBars() + SHOW_CURSOR);
    this.drawnLines = 0;
  }

  /** The bar lines as they would be drawn now (no escape codes). */
  barLines(): string[] {
    // Under script(1) or a detached pty the width can be reported as 0: assume 80 then.
    const cols = Math.max(40, (this.stream.columns || 80) - 1);
    const lines: string[] = [];
    const active = [...this.jobs.values()].filter((j) => !j.ended);
    const shown = active.slice(0, 8);
    // The URL is what tells downloads apart: the bar gives way to it on narrow terminals.
    const barW = Math.max(10, Math.min(30, cols - 70));
    for (const j of shown) {
      const frac = j.totalBytes ? j.bytes / j.totalBytes : NaN;
      const head = j.totalBytes ? `${percent(frac)} ${bar(frac, barW)}` : `   ? ${bar(0, barW)}`;
      const size = `${formatSize(j.bytes)}${j.totalBytes ? ` / ${formatSize(j.totalBytes)}` : ''}`;
      const fixed = `${head}  ${size.padEnd(21)}  `;
      lines.push(fixed + truncateLeft(j.url, cols - [...fixed].length));
    }
    if (active.length > shown.length) lines.push(`     … and ${active.length - shown.length} more downloading`);
    let bytes = 0;
    let total = 0;
    let unknown = false;
    for (const j of this.jobs.values()) {
      bytes += j.bytes;
      if (j.totalBytes !== undefined) total += j.totalBytes;
      else unknown = true;
    }
    const files = this.totalFiles ? this.endedFiles / this.totalFiles : 0;
    // Bytes are the finer measure, but only while every size seen so far is known.
    const allEnded = this.endedFiles >= this.totalFiles;
    let frac = total > 0 && !unknown ? Math.min(bytes / total, 1) : files;
    // 100% only once every job has ended (a finished download may still be hashing/renaming).
    if (!allEnded) frac = Math.min(frac, 0.99);
    const overall = `${percent(frac)} ${bar(frac, barW)}  ${formatSize(bytes)}${total && !unknown ? ` / ${formatSize(total)}` : ''}  ${this.endedFiles}/${this.totalFiles} files`;
    lines.push(truncateLeft(overall, cols));
    return lines;
  }

  private job(id: string, url: string): JobView {
    let j = this.jobs.get(id);
    if (!j) {
      j = { url, bytes: 0, ended: false };
      this.jobs.set(id, j);
    }
    return j;
  }

  private end(j: JobView, item: AddItem): void {
    if (j.ended) return;
    j.ended = true;
    this.endedFiles++;
    if (item.jobId) this.printedJobs.add(item.jobId);
    this.printedUrls.add(normalizeUrl(item.url));
    this.printLine(renderAddItem(item));
  }

  /** A permanent line: above the bars on a TTY, a plain line otherwise. */
  private printLine(line: string): void {
    if (!this.tty) {
      this.stream.write(line + '\n');
      return;
    }
    this.stream.write(this.eraseBars() + line + '\n');
    this.drawnLines = 0;
    if (!this.stopped) this.draw();
  }

  private eraseBars(): string {
    return this.drawnLines > 0 ? `\r${ESC}${this.drawnLines}A${CLEAR_DOWN}` : '';
  }

  private schedule(): void {
    if (!this.tty || this.stopped || this.timer) return;
    const wait = this.minIntervalMs - (this.now() - this.lastDraw);
    if (wait <= 0) return this.draw();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.stopped) this.draw();
    }, wait);
  }

  private draw(): void {
    const lines = this.barLines();
    const prefix = this.started ? '' : HIDE_CURSOR;
    this.started = true;
    this.stream.write(prefix + this.eraseBars() + lines.join('\n') + '\n');
    this.drawnLines = lines.length;
    this.lastDraw = this.now();
  }
}

/**
 * One line redrawn in place (`sweep --wait` on a terminal). Writes nothing at
 * all when the stream is not a TTY.
 */
export class StatusLine {
  private shown = false;
  constructor(private readonly stream: OutStream) {}

  set(text: string): void {
    if (this.stream.isTTY !== true) return;
    const cols = Math.max(20, (this.stream.columns || 80) - 1);
    this.stream.write(`\r${ESC}K${truncateLeft(text, cols)}`);
    this.shown = true;
  }

  clear(): void {
    if (!this.shown) return;
    this.stream.write(`\r${ESC}K`);
    this.shown = false;
  }
}
