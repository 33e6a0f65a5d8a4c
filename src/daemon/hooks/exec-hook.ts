/**
 * Exec hooks: run a program per event with the event JSON on stdin and
 * MEDIACACHE_* variables in its environment.
 *
 * Invariants:
 * - Nothing here blocks the caller: run() only queues; at most `concurrency`
 *   hooks run at once and at most `maxQueue` wait (more are dropped, logged).
 *   A hung hook holds one hook slot, never a download.
 * - A hook runs at most `timeoutMs`: then its process group gets SIGTERM and,
 *   `killGraceMs` later, SIGKILL (a hook's own children die with it).
 * - Its exit status, duration and the first `maxStderrBytes` of stderr are
 *   logged; stdout is discarded.
 * - The daemon's own MEDIACACHE_* settings (a webhook secret among them) are
 *   not passed on; the hook sees only the event's variables.
 * Exec hooks are best effort (not kept across restarts); webhooks are the
 * at-least-once channel.
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../../core/util/logger.js';
import { hookEnv, type HookEvent } from './events.js';

export interface ExecHookOptions {
  /** argv per event type; types without one are ignored. */
  commands: Partial<Record<HookEvent['type'], string[]>>;
  timeoutMs: number;
  concurrency: number;
  logger: Logger;
  /** Events waiting for a slot beyond this are dropped (default 1000). */
  maxQueue?: number;
  /** SIGTERM → SIGKILL delay after the time limit (default 2000 ms). */
  killGraceMs?: number;
  /** Stderr kept for the log (default 4096 bytes). */
  maxStderrBytes?: number;
  /** Base environment (default process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface HookOutcome {
  event: HookEvent['type'];
  id: string;
  /** Exit code, or null when a signal ended it or it never started. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  durationMs: number;
  stderr: string;
  /** Spawn error (ENOENT, EACCES), when it never ran. */
  error?: string;
}

export class ExecHooks {
  private readonly o: Required<Omit<ExecHookOptions, 'env'>> & { env: NodeJS.ProcessEnv };
  private readonly baseEnv: Record<string, string>;
  private readonly queue: HookEvent[] = [];
  private readonly running = new Set<{ kill: () => void; done: Promise<void> }>();
  private closed = false;
  private dropped = 0;
  private pumpQueued = false;
  /** Called after every hook ends (tests, stats). */
  onOutcome?: (o: HookOutcome) => void;

  constructor(o: ExecHookOptions) {
    this.o = { maxQueue: 1000, killGraceMs: 2000, maxStderrBytes: 4096, env: process.env, ...o };
    this.baseEnv = {};
    for (const [k, v] of Object.entries(this.o.env)) if (v !== undefined && !k.startsWith('MEDIACACHE_')) this.baseEnv[k] = v;
  }

  /** Whether some event type has a command. */
  get enabled(): boolean {
    return Object.values(this.o.commands).some((c) => c && c.length > 0);
  }

  get active(): number {
    return this.running.size;
  }

  run(ev: HookEvent): void {
    if (this.closed || !this.o.commands[ev.type]) return;
    if (this.queue.length >= this.o.maxQueue) {
      this.dropped++;
      this.o.logger.warn('exec hook queue full; event dropped', { event: ev.type, id: ev.id, queued: this.queue.length, droppedSoFar: this.dropped });
      return;
    }
    this.queue.push(ev);
    // Spawning costs a fork: not inside the caller's turn (the scheduler finishing a job).
    if (!this.pumpQueued) {
      this.pumpQueued = true;
      setImmediate(() => {
        this.pumpQueued = false;
        this.pump();
      });
    }
  }

  private pump(): void {
    while (!this.closed && this.running.size < this.o.concurrency && this.queue.length > 0) this.start(this.queue.shift()!);
  }

  private start(ev: HookEvent): void {
    const argv = this.o.commands[ev.type]!;
    const t0 = Date.now();
    const log = this.o.logger;
    let stderr = '';
    let stderrBytes = 0;
    let timedOut = false;
    let spawnError: string | undefined;
    const group = process.platform !== 'win32';
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['pipe', 'ignore', 'pipe'],
      env: { ...this.baseEnv, ...hookEnv(ev) },
      // Its own process group, so the time limit reaches whatever it started.
      detached: group,
      windowsHide: true,
    });
    const signal = (sig: NodeJS.Signals): void => {
      try {
        if (group && child.pid) process.kill(-child.pid, sig);
        else child.kill(sig);
      } catch {
        /* already gone */
      }
    };
    let killTimer: NodeJS.Timeout | undefined;
    const limit = setTimeout(() => {
      timedOut = true;
      log.warn('exec hook over its time limit; killing it', { event: ev.type, id: ev.id, argv0: argv[0], timeoutMs: this.o.timeoutMs });
      signal('SIGTERM');
      killTimer = setTimeout(() => signal('SIGKILL'), this.o.killGraceMs);
    }, this.o.timeoutMs);
    child.stderr!.on('data', (b: Buffer) => {
      if (stderrBytes < this.o.maxStderrBytes) stderr += b.subarray(0, this.o.maxStderrBytes - stderrBytes).toString('utf8');
      stderrBytes += b.length;
    });
    // A hook that does not read stdin closes it early: EPIPE is its choice, not an error.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(JSON.stringify(ev));
    const entry = {
      kill: (): void => {
        timedOut = true;
        signal('SIGKILL');
      },
      done: Promise.resolve(),
    };
    entry.done = new Promise<void>((resolve) => {
      child.on('error', (e) => {
        spawnError = e.message;
      });
      child.on('close', (code, sig) => {
        clearTimeout(limit);
        if (killTimer) clearTimeout(killTimer);
        // Whatever the hook left running in its group goes too.
        if (group && child.pid) {
          try {
            process.kill(-child.pid, 'SIGKILL');
          } catch {
            /* group empty */
          }
        }
        const out: HookOutcome = { event: ev.type, id: ev.id, code, signal: sig, timedOut, durationMs: Date.now() - t0, stderr: stderr.trim() };
        if (stderrBytes > this.o.maxStderrBytes) out.stderr += ` [... ${stderrBytes - this.o.maxStderrBytes} more bytes]`;
        if (spawnError) out.error = spawnError;
        const meta = { event: ev.type, id: ev.id, argv0: argv[0], exitCode: code, signal: sig, timedOut, durationMs: out.durationMs, stderr: out.stderr || undefined, error: spawnError };
        if (spawnError) log.error('exec hook could not start', meta);
        else if (code === 0) log.info('exec hook finished', meta);
        else log.warn('exec hook failed', meta);
        this.running.delete(entry);
        try {
          this.onOutcome?.(out);
        } catch {
          /* observers must not break the pump */
        }
        resolve();
        this.pump();
      });
    });
    this.running.add(entry);
  }

  /**
   * Take no more events; drop the queued ones; give running hooks up to
   * `graceMs`, then kill them. Resolves when none is left.
   */
  async close(graceMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.queue.length) this.o.logger.warn('shutting down: queued exec hooks not run', { count: this.queue.length });
    this.queue.length = 0;
    const all = Promise.all([...this.running].map((r) => r.done));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((r) => (timer = setTimeout(r, graceMs)));
    await Promise.race([all, grace]);
    clearTimeout(timer);
    for (const r of this.running) r.kill();
    await all;
  }
}
