/**
 * Integrity sweeps (modelled on cacache's verify()):
 * named steps run in order, each timed and counted in the report. See
 * sweep-steps.ts for the steps and sweep-plan.ts for the pure decisions.
 *
 * Invariants:
 * - One sweep at a time per Sweeper: a run() during a sweep joins it and gets
 *   the same promise (the same report).
 * - A file is never deleted by a sweep: bad bytes go to `.quarantine/`, and
 *   only bytes matching the record's MD5 and SHA-256 are put back.
 * - Incremental: with `maxDurationMs` a sweep stops taking new files once the
 *   time is up (`complete: false`); records are checked least recently
 *   verified first, so the next sweep continues where this one stopped.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { MediaCacheError } from '../errors.js';
import { HashPool } from '../hash/file-hash-pool.js';
import type { Logger } from '../util/logger.js';
import type { RpcEvent, SweepReport, SweepStepName } from '../protocol/rpc.js';
import { ProgressThrottle } from './plan.js';
import { stepAdopt } from './adopt.js';
import { stepMetadata } from '../metadata/sweep-step.js';
import {
  stepCleanTmp,
  stepMissing,
  stepQuarantine,
  stepRehash,
  stepRepair,
  stepRevalidate,
  type StepTally,
  type SweepContext,
  type SweepTarget,
} from './steps.js';

export type { SweepTarget } from './steps.js';

export interface SweeperOptions {
  /** Hashing rate limit across all threads, MB (10^6 bytes) per second; 0 = unlimited (default). */
  rateMBps?: number;
  /** Stop taking new files after this long, ms; 0 = no limit (default). */
  maxDurationMs?: number;
  /** Hashing threads (default 2). */
  threads?: number;
  /** Nice value of the hashing threads on Linux (default 10; 0 = same priority as downloads). */
  niceness?: number;
  /** Defaults to the cache's logger. */
  logger?: Logger;
  now?: () => Date;
  /** Minimum gap between two progress events of one step (default 250 ms). */
  progressIntervalMs?: number;
  /** Ask origins about content not confirmed for this long, ms (a `revalidate` step); 0 = never (default). */
  revalidateAfterMs?: number;
}

export interface SweepRunOptions {
  /**
   * Index recovery: adopt every file in the type folders even past
   * `maxDurationMs` (the daemon asks for this at start-up when the index had
   * to be rebuilt). Adoption itself runs in every sweep.
   */
  adopt?: boolean;
}

export const STEP_ORDER: readonly SweepStepName[] = ['missing', 'rehash', 'quarantine', 'repair', 'adopt', 'clean-tmp', 'metadata'];

interface Current {
  id: string;
  promise: Promise<SweepReport>;
  controller: AbortController;
  pool: HashPool;
}

function checkOptions(o: SweeperOptions): void {
  const num = (name: string, v: number | undefined, min: number, int = false): void => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (int && !Number.isInteger(v))) {
      throw new MediaCacheError('E_BAD_REQUEST', `sweep option ${name} must be ${int ? 'an integer' : 'a number'} >= ${min}, got ${String(v)}`);
    }
  };
  num('rateMBps', o.rateMBps, 0);
  num('maxDurationMs', o.maxDurationMs, 0);
  num('threads', o.threads, 1, true);
  num('niceness', o.niceness, 0, true);
  num('progressIntervalMs', o.progressIntervalMs, 0);
  num('revalidateAfterMs', o.revalidateAfterMs, 0);
}

export class Sweeper extends EventEmitter {
  private readonly cache: SweepTarget;
  private opts: Required<Omit<SweeperOptions, 'logger'>> & { logger: Logger };
  private current: Current | undefined;
  private last: SweepReport | undefined;
  private closed = false;

  constructor(cache: SweepTarget, opts: SweeperOptions = {}) {
    super();
    checkOptions(opts);
    this.cache = cache;
    this.opts = {
      rateMBps: opts.rateMBps ?? 0,
      maxDurationMs: opts.maxDurationMs ?? 0,
      threads: opts.threads ?? 2,
      niceness: opts.niceness ?? 10,
      logger: opts.logger ?? cache.logger,
      now: opts.now ?? (() => new Date()),
      progressIntervalMs: opts.progressIntervalMs ?? 250,
      revalidateAfterMs: opts.revalidateAfterMs ?? 0,
    };
  }

  get running(): boolean {
    return this.current !== undefined;
  }

  get currentId(): string | undefined {
    return this.current?.id;
  }

  get lastReport(): SweepReport | undefined {
    return this.last;
  }

  /** A report kept from an earlier run (the daemon's last-sweep file); a sweep run since wins. */
  restoreLastReport(report: SweepReport): void {
    this.last ??= report;
  }

  /** Takes effect for the next sweep; the rate also for the running one. */
  setOptions(p: Partial<SweeperOptions>): void {
    checkOptions(p);
    const { logger, ...rest } = p;
    const defined = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
    this.opts = { ...this.opts, ...defined, ...(logger ? { logger } : {}) };
    if (p.rateMBps !== undefined) this.current?.pool.setRate(p.rateMBps);
  }

  /** Run a sweep, or join the one running. */
  run(opts: SweepRunOptions = {}): Promise<SweepReport> {
    return this.start(opts).done;
  }

  /**
   * Like run(), but also says which sweep it is and whether it was already
   * running (the RPC answers `{id, joined}` at once when not waiting).
   */
  start(opts: SweepRunOptions = {}): { id: string; joined: boolean; done: Promise<SweepReport> } {
    if (this.current) return { id: this.current.id, joined: true, done: this.current.promise };
    if (this.closed) {
      const done = Promise.reject(new MediaCacheError('E_UNAVAILABLE', 'the sweeper is closed'));
      done.catch(() => undefined);
      return { id: '', joined: false, done };
    }
    const started = this.opts.now();
    const id = `${started.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
    const controller = new AbortController();
    const pool = new HashPool({ threads: this.opts.threads, rateMBps: this.opts.rateMBps, niceness: this.opts.niceness });
    pool.warm();
    const cur: Current = { id, controller, pool, promise: undefined as unknown as Promise<SweepReport> };
    cur.promise = this.execute(cur, started, opts).finally(async () => {
      await pool.close();
      if (this.current === cur) this.current = undefined;
    });
    // Callers that do not wait (RPC without wait) must not turn a failed sweep
    // into an unhandled rejection; the failure is logged in execute().
    cur.promise.catch(() => undefined);
    this.current = cur;
    return { id, joined: false, done: cur.promise };
  }

  /** Stop a running sweep at the next file and end its threads. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const cur = this.current;
    if (!cur) return;
    cur.controller.abort(new MediaCacheError('E_ABORTED', 'sweep stopped: closing'));
    cur.pool.cancel();
    await cur.promise.catch(() => undefined);
  }

  private async execute(cur: Current, started: Date, runOpts: SweepRunOptions): Promise<SweepReport> {
    const o = this.opts;
    const t0 = performance.now();
    const report: SweepReport = {
      id: cur.id,
      startedAt: started.toISOString(),
      finishedAt: '',
      durationMs: 0,
      complete: true,
      checked: 0,
      bytesHashed: 0,
      missing: [],
      corrupt: [],
      quarantined: [],
      repaired: [],
      unrepaired: [],
      changedUpstream: [],
      adopted: [],
      cleanedTmp: 0,
      steps: [],
      metadataFilled: 0,
    };
    // The revalidate step runs (and is reported) only when revalidation is on.
    const order: SweepStepName[] = o.revalidateAfterMs > 0 ? [...STEP_ORDER, 'revalidate'] : [...STEP_ORDER];
    const tally = Object.fromEntries(order.map((s) => [s, { count: 0, bytes: 0 }])) as Record<SweepStepName, StepTally>;
    const throttle = new ProgressThrottle(o.progressIntervalMs, () => performance.now());
    const ctx: SweepContext = {
      id: cur.id,
      cache: this.cache,
      pool: cur.pool,
      logger: o.logger,
      now: o.now,
      startMs: Date.now(),
      maxDurationMs: o.maxDurationMs,
      adoptAll: runOpts.adopt === true,
      threads: o.threads,
      signal: cur.controller.signal,
      report,
      tally,
      progress: (step, done, total) => {
        if (throttle.shouldEmit(done, total)) this.emitEvent({ type: 'sweep.progress', sweepId: cur.id, step, done, ...(total !== undefined ? { total } : {}) });
      },
      toRehash: [],
      suspects: [],
      needRepair: new Set(),
    };
    o.logger.info('sweep started', { id: cur.id, records: await this.cache.index.count(), adopt: ctx.adoptAll, maxDurationMs: o.maxDurationMs, rateMBps: o.rateMBps });
    const steps: Record<SweepStepName, () => Promise<unknown>> = {
      missing: () => stepMissing(ctx),
      rehash: async () => {
        if (!(await stepRehash(ctx))) report.complete = false;
      },
      quarantine: () => stepQuarantine(ctx),
      repair: () => stepRepair(ctx),
      adopt: async () => {
        if (!(await stepAdopt(ctx))) report.complete = false;
      },
      'clean-tmp': () => stepCleanTmp(ctx),
      metadata: async () => {
        if (!(await stepMetadata(ctx))) report.complete = false;
      },
      revalidate: async () => {
        if (!(await stepRevalidate(ctx, o.revalidateAfterMs))) report.complete = false;
      },
    };
    const durations: Partial<Record<SweepStepName, number>> = {};
    try {
      for (const name of order) {
        throttle.reset();
        const s0 = performance.now();
        this.emitEvent({ type: 'sweep.progress', sweepId: cur.id, step: name, done: 0 });
        await steps[name]();
        durations[name] = Math.round(performance.now() - s0);
      }
      // Counts are read at the end: adoption also quarantines (junk in the type folders).
      for (const name of order) report.steps.push({ name, ...tally[name], durationMs: durations[name] ?? 0 });
      // verifiedAt and adoptions are durable before the report says so.
      await this.cache.index.flush();
    } catch (e) {
      o.logger.error('sweep failed', { id: cur.id, error: String(e), code: (e as MediaCacheError).code });
      throw e;
    }
    report.finishedAt = o.now().toISOString();
    report.durationMs = Math.round(performance.now() - t0);
    this.last = report;
    o.logger.info('sweep finished', {
      id: report.id,
      complete: report.complete,
      durationMs: report.durationMs,
      checked: report.checked,
      bytesHashed: report.bytesHashed,
      missing: report.missing.length,
      corrupt: report.corrupt.length,
      quarantined: report.quarantined.length,
      repaired: report.repaired.length,
      unrepaired: report.unrepaired.length,
      changedUpstream: report.changedUpstream.length,
      adopted: report.adopted.length,
      cleanedTmp: report.cleanedTmp,
      metadataFilled: report.metadataFilled,
      steps: report.steps.map((s) => `${s.name}:${s.count}/${s.bytes}B/${s.durationMs}ms`).join(' '),
    });
    this.emitEvent({ type: 'sweep.done', report });
    return report;
  }

  private emitEvent(ev: RpcEvent): void {
    try {
      this.emit('event', ev);
    } catch (e) {
      this.opts.logger.warn('sweep event listener threw', { error: String(e) });
    }
  }
}
