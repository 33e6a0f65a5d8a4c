/**
 * Inbox folders: `*.urls` files dropped into watched
 * folders become jobs, then move to `<inbox>/processed/`, and a report is
 * written beside them once every job has ended.
 *
 * Intake never depends on one watcher event:
 * - chokidar (depth 0, ignoreInitial) reports new names promptly, and our own
 *   readdir of every inbox runs at start and then every `rescanMs`. A watcher
 *   can miss an event (chokidar drops one that arrives while a re-read of the
 *   folder outlasts its 1 s throttle, e.g. on a busy machine); the rescan
 *   turns that into a short delay, never a lost batch.
 * - A file is read only once stable: size and mtime unchanged across two
 *   looks `stabilityMs` apart. A file renamed into place after its last
 *   write (ctime > mtime), or already quiet for `stabilityMs` when first seen,
 *   only gets a short second look.
 *
 * Hostile input (inbox-file.ts, inbox-dir.ts): symlinks, FIFOs and anything
 * but a lone regular file are refused without being read; processed/ is used
 * only through a checked descriptor; an invalid line is echoed as a short
 * escaped prefix. Files over `maxBytes` / `maxLines` are refused whole.
 * Refused files move to processed/ with a one-row report saying why.
 *
 * Crash- and retry-safe, in this order: every URL durably enqueued (groups of
 * `chunkSize`, streamed from the file), the batch (file → per-line job or
 * error) durably recorded, then the file moved. A batch's id comes from the
 * file's identity (inbox, name, size, mtime, inode): a failed attempt (disk
 * full) that is retried reuses the jobs it already created for each line
 * (found by their `<file>:<line>` source), and a restart that finds the
 * recorded batch only moves the file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { ErrorCode } from '../../core/errors.js';
import { fsyncDir } from '../../core/util/durable-file.js';
import type { Logger } from '../../core/util/logger.js';
import type { RpcEvent } from '../../core/protocol/rpc.js';
import { echoPrefix, type UrlsLine } from '../../core/util/urls-file.js';
import { DEFAULTS } from '../config.js';
import { ensureProcessedDir, PROCESSED_DIR, processedPathOf, withProcessedDir } from './processed-dir.js';
import { countUrlLines, look, openInboxFile, RefusedFile, streamUrlLines, type Look } from './inbox-file.js';
import type { BatchIdent, BatchLine, BatchRecord, JobStore } from '../jobs/job-store.js';
import { LocalBatchStore, type BatchStore } from './batch-store.js';
import { REPORT_SUFFIX } from './report.js';
import { BatchReports } from './batch-reports.js';
import type { EnqueueItem, Scheduler } from '../jobs/scheduler.js';

export { PROCESSED_DIR } from './processed-dir.js';
export const INBOX_PRIORITY = 10;
/** Default caps of one file; beyond either the file is refused whole (a report says so). */
export const INBOX_MAX_LINES = DEFAULTS.inboxMaxLines;
export const INBOX_MAX_BYTES = DEFAULTS.inboxMaxBytes;

export interface InboxOptions {
  dirs: string[];
  scheduler: Scheduler;
  store: JobStore;
  /** Where batches are kept (default: `store`, files in the daemon's state dir; cluster mode: PostgreSQL). */
  batches?: BatchStore;
  /**
   * Make the scheduler answer get() for jobs it does not know (queued before
   * a restart, run by any daemon) and raise their job.done / job.failed
   * (cluster mode: ClusterScheduler.adopt).
   */
  adoptJobs?: (ids: string[]) => Promise<void>;
  logger: Logger;
  /** Quiet time a file written in place needs before it is read (default 1000 ms). */
  stabilityMs?: number;
  /** URLs per enqueue call (default 250: one durable write per call, and a short slice of the event loop). */
  chunkSize?: number;
  /** First delay before retrying a file whose intake failed, e.g. disk full; doubles up to 16x (default 5000 ms). */
  retryMs?: number;
  /** Period of the readdir that catches what the watcher missed (default 2000 ms). */
  rescanMs?: number;
  /** URL lines (non-blank, non-comment) one file may hold (default INBOX_MAX_LINES). */
  maxLines?: number;
  /** Bytes one file may hold (default INBOX_MAX_BYTES). */
  maxBytes?: number;
  /** How long close() waits for a file being taken to finish its current step (default 5000 ms). */
  closeWaitMs?: number;
  now?: () => number;
}


/** Names the inbox looks at: `*.urls`, no dotfiles. */
export function isInboxCandidate(name: string): boolean {
  return name.endsWith('.urls') && !name.startsWith('.') && name !== PROCESSED_DIR;
}

function ignoredByWatcher(root: string, p: string): boolean {
  if (path.resolve(p) === root) return false;
  const name = path.basename(p);
  return name.startsWith('.') || name.endsWith('.tmp') || name.endsWith('.part') || name === PROCESSED_DIR;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.promises.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** The file changed between the stability check and the read: check again. */
class ChangedWhileRead extends Error {}

function identOf(l: Pick<Look, 'size' | 'mtimeMs' | 'dev' | 'ino'>): BatchIdent {
  return { size: l.size, mtimeMs: l.mtimeMs, dev: l.dev, ino: l.ino };
}

function sameIdent(a: BatchIdent, b: BatchIdent): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.dev === b.dev && a.ino === b.ino;
}

export class Inbox {
  private readonly dirs: string[];
  private readonly scheduler: Scheduler;
  private readonly store: JobStore;
  private readonly batches: BatchStore;
  private readonly log: Logger;
  private readonly stabilityMs: number;
  private readonly chunkSize: number;
  private readonly retryMs: number;
  private readonly rescanMs: number;
  private readonly maxLines: number;
  private readonly maxBytes: number;
  private readonly closeWaitMs: number;
  private readonly now: () => number;
  private readonly watchers: FSWatcher[] = [];
  private rescanTimer: NodeJS.Timeout | undefined;
  /** Files under a stability check or waiting to be processed. */
  private readonly pending = new Map<string, NodeJS.Timeout | undefined>();
  /** Failed attempts per file, for the retry back-off. */
  private readonly failures = new Map<string, number>();
  /** Batches whose intake started but is not recorded yet: the first sequence number of their jobs. */
  private readonly attempts = new Map<string, number>();
  private chain: Promise<void> = Promise.resolve();
  /** Moved batches waiting for their jobs, and their reports. */
  private readonly reports: BatchReports;
  private closed = false;
  /** Files of a shared folder another daemon has claimed (logged once each). */
  private readonly othersFiles = new Set<string>();
  private readonly onEvent = (ev: RpcEvent): void => {
    if (ev.type === 'job.done' || ev.type === 'job.failed') this.reports.jobEnded(ev.job.id);
  };

  constructor(o: InboxOptions) {
    this.dirs = [...new Set(o.dirs.map((d) => path.resolve(d)))];
    this.scheduler = o.scheduler;
    this.store = o.store;
    this.batches = o.batches ?? new LocalBatchStore(o.store);
    this.log = o.logger;
    this.stabilityMs = o.stabilityMs ?? 1000;
    this.chunkSize = Math.max(1, o.chunkSize ?? 250);
    this.retryMs = o.retryMs ?? 5000;
    this.rescanMs = Math.max(50, o.rescanMs ?? 2000);
    this.maxLines = Math.max(1, o.maxLines ?? INBOX_MAX_LINES);
    this.maxBytes = Math.max(1, o.maxBytes ?? INBOX_MAX_BYTES);
    this.closeWaitMs = o.closeWaitMs ?? 5000;
    this.now = o.now ?? Date.now;
    this.reports = new BatchReports({ scheduler: this.scheduler, batches: this.batches, logger: this.log, retryMs: this.retryMs, adoptJobs: o.adoptJobs, closed: () => this.closed });
  }

  async start(): Promise<void> {
    this.scheduler.on('event', this.onEvent);
    for (const dir of this.dirs) {
      await fs.promises.mkdir(dir, { recursive: true });
      await ensureProcessedDir(dir).catch((e: unknown) => this.log.error('inbox processed/ folder not usable; files stay in the inbox until it is', { dir, error: String(e) }));
    }
    await this.batches.load();
    // Own claims of a shared folder whose intake a crash cut short: kept while the same file is
    // still in the inbox (the rescan takes it again), dropped when it is gone.
    for (const c of this.batches.claims()) {
      const now = await look(c.sourcePath);
      if (!now || !c.ident || !sameIdent(identOf(now), c.ident)) await this.batches.release(c.id);
    }
    // Batches a failure left between "recorded" and "moved", then reports still owed.
    for (const b of this.batches.batches()) if (b.state === 'enqueued') await this.resume(b).catch((e: unknown) => this.log.error('inbox batch not resumed; will retry at the next look', { batch: b.id, error: String(e) }));
    for (const b of this.batches.batches()) await this.reports.track(b);
    for (const dir of this.dirs) {
      const w = watch(dir, {
        depth: 0,
        ignoreInitial: true,
        followSymlinks: false,
        ignored: (p: string) => ignoredByWatcher(dir, p),
      });
      w.on('add', (p: string) => this.consider(p));
      w.on('change', (p: string) => this.consider(p));
      w.on('error', (e: unknown) => this.log.error('inbox watcher error', { dir, error: String(e) }));
      this.watchers.push(w);
      await new Promise<void>((resolve) => w.once('ready', () => resolve()));
    }
    // Files already there (or dropped before the watcher was ready), then periodically.
    await this.rescan();
    this.rescanTimer = setInterval(() => void this.rescan(), this.rescanMs);
    this.rescanTimer.unref();
    this.log.info('watching inbox folders', { dirs: this.dirs });
  }

  private async rescan(): Promise<void> {
    if (this.batches.shared) this.reports.recheck();
    for (const dir of this.dirs) {
      if (this.closed) return;
      try {
        for (const name of await fs.promises.readdir(dir)) this.consider(path.join(dir, name));
      } catch (e) {
        this.log.warn('inbox folder not readable', { dir, error: String(e) });
      }
    }
  }

  /** Start (or keep) a stability check for a path; no-op for names we do not read. */
  private consider(p: string): void {
    if (this.closed || !isInboxCandidate(path.basename(p)) || this.pending.has(p)) return;
    this.pending.set(p, undefined);
    void this.firstLook(p);
  }

  private async firstLook(p: string): Promise<void> {
    const a = await look(p);
    if (!a || this.closed) return void this.pending.delete(p);
    // A short second look is enough when the file is already quiet for a full
    // stability period (left from before a restart, moved in from elsewhere)
    // or was renamed into place after its last write: a rename moves ctime
    // but not mtime, while every write sets both to the same instant.
    // Anything but a regular file is refused at once (after that short look).
    const quiet = !a.regular || this.now() - a.mtimeMs >= this.stabilityMs || a.ctimeMs > a.mtimeMs;
    this.schedule(p, a, quiet ? Math.min(100, this.stabilityMs) : this.stabilityMs);
  }

  private schedule(p: string, prev: Look, ms: number): void {
    const t = setTimeout(() => void this.secondLook(p, prev), ms);
    this.pending.set(p, t);
  }

  private async secondLook(p: string, prev: Look): Promise<void> {
    if (this.closed) return;
    const b = await look(p);
    if (!b) return void this.pending.delete(p);
    if (b.size !== prev.size || b.mtimeMs !== prev.mtimeMs || b.ino !== prev.ino) return this.schedule(p, b, this.stabilityMs);
    this.pending.set(p, undefined);
    this.chain = this.chain.then(() => this.intake(p, b));
  }

  private async intake(p: string, seen: Look): Promise<void> {
    if (this.closed) return;
    try {
      const r = await this.process(p, seen);
      this.pending.delete(p);
      this.failures.delete(p);
      // Events for a new file of the same name that arrived during intake were
      // absorbed by the pending entry: look again (a no-op when nothing is there).
      // A file another daemon has claimed waits for the periodic rescan instead.
      if (r !== 'theirs') this.consider(p);
    } catch (e) {
      if (this.closed) return;
      if (e instanceof ChangedWhileRead) {
        this.log.info('inbox file changed while being read; waiting for it to settle', { file: p });
        this.schedule(p, seen, this.stabilityMs);
        return;
      }
      const n = (this.failures.get(p) ?? 0) + 1;
      this.failures.set(p, n);
      const delay = this.retryMs * 2 ** Math.min(n - 1, 4);
      this.log.error('inbox file not taken; will retry', { file: p, retryInMs: delay, error: String(e) });
      this.schedule(p, seen, delay);
    }
  }

  private async process(p: string, seen: Look): Promise<void | 'theirs'> {
    const name = path.basename(p);
    const inbox = path.dirname(p);
    if (!seen.regular) return this.refuse(p, seen, 'E_BAD_REQUEST', `not a regular file (a ${seen.kind}); only regular files are read`);
    let opened;
    try {
      opened = await openInboxFile(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      if (e instanceof RefusedFile) {
        const now = await look(p);
        if (!now) return;
        return this.refuse(p, now, e.code, e.reason);
      }
      throw e;
    }
    const { fh, st } = opened;
    try {
      const ident = identOf(st);
      if (!sameIdent(ident, identOf(seen))) throw new ChangedWhileRead();
      const id = this.batchId(inbox, name, ident);
      const known = this.batches.batch(id);
      if (known) {
        this.log.info('inbox file already recorded; moving it', { file: p, batch: id });
        await this.move(known);
        return;
      }
      if (st.size > this.maxBytes) {
        return await this.refuse(p, seen, 'E_TOO_LARGE', `file is ${st.size} bytes; the limit is ${this.maxBytes} (--inbox-max-bytes); split it`);
      }
      // A file this small cannot hold more lines than the cap (a kept line is at least 2 bytes).
      if (st.size > 2 * this.maxLines) {
        const c = await countUrlLines(fh, this.maxLines);
        if (c.lines > this.maxLines) {
          return await this.refuse(p, seen, 'E_TOO_LARGE', `file has more than ${this.maxLines} URL lines (--inbox-max-lines); split it`);
        }
      }
      // Its place in processed/ is chosen once the lines are in (as before the claim existed).
      const batch: BatchRecord = { id, ident, inbox, sourcePath: p, processedPath: '', state: 'enqueued', createdAt: new Date(this.now()).toISOString(), lines: [] };
      if (!(await this.claim(batch))) return 'theirs';
      try {
        batch.lines = await this.enqueueAll(p, id, fh);
      } catch (e) {
        // The file changed: its next look has another identity, so another batch id.
        if (e instanceof ChangedWhileRead) await this.batches.release(id).catch(() => undefined);
        throw e;
      }
      const lines = batch.lines;
      // Jobs reused from an earlier attempt were created but maybe never written.
      await this.store.flush();
      batch.processedPath = await this.destination(inbox, name);
      await this.batches.save(batch);
      this.attempts.delete(id);
      const jobs = lines.filter((l) => l[2]).length;
      this.log.info('inbox file enqueued', { file: p, lines: lines.length, jobs, invalid: lines.length - jobs });
      await this.move(batch);
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  /**
   * Take the file for this daemon before anything is enqueued (always ours
   * unless the store is shared). A shared claim is made good only if the file
   * is still in the inbox afterwards: a daemon that opened it just before its
   * owner moved it, reported it and dropped the row would otherwise take it
   * a second time.
   */
  private async claim(b: BatchRecord): Promise<boolean> {
    if (!(await this.batches.claim(b))) {
      if (!this.othersFiles.has(b.id)) {
        if (this.othersFiles.size >= 10_000) this.othersFiles.clear();
        this.othersFiles.add(b.id);
        this.log.info('inbox file taken by another daemon of the cluster; leaving it', { file: b.sourcePath, batch: b.id });
      }
      return false;
    }
    if (!this.batches.shared) return true;
    const now = await look(b.sourcePath);
    if (now && b.ident && sameIdent(identOf(now), b.ident)) return true;
    await this.batches.release(b.id);
    return false;
  }

  /** A batch id not used by a different, still unreported batch (a file moved back from processed/). */
  private batchId(inbox: string, name: string, ident: BatchIdent): string {
    const base = this.batches.idOf(inbox, name, ident);
    for (let n = 0; ; n++) {
      const id = n === 0 ? base : `${base}-${n}`;
      const b = this.batches.batch(id);
      if (!b || b.state === 'enqueued') return id;
    }
  }

  /**
   * Enqueue every distinct URL of the file, `chunkSize` at a time, as the
   * lines are read. Idempotent across attempts of the same batch: a line
   * that already has a job from an earlier attempt keeps it.
   */
  private async enqueueAll(p: string, id: string, fh: fs.promises.FileHandle): Promise<BatchLine[]> {
    const firstSeq = this.attempts.get(id);
    const prior = firstSeq === undefined ? new Map<number, string>() : this.jobsOfAttempt(p, firstSeq);
    if (firstSeq === undefined) this.attempts.set(id, this.store.peekSeq());
    const jobOfUrl = new Map<string, string>();
    const out: BatchLine[] = [];
    const bytes = await streamUrlLines(fh, this.chunkSize, async (group: UrlsLine[]) => {
      if (this.closed) throw new Error('inbox closed during intake');
      const items: EnqueueItem[] = [];
      for (const l of group) {
        if (l.url === undefined || jobOfUrl.has(l.url)) continue;
        const had = prior.get(l.line);
        if (had) jobOfUrl.set(l.url, had);
        else {
          jobOfUrl.set(l.url, '');
          items.push({ url: l.url, source: `${p}:${l.line}` });
        }
      }
      if (items.length > 0) {
        const jobs = await this.scheduler.enqueue(items, { priority: INBOX_PRIORITY });
        jobs.forEach((j, k) => jobOfUrl.set(items[k].url, j.id));
      }
      for (const l of group) {
        if (l.url !== undefined) out.push([l.line, l.url, jobOfUrl.get(l.url) || null, null]);
        else out.push([l.line, echoPrefix(l.raw), null, l.error?.code ?? 'E_INVALID_URL']);
      }
    });
    const st = await fh.stat();
    if (bytes !== st.size) throw new ChangedWhileRead();
    return out;
  }

  /**
   * Jobs an earlier attempt of this batch created, by line (their source is
   * `<file>:<line>`). In cluster mode the job store holds no jobs and this is
   * empty; a retried attempt stays idempotent there because the shared queue
   * answers a URL that has an open job with that job.
   */
  private jobsOfAttempt(p: string, firstSeq: number): Map<number, string> {
    const out = new Map<number, string>();
    const prefix = `${p}:`;
    for (const j of this.store.values()) {
      if (j.seq < firstSeq || !j.source.startsWith(prefix)) continue;
      const line = Number(j.source.slice(prefix.length));
      if (Number.isInteger(line)) out.set(line, j.id);
    }
    return out;
  }

  /** The record of a batch taken from `p` (its jobs durable, the file not moved yet), with its place in processed/ chosen. */
  private async newBatch(id: string, ident: BatchIdent, p: string, what: Pick<BatchRecord, 'lines' | 'refused'>): Promise<BatchRecord> {
    const inbox = path.dirname(p);
    return {
      id,
      ident,
      inbox,
      sourcePath: p,
      processedPath: await this.destination(inbox, path.basename(p)),
      state: 'enqueued',
      createdAt: new Date(this.now()).toISOString(),
      ...what,
    };
  }

  /** Record a file that is not read, move it to processed/ and report why. */
  private async refuse(p: string, seen: Look, code: ErrorCode, reason: string): Promise<void | 'theirs'> {
    const inbox = path.dirname(p);
    const name = path.basename(p);
    const ident = identOf(seen);
    const id = this.batchId(inbox, name, ident);
    const known = this.batches.batch(id);
    if (known) return this.move(known);
    const batch = await this.newBatch(id, ident, p, { lines: [], refused: { code, reason } });
    if (!(await this.claim(batch))) return 'theirs';
    this.log.warn('inbox file refused', { file: echoPrefix(p, 300), reason, code });
    await this.batches.save(batch);
    await this.move(batch);
  }

  /** A free name in processed/ (neither the file nor its report exists, nor is it promised to another batch). */
  private async destination(inbox: string, name: string): Promise<string> {
    const ext = path.extname(name);
    const stem = name.slice(0, name.length - ext.length);
    const promised = new Set(this.batches.batches().map((b) => b.processedPath));
    return withProcessedDir(inbox, async (dir) => {
      for (let n = 0; ; n++) {
        const cand = n === 0 ? name : `${stem}.${n}${ext}`;
        if (promised.has(path.join(processedPathOf(inbox), cand))) continue;
        if (await exists(path.join(dir, cand))) continue;
        if (await exists(path.join(dir, cand + REPORT_SUFFIX))) continue;
        return path.join(processedPathOf(inbox), cand);
      }
    });
  }

  /** Move the batch's file into processed/ (durably), mark it moved, start watching its jobs. */
  private async move(b: BatchRecord): Promise<void> {
    await withProcessedDir(b.inbox, async (dir, dfh) => {
      if (await exists(path.join(dir, path.basename(b.processedPath)))) {
        b.processedPath = await this.destination(b.inbox, path.basename(b.sourcePath));
        await this.batches.save(b);
      }
      try {
        await fs.promises.rename(b.sourcePath, path.join(dir, path.basename(b.processedPath)));
        await dfh.sync();
        await fsyncDir(path.dirname(b.sourcePath));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        this.log.warn('inbox file vanished before it was moved; the report is still written', { file: b.sourcePath });
      }
    });
    b.state = 'moved';
    await this.batches.save(b);
    this.log.info('inbox file processed', { file: b.sourcePath, to: b.processedPath });
    await this.reports.track(b);
  }

  /** At start: a batch recorded but maybe not moved. The same file still in place → move it. */
  private async resume(b: BatchRecord): Promise<void> {
    const now = await look(b.sourcePath);
    let same = false;
    if (now && b.ident) same = sameIdent(identOf(now), b.ident);
    else if (now && b.key) same = (await legacyKey(b.sourcePath)) === b.key;
    if (same) {
      await this.move(b);
      return;
    }
    // Moved before the crash (or replaced by another file, which is a new batch).
    b.state = 'moved';
    await this.batches.save(b);
  }

  /**
   * Stop watching; let a file being taken finish its current step (bounded by
   * closeWaitMs). Resolves false when that step did not finish: something
   * below it is stuck (a read on a dead mount), and a normal process exit
   * could wait for it forever.
   */
  async close(): Promise<boolean> {
    if (this.closed) return true;
    this.closed = true;
    this.scheduler.off('event', this.onEvent);
    if (this.rescanTimer) clearInterval(this.rescanTimer);
    for (const t of this.pending.values()) if (t) clearTimeout(t);
    this.pending.clear();
    await Promise.all(this.watchers.map((w) => w.close()));
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.closeWaitMs)));
    const settled = Promise.all([this.chain.catch(() => undefined), this.reports.settled()]).then(() => 'done' as const);
    const r = await Promise.race([settled, gaveUp]);
    clearTimeout(timer);
    if (r === 'timeout') this.log.warn(`inbox: a file being taken did not finish within ${this.closeWaitMs} ms of shutdown; it is taken again at the next start`);
    return r === 'done';
  }
}

/** sha256 of name and content, as older batch records were keyed (streamed). */
async function legacyKey(p: string): Promise<string | undefined> {
  const { createHash } = await import('node:crypto');
  try {
    const { fh } = await openInboxFile(p);
    try {
      const h = createHash('sha256').update(path.basename(p)).update('\0');
      for await (const chunk of fh.createReadStream({ autoClose: false })) h.update(chunk as Buffer);
      return h.digest('hex');
    } finally {
      await fh.close().catch(() => undefined);
    }
  } catch {
    return undefined;
  }
}
