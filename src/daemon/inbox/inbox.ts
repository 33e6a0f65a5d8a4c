/**
 * Inbox folders (SPEC, Inbox folders): `*.urls` files dropped into watched
 * folders become jobs, then move to `<inbox>/processed/`, and a report is
 * written beside them once every job has ended.
 *
 * Intake is reliable (DEPS §3, §11):
 * - chokidar (depth 0, ignoreInitial) for new files plus our own readdir at
 *   start for files already there; `change` is treated like `add`.
 * - A file is read only once stable: size and mtime unchanged across two
 *   looks `stabilityMs` apart. A file renamed into place after its last
 *   write (ctime > mtime), or already quiet for `stabilityMs` when first seen,
 *   only gets a short second look.
 * - Crash-safe, in this order: every URL durably enqueued (chunks of
 *   `chunkSize`), the batch (file → per-line job or error) durably recorded
 *   with its destination, then the file moved. A batch is keyed by a hash of
 *   the file's name and bytes: if we die before the move, the restart finds
 *   the recorded batch for that file and only moves it (no second enqueue).
 *   If we die mid-enqueue, re-reading the file enqueues again, which the
 *   scheduler's URL dedup turns into the same jobs for those still queued.
 * - One file at a time, so a 100,000-line file costs bounded memory and the
 *   event loop stays free between chunks.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { fsyncDir } from '../../core/util/durable-file.js';
import type { Logger } from '../../core/util/logger.js';
import type { RpcEvent } from '../../core/protocol/rpc.js';
import { parseUrlsFile } from '../../core/util/urls-file.js';
import type { BatchLine, BatchRecord, JobStore } from '../jobs/job-store.js';
import { REPORT_SUFFIX, reportRows, writeReport } from './report.js';
import type { EnqueueItem, Scheduler } from '../jobs/scheduler.js';

export const INBOX_PRIORITY = 10;
export const PROCESSED_DIR = 'processed';

export interface InboxOptions {
  dirs: string[];
  scheduler: Scheduler;
  store: JobStore;
  logger: Logger;
  /** Quiet time a file written in place needs before it is read (default 1000 ms). */
  stabilityMs?: number;
  /** URLs per enqueue call (default 1000). */
  chunkSize?: number;
  /** Delay before retrying a file whose intake failed, e.g. disk full (default 5000 ms). */
  retryMs?: number;
  now?: () => number;
}

interface Look {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

/** Names the inbox never reads: dotfiles, temp names, anything not `*.urls`. */
export function isInboxCandidate(name: string): boolean {
  return name.endsWith('.urls') && !name.startsWith('.') && name !== PROCESSED_DIR;
}

function ignoredByWatcher(root: string, p: string): boolean {
  if (path.resolve(p) === root) return false;
  const name = path.basename(p);
  return name.startsWith('.') || name.endsWith('.tmp') || name.endsWith('.part') || name === PROCESSED_DIR;
}

async function look(p: string): Promise<Look | undefined> {
  try {
    const st = await fs.promises.stat(p);
    return st.isFile() ? { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs } : undefined;
  } catch {
    return undefined;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.promises.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** A batch's identity: the same name and bytes seen again after a crash are the same batch. */
export function batchKey(name: string, bytes: Buffer): string {
  return crypto.createHash('sha256').update(name).update('\0').update(bytes).digest('hex');
}

export class Inbox {
  private readonly dirs: string[];
  private readonly scheduler: Scheduler;
  private readonly store: JobStore;
  private readonly log: Logger;
  private readonly stabilityMs: number;
  private readonly chunkSize: number;
  private readonly retryMs: number;
  private readonly now: () => number;
  private readonly watchers: FSWatcher[] = [];
  /** Files under a stability check or waiting to be processed. */
  private readonly pending = new Map<string, NodeJS.Timeout | undefined>();
  private chain: Promise<void> = Promise.resolve();
  /** Unfinished jobs per batch, and the batches each job belongs to. */
  private readonly batchLeft = new Map<string, Set<string>>();
  private readonly jobBatches = new Map<string, Set<string>>();
  private reportChain: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly onEvent = (ev: RpcEvent): void => {
    if (ev.type === 'job.done' || ev.type === 'job.failed') this.jobEnded(ev.job.id);
  };

  constructor(o: InboxOptions) {
    this.dirs = [...new Set(o.dirs.map((d) => path.resolve(d)))];
    this.scheduler = o.scheduler;
    this.store = o.store;
    this.log = o.logger;
    this.stabilityMs = o.stabilityMs ?? 1000;
    this.chunkSize = Math.max(1, o.chunkSize ?? 1000);
    this.retryMs = o.retryMs ?? 5000;
    this.now = o.now ?? Date.now;
  }

  async start(): Promise<void> {
    this.scheduler.on('event', this.onEvent);
    for (const dir of this.dirs) await fs.promises.mkdir(path.join(dir, PROCESSED_DIR), { recursive: true });
    // Batches a crash left between "recorded" and "moved", then reports still owed.
    for (const b of this.store.batches()) if (b.state === 'enqueued') await this.resume(b);
    for (const b of this.store.batches()) this.track(b);
    for (const dir of this.dirs) {
      const w = watch(dir, {
        depth: 0,
        ignoreInitial: true,
        ignored: (p: string) => ignoredByWatcher(dir, p),
      });
      w.on('add', (p: string) => this.consider(p));
      w.on('change', (p: string) => this.consider(p));
      w.on('error', (e: unknown) => this.log.error('inbox watcher error', { dir, error: String(e) }));
      this.watchers.push(w);
      await new Promise<void>((resolve) => w.once('ready', () => resolve()));
      // Files already there (or dropped before the watcher was ready).
      for (const name of await fs.promises.readdir(dir)) this.consider(path.join(dir, name));
    }
    this.log.info('watching inbox folders', { dirs: this.dirs });
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
    const quiet = this.now() - a.mtimeMs >= this.stabilityMs || a.ctimeMs > a.mtimeMs;
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
    if (b.size !== prev.size || b.mtimeMs !== prev.mtimeMs) return this.schedule(p, b, this.stabilityMs);
    this.pending.set(p, undefined);
    this.chain = this.chain.then(() => this.intake(p, b));
  }

  private async intake(p: string, seen: Look): Promise<void> {
    if (this.closed) return;
    try {
      await this.process(p, seen);
      this.pending.delete(p);
      // Events for a new file of the same name that arrived during intake were
      // absorbed by the pending entry: look again (a no-op when nothing is there).
      this.consider(p);
    } catch (e) {
      this.log.error('inbox file not taken; will retry', { file: p, error: String(e) });
      if (!this.closed) this.schedule(p, seen, this.retryMs);
    }
  }

  private async process(p: string, seen: Look): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = await fs.promises.readFile(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    if (bytes.length !== seen.size) {
      // Changed between the look and the read: start the stability check over.
      throw new Error(`file changed while being read (${seen.size} → ${bytes.length} bytes)`);
    }
    const name = path.basename(p);
    const inbox = path.dirname(p);
    const key = batchKey(name, bytes);
    const known = this.store.batchByKey(key);
    if (known && known.state === 'enqueued' && known.sourcePath === p) {
      this.log.info('inbox file already enqueued before a restart; moving it', { file: p });
      await this.move(known);
      return;
    }
    const lines = parseUrlsFile(bytes.toString('utf8'));
    const jobOfUrl = new Map<string, string>();
    const items: EnqueueItem[] = [];
    for (const l of lines) {
      if (l.url === undefined || jobOfUrl.has(l.url)) continue;
      jobOfUrl.set(l.url, '');
      items.push({ url: l.url, source: `${p}:${l.line}` });
    }
    for (let i = 0; i < items.length; i += this.chunkSize) {
      if (this.closed) throw new Error('inbox closed during intake');
      const chunk = items.slice(i, i + this.chunkSize);
      const jobs = await this.scheduler.enqueue(chunk, { priority: INBOX_PRIORITY });
      jobs.forEach((j, k) => jobOfUrl.set(chunk[k].url, j.id));
    }
    const batchLines: BatchLine[] = lines.map((l) =>
      l.url !== undefined ? [l.line, l.raw, jobOfUrl.get(l.url) ?? null, null] : [l.line, l.raw, null, l.error?.code ?? 'E_INVALID_URL'],
    );
    const batch: BatchRecord = {
      id: `${this.now().toString(36)}-${crypto.randomBytes(5).toString('hex')}`,
      key,
      inbox,
      sourcePath: p,
      processedPath: await this.destination(inbox, name),
      state: 'enqueued',
      createdAt: new Date(this.now()).toISOString(),
      lines: batchLines,
    };
    await this.store.saveBatch(batch);
    this.log.info('inbox file enqueued', { file: p, lines: lines.length, jobs: items.length, invalid: lines.length - batchLines.filter((l) => l[2]).length });
    await this.move(batch);
  }

  /** A free name in processed/ (neither the file nor its report exists, nor is it promised to another batch). */
  private async destination(inbox: string, name: string): Promise<string> {
    const dir = path.join(inbox, PROCESSED_DIR);
    const ext = path.extname(name);
    const stem = name.slice(0, name.length - ext.length);
    const promised = new Set(this.store.batches().map((b) => b.processedPath));
    for (let n = 0; ; n++) {
      const cand = path.join(dir, n === 0 ? name : `${stem}.${n}${ext}`);
      if (promised.has(cand)) continue;
      if (await exists(cand)) continue;
      if (await exists(cand + REPORT_SUFFIX)) continue;
      return cand;
    }
  }

  /** Move the batch's file into processed/ (durably), mark it moved, start watching its jobs. */
  private async move(b: BatchRecord): Promise<void> {
    await fs.promises.mkdir(path.dirname(b.processedPath), { recursive: true });
    if (await exists(b.processedPath)) {
      b.processedPath = await this.destination(b.inbox, path.basename(b.sourcePath));
      await this.store.saveBatch(b);
    }
    try {
      await fs.promises.rename(b.sourcePath, b.processedPath);
      await fsyncDir(path.dirname(b.processedPath));
      await fsyncDir(path.dirname(b.sourcePath));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      this.log.warn('inbox file vanished before it was moved; the report is still written', { file: b.sourcePath });
    }
    b.state = 'moved';
    await this.store.saveBatch(b);
    this.log.info('inbox file processed', { file: b.sourcePath, to: b.processedPath });
    this.track(b);
  }

  /** At start: a batch recorded but maybe not moved. Same bytes still in place → move them. */
  private async resume(b: BatchRecord): Promise<void> {
    let bytes: Buffer | undefined;
    try {
      bytes = await fs.promises.readFile(b.sourcePath);
    } catch {
      bytes = undefined;
    }
    if (bytes && batchKey(path.basename(b.sourcePath), bytes) === b.key) {
      await this.move(b);
      return;
    }
    // Moved before the crash (or replaced by another file, which is a new batch).
    b.state = 'moved';
    await this.store.saveBatch(b);
  }

  /** Register a moved batch's unfinished jobs; report at once when none is left. */
  private track(b: BatchRecord): void {
    if (b.state !== 'moved' || this.batchLeft.has(b.id)) return;
    const left = new Set<string>();
    for (const l of b.lines) {
      const id = l[2];
      if (!id) continue;
      // The scheduler's view (the job store's embedded, the shared queue's in cluster mode).
      const j = this.scheduler.get(id);
      if (j && (j.state === 'queued' || j.state === 'running')) left.add(id);
    }
    this.batchLeft.set(b.id, left);
    for (const id of left) {
      let s = this.jobBatches.get(id);
      if (!s) this.jobBatches.set(id, (s = new Set()));
      s.add(b.id);
    }
    if (left.size === 0) this.report(b.id);
  }

  private jobEnded(jobId: string): void {
    const bs = this.jobBatches.get(jobId);
    if (!bs) return;
    this.jobBatches.delete(jobId);
    for (const id of bs) {
      const left = this.batchLeft.get(id);
      if (!left) continue;
      left.delete(jobId);
      if (left.size === 0) this.report(id);
    }
  }

  private report(batchId: string): void {
    this.reportChain = this.reportChain.then(async () => {
      const b = this.store.batch(batchId);
      if (!b) return;
      const reportPath = b.processedPath + REPORT_SUFFIX;
      try {
        await writeReport(reportPath, reportRows(b.lines, (id) => this.scheduler.get(id)));
        await this.store.deleteBatch(b.id);
        this.batchLeft.delete(b.id);
        this.log.info('inbox report written', { report: reportPath });
      } catch (e) {
        this.log.error('inbox report not written; will retry', { report: reportPath, error: String(e) });
        if (!this.closed) setTimeout(() => this.report(batchId), this.retryMs).unref();
      }
    });
  }

  /** Stop watching; let a file being taken finish its current step. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.scheduler.off('event', this.onEvent);
    for (const t of this.pending.values()) if (t) clearTimeout(t);
    this.pending.clear();
    await Promise.all(this.watchers.map((w) => w.close()));
    await this.chain.catch(() => undefined);
    await this.reportChain.catch(() => undefined);
  }
}
