/**
 * The inbox's second half: a moved batch waits for its jobs (whichever daemon
 * runs them), then its report is written next to the file in processed/ and
 * the batch forgotten. Reports are written one at a time, in order; a report
 * that cannot be written is retried.
 */
import path from 'node:path';
import type { Logger } from '../../core/util/logger.js';
import type { BatchRecord } from '../jobs/job-store.js';
import type { Scheduler } from '../jobs/scheduler.js';
import type { BatchStore } from './batch-store.js';
import { withProcessedDir } from './processed-dir.js';
import { REPORT_SUFFIX, reportRows, writeReport } from './report.js';

/** Lines registered per event-loop turn when a batch's jobs are tracked. */
const TRACK_SLICE = 5000;

export interface BatchReportsOptions {
  scheduler: Pick<Scheduler, 'get'>;
  batches: BatchStore;
  logger: Logger;
  retryMs: number;
  /** Cluster mode: look up jobs this daemon does not know (queued in an earlier run or by another daemon). */
  adoptJobs: ((ids: string[]) => Promise<void>) | undefined;
  /** True once the inbox is closed: no more retries are scheduled. */
  closed: () => boolean;
}

export class BatchReports {
  /** Unfinished jobs per batch. */
  private readonly batchLeft = new Map<string, Set<string>>();
  /** Job → its batch (an array in the rare case of several): one entry per job, no Set per job. */
  private readonly jobBatches = new Map<string, string | string[]>();
  /** Batches whose jobs are still being registered: no report before that is done. */
  private readonly tracking = new Set<string>();
  private reportChain: Promise<void> = Promise.resolve();

  constructor(private readonly o: BatchReportsOptions) {}

  /** Resolves when the reports being written are done (for shutdown). */
  settled(): Promise<void> {
    return this.reportChain.catch(() => undefined);
  }

  /**
   * Register a moved batch's unfinished jobs; report at once when none is
   * left. Yields every TRACK_SLICE lines, so a large batch does not hold the
   * event loop; a job that ends meanwhile is either not registered (already
   * ended when looked at) or registered and then removed by jobEnded.
   */
  async track(b: BatchRecord): Promise<void> {
    if (b.state !== 'moved' || this.batchLeft.has(b.id)) return;
    const left = new Set<string>();
    this.batchLeft.set(b.id, left);
    this.tracking.add(b.id);
    try {
      if (!(await this.adopt(b))) {
        this.batchLeft.delete(b.id);
        if (!this.o.closed()) setTimeout(() => void this.track(b), this.o.retryMs).unref();
        return;
      }
      for (let i = 0; i < b.lines.length; i++) {
        if (i > 0 && i % TRACK_SLICE === 0) await new Promise((r) => setImmediate(r));
        const id = b.lines[i][2];
        if (!id || left.has(id)) continue;
        // The scheduler's view (the job store's embedded, the shared queue's in cluster mode).
        const j = this.o.scheduler.get(id);
        if (!j || (j.state !== 'queued' && j.state !== 'running')) continue;
        left.add(id);
        const had = this.jobBatches.get(id);
        if (had === undefined) this.jobBatches.set(id, b.id);
        else if (typeof had === 'string') this.jobBatches.set(id, [had, b.id]);
        else had.push(b.id);
      }
    } finally {
      this.tracking.delete(b.id);
    }
    if (left.size === 0) this.report(b.id);
  }

  /**
   * Jobs of the batch the scheduler does not know (cluster mode, after a
   * restart: queued in an earlier run, maybe run by another daemon) are
   * looked up first, so the batch waits for them and their end is raised
   * here. False when that failed (database away): try again later.
   */
  private async adopt(b: BatchRecord): Promise<boolean> {
    if (!this.o.adoptJobs) return true;
    const unknown: string[] = [];
    for (const l of b.lines) if (l[2] && !this.o.scheduler.get(l[2])) unknown.push(l[2]);
    if (unknown.length === 0) return true;
    try {
      await this.o.adoptJobs(unknown);
      return true;
    } catch (e) {
      this.o.logger.warn('inbox batch jobs not looked up; will retry', { batch: b.id, error: String(e) });
      return false;
    }
  }

  /**
   * Shared store: a job the scheduler now knows as ended whose end event
   * this inbox never saw (it ended while not watched) still ends its batch.
   */
  recheck(): void {
    const ended: string[] = [];
    for (const left of this.batchLeft.values()) {
      for (const id of left) {
        const st = this.o.scheduler.get(id)?.state;
        if (st !== undefined && st !== 'queued' && st !== 'running') ended.push(id);
      }
    }
    for (const id of ended) this.jobEnded(id);
  }

  jobEnded(jobId: string): void {
    const had = this.jobBatches.get(jobId);
    if (had === undefined) return;
    this.jobBatches.delete(jobId);
    for (const id of typeof had === 'string' ? [had] : had) {
      const left = this.batchLeft.get(id);
      if (!left) continue;
      left.delete(jobId);
      if (left.size === 0 && !this.tracking.has(id)) this.report(id);
    }
  }

  private report(batchId: string): void {
    this.reportChain = this.reportChain.then(async () => {
      const b = this.o.batches.batch(batchId);
      if (!b) return;
      const reportPath = b.processedPath + REPORT_SUFFIX;
      try {
        await withProcessedDir(b.inbox, (dir) => writeReport(dir, path.basename(reportPath), reportRows(b, (id) => this.o.scheduler.get(id))));
        await this.o.batches.delete(b.id);
        this.batchLeft.delete(b.id);
        this.o.logger.info('inbox report written', { report: reportPath });
      } catch (e) {
        this.o.logger.error('inbox report not written; will retry', { report: reportPath, error: String(e) });
        if (!this.o.closed()) setTimeout(() => this.report(batchId), this.o.retryMs).unref();
      }
    });
  }
}
