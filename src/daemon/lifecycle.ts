/**
 * Process lifecycle: one daemon per cache directory (an exclusive lock
 * file), signal handling (SIGTERM/SIGINT drain once, a second one exits at
 * once; SIGHUP reloads), and last-resort error logging.
 *
 * The lock is taken before anything touches the cache or the socket, so two
 * daemons never share an index even when they were given different sockets.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../core/logger.js';
import { StartupError } from './socket-bind.js';
import { processAlive } from '../core/store.js';

export const LOCK_FILE = '.lock';

export interface LockInfo {
  pid: number;
  socket: string;
  startedAt: string;
}

export interface CacheLock {
  readonly path: string;
  /** True when a lock left by a dead daemon was replaced. */
  readonly tookOverStale: LockInfo | undefined;
  release(): void;
}

/** Is `pid` a live process that could be a mediacached? */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (!processAlive(pid)) return false;
  // After a reboot the pid may belong to an unrelated process; on Linux we can tell.
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmd && !/mediacache|node/i.test(cmd)) return false;
  } catch (e) {
    // procfs is there but this pid is hidden from us (systemd ProtectProc=invisible):
    // it belongs to another user, so it is not a daemon of ours (a reused pid after
    // a crash and reboot). Without procfs (macOS, Windows) trust kill(0).
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && fs.existsSync('/proc/self/cmdline')) return false;
  }
  return true;
}

function readLock(p: string): LockInfo | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(p, 'utf8')) as Partial<LockInfo>;
    return typeof v.pid === 'number' ? { pid: v.pid, socket: String(v.socket ?? '?'), startedAt: String(v.startedAt ?? '?') } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Take `<cacheDir>/.lock` (created with O_EXCL). A lock whose pid is alive
 * makes us refuse with a message naming that daemon; a dead one is stale and
 * taken over.
 */
export function acquireCacheLock(cacheDir: string, socket: string, now: () => Date = () => new Date()): CacheLock {
  fs.mkdirSync(cacheDir, { recursive: true });
  const p = path.join(cacheDir, LOCK_FILE);
  const mine: LockInfo = { pid: process.pid, socket, startedAt: now().toISOString() };
  let stale: LockInfo | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      fs.writeFileSync(p, JSON.stringify(mine) + '\n', { flag: 'wx', mode: 0o644 });
      // Two daemons clearing the same stale lock at once: only one content survives.
      const back = readLock(p);
      if (back?.pid !== process.pid) continue;
      let released = false;
      return {
        path: p,
        tookOverStale: stale,
        release() {
          if (released) return;
          released = true;
          if (readLock(p)?.pid === process.pid) fs.rmSync(p, { force: true });
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const held = readLock(p);
    if (held && held.pid !== process.pid && pidAlive(held.pid)) {
      throw new StartupError(
        `another mediacached (pid ${held.pid}, socket ${held.socket}, started ${held.startedAt}) is already using the cache directory ${cacheDir}. ` +
          `Stop it first, or give this daemon another --cache-dir.`,
      );
    }
    // Dead owner, our own pid (a restart that reused it) or an unreadable file: stale.
    if (held) stale = held;
    fs.rmSync(p, { force: true });
  }
  throw new StartupError(`could not take the lock ${p} (another daemon keeps racing for it); try again.`);
}

export interface SignalHooks {
  logger: Logger;
  /** First SIGTERM/SIGINT; must resolve to the exit code. */
  shutdown(signal: NodeJS.Signals): Promise<number>;
  /** SIGHUP. */
  reload(): Promise<void>;
  /** Synchronous last words before a forced exit (remove our socket and lock). */
  forced?: () => void;
  /** Exit the process (injected for tests). */
  exit?: (code: number) => void;
}

/**
 * Install the signal and last-resort handlers. Returns a function that
 * runs the same shutdown as SIGTERM (for fatal start-up paths).
 */
export function installSignalHandlers(h: SignalHooks): (reason: string) => void {
  const exit = h.exit ?? ((code: number) => process.exit(code));
  let stopping = false;
  const stop = (signal: NodeJS.Signals | string): void => {
    if (stopping) {
      h.logger.warn(`second ${signal}: exiting now without draining`);
      try {
        h.forced?.();
      } finally {
        exit(1);
      }
      return;
    }
    stopping = true;
    h.logger.info(`${signal}: shutting down`);
    h.shutdown(signal as NodeJS.Signals).then(
      (code) => exit(code),
      (e: unknown) => {
        h.logger.error('shutdown failed', { error: e instanceof Error ? e : String(e) });
        exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  let reloading: Promise<void> | undefined;
  process.on('SIGHUP', () => {
    if (stopping) return;
    // Reloads are serialised: a burst of SIGHUPs runs at most one more.
    const run = (): Promise<void> =>
      h.reload().catch((e: unknown) => {
        h.logger.error('reload failed; keeping the running configuration', { error: e instanceof Error ? e : String(e) });
      });
    reloading = (reloading ?? Promise.resolve()).then(run);
  });
  // A bug in one request or timer must not take every other client down with it.
  process.on('uncaughtException', (e) => h.logger.error('uncaught exception (daemon keeps running)', { error: e }));
  process.on('unhandledRejection', (e) => h.logger.error('unhandled rejection (daemon keeps running)', { error: e instanceof Error ? e : String(e) }));
  return (reason: string) => stop(reason);
}
