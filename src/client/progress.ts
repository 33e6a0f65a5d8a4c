/**
 * Live view of `mcctl add --wait`: on a terminal, one progress bar per
 * active download (percent, size, speed, ETA) plus an overall bar, redrawn
 * in place with ANSI cursor movement; finished jobs are printed as permanent
 * lines above the bars (green done, red failed, unless NO_COLOR). When the
 * stream is not a TTY it prints only the plain lines (one per finished job)
 * and never an escape code.
 *
 * The overall measure is one rule, kept for the whole run: each URL counts
 * as one equal share, a finished job (done or failed) as a whole share and a
 * running one as the fraction of its bytes received when its size is known
 * (nothing while it is not). So the percentage never jumps between a byte
 * and a file scale as sizes become known. The overall ETA follows the same
 * measure (time so far x share left / share done); speeds are bytes per
 * second over the last few seconds.
 *
 * It writes to an injected stream ({write, isTTY, columns}) and takes an
 * injected clock, so tests drive it with a fake stream and read the text.
 */
import { formatSize, formatEta, formatRate } from '../core/util/format.js';
import type { AddItem, RpcEvent, JobInfo } from '../core/protocol/rpc.js';
import { renderAddItem, truncateLeft, retryText } from './render.js';
import { NO_PAINT, type Paint } from './color.js';

export interface OutStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const ESC = '\x1b[';
const HIDE_CURSOR = `${ESC}?25l`;
const SHOW_CURSOR = `${ESC}?25h`;
const CLEAR_DOWN = `${ESC}J`;
/** Speeds are averaged over this much recent time. */
const SPEED_WINDOW_MS = 5000;

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

/** Bytes per second from timed samples of a growing counter, over the last SPEED_WINDOW_MS. */
export class RateMeter {
  private readonly samples: Array<{ t: number; v: number }> = [];
  add(t: number, v: number): void {
    this.samples.push({ t, v });
    // Keep one sample at or before the window's start, so the window is always covered.
    while (this.samples.length > 2 && this.samples[1].t <= t - SPEED_WINDOW_MS) this.samples.shift();
  }
  /** undefined until two samples at least 200 ms apart exist. */
  rate(now: number): number | undefined {
    if (this.samples.length < 2) return undefined;
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    // A stalled transfer: no sample for a while means the speed is falling.
    const span = Math.max(last.t, now) - first.t;
    if (span < 200) return undefined;
    return ((last.v - first.v) * 1000) / span;
  }
}

interface JobView {
  url: string;
  bytes: number;
  totalBytes?: number;
  ended: boolean;
  meter: RateMeter;
  /** Set while the job waits for its next attempt. */
  retry?: JobInfo;
}

export interface AddProgressOptions {
  stream: OutStream;
  /** URLs this `add` asked for; events about other URLs are ignored. */
  urls: readonly string[];
  /** Redraw at most this often (ms). Default 100. */
  minIntervalMs?: number;
  now?: () => number;
  /** Colours for the finished lines (default none). */
  paint?: Paint;
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
  private readonly paint: Paint;
  private readonly totalFiles: number;
  private readonly overallMeter = new RateMeter();
  private readonly startedAt: number;
  private bytesReceived = 0;
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
    this.paint = o.paint ?? NO_PAINT;
    this.startedAt = this.now();
    this.overallMeter.add(this.startedAt, 0);
  }

  get isTTY(): boolean {
    return this.tty;
  }

  /** How many of our jobs have not ended yet (known from events). */
  get pending(): number {
    return Math.max(0, this.totalFiles - this.endedFiles);
  }

  /** Feed every pushed event; returns whether it was about one of our URLs. */
  onEvent(e: RpcEvent): boolean {
    if (this.stopped) return false;
    switch (e.type) {
      case 'job.queued': {
        if (!this.jobs.has(e.job.id) && !this.ours.has(normalizeUrl(e.job.url))) return false;
        const j = this.job(e.job.id, e.job.url);
        // Queued again after a failed attempt: show when and why it is retried.
        j.retry = retryText(e.job, this.now()) ? e.job : undefined;
        break;
      }
      case 'job.progress': {
        if (!this.jobs.has(e.jobId) && !this.ours.has(normalizeUrl(e.url))) return false;
        const j = this.job(e.jobId, e.url);
        const t = this.now();
        // A retry starts again from 0 bytes: only growth counts towards the speed.
        if (e.bytes > j.bytes) this.bytesReceived += e.bytes - j.bytes;
        else if (e.bytes < j.bytes) j.meter = new RateMeter();
        j.bytes = e.bytes;
        j.retry = undefined;
        j.meter.add(t, e.bytes);
        this.overallMeter.add(t, this.bytesReceived);
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
          if (e.record.fileSize > j.bytes) this.bytesReceived += e.record.fileSize - j.bytes;
          j.totalBytes = e.record.fileSize;
          j.bytes = e.record.fileSize;
          this.overallMeter.add(this.now(), this.bytesReceived);
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
      this.printLine(renderAddItem(it, this.paint));
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

  /** The overall share done, by the one rule in the header comment, in [0, 1]. */
  overallFraction(): number {
    if (this.totalFiles === 0) return 1;
    let share = this.endedFiles;
    for (const j of this.jobs.values()) if (!j.ended && j.totalBytes) share += Math.min(1, j.bytes / j.totalBytes);
    return Math.min(1, share / this.totalFiles);
  }

  /** The bar lines as they would be drawn now (no escape codes). */
  barLines(): string[] {
    // Under script(1) or a detached pty the width can be reported as 0: assume 80 then.
    const cols = Math.max(40, (this.stream.columns || 80) - 1);
    const now = this.now();
    const lines: string[] = [];
    const active = [...this.jobs.values()].filter((j) => !j.ended);
    const shown = active.slice(0, 8);
    // Narrow terminals keep percent, speed, ETA and the URL's end; the size column and a wider bar come with room.
    const withSize = cols >= 90;
    const barW = cols >= 100 ? Math.min(30, 10 + Math.floor((cols - 100) / 2)) : 10;
    for (const j of shown) {
      let fixed: string;
      if (j.retry) {
        fixed = `   - ${bar(0, barW)}  ${`try ${j.retry.attempts + 1}, ${retryText(j.retry, now) ?? 'retrying'}`.padEnd(withSize ? 37 : 19)}  `;
      } else {
        const frac = j.totalBytes ? j.bytes / j.totalBytes : NaN;
        const head = j.totalBytes ? `${percent(frac)} ${bar(frac, barW)}` : `   ? ${bar(0, barW)}`;
        const size = `${formatSize(j.bytes)}${j.totalBytes ? ` / ${formatSize(j.totalBytes)}` : ''}`;
        const speed = j.meter.rate(now);
        const eta = speed && j.totalBytes ? ((j.totalBytes - j.bytes) * 1000) / speed : undefined;
        fixed = `${head}  ${withSize ? `${size.padEnd(21)}  ` : ''}${(speed === undefined ? '' : formatRate(speed)).padStart(12)}  ${formatEta(eta).padStart(5)}  `;
      }
      lines.push(fixed + truncateLeft(j.url, cols - [...fixed].length));
    }
    if (active.length > shown.length) lines.push(`     … and ${active.length - shown.length} more downloading`);

    const frac = this.overallFraction();
    const allEnded = this.endedFiles >= this.totalFiles;
    // 100% only once every job has ended (a finished download may still be hashing/renaming).
    const shownFrac = allEnded ? frac : Math.min(frac, 0.99);
    const elapsed = now - this.startedAt;
    const eta = allEnded ? 0 : frac > 0 && elapsed > 0 ? (elapsed * (1 - frac)) / frac : undefined;
    const speed = this.overallMeter.rate(now);
    const parts = [
      `${percent(shownFrac)} ${bar(shownFrac, barW)}`,
      `${this.endedFiles}/${this.totalFiles} files`,
      formatSize(this.bytesReceived),
      speed === undefined ? '' : formatRate(speed),
      `ETA ${formatEta(eta)}`,
    ];
    let overall = parts.filter(Boolean).join('  ');
    // Too narrow: the byte count goes first, then the bar.
    if ([...overall].length > cols) overall = [parts[0], parts[1], parts[3], parts[4]].filter(Boolean).join('  ');
    if ([...overall].length > cols) overall = [percent(shownFrac), parts[1], parts[3], parts[4]].filter(Boolean).join('  ');
    lines.push(truncateLeft(overall, cols));
    return lines;
  }

  private job(id: string, url: string): JobView {
    let j = this.jobs.get(id);
    if (!j) {
      j = { url, bytes: 0, ended: false, meter: new RateMeter() };
      j.meter.add(this.now(), 0);
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
    this.printLine(renderAddItem(item, this.paint));
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
