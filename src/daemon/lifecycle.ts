/**
 * Process lifecycle: one daemon per cache directory (an exclusive lock
 * file), signal handling (SIGTERM/SIGINT drain once, a second one exits at
 * once; SIGHUP reloads), and last-resort error logging.
 *
 * The lock is taken before anything touches the cache or the socket, so two
 * daemons never share an index even when they were given different sockets.
 */
import fs from 'node:fs';
import type { Logger } from '../core/util/logger.js';
import { StartupError } from './rpc/socket-bind.js';
import { MediaCacheError } from '../core/errors.js';
import { acquireCacheLock as takeLock, CacheInUseError, type CacheLock } from '../core/cache/writer-lock.js';

export { LOCK_FILE, pidAlive, type CacheLock, type LockInfo } from '../core/cache/writer-lock.js';

/**
 * Take `<cacheDir>/.lock` for this daemon (see core/cache-lock.ts). A live
 * holder makes us refuse with a StartupError naming it; a dead one is stale
 * and taken over.
 */
export function acquireCacheLock(cacheDir: string, socket: string, now: () => Date = () => new Date()): CacheLock {
  try {
    return takeLock(cacheDir, { socket, now });
  } catch (e) {
    if (e instanceof CacheInUseError) {
      const h = e.holder;
      throw new StartupError(
        h.socket
          ? `another mediacached (pid ${h.pid}, socket ${h.socket}, started ${h.startedAt}) is already using the cache directory ${cacheDir}. ` +
              `Stop it first, or give this daemon another --cache-dir.`
          : `the cache directory ${cacheDir} is in use by process ${h.pid} (a library user, since ${h.startedAt}). ` +
              `Let it finish, or give this daemon another --cache-dir.`,
      );
    }
    if (e instanceof MediaCacheError) throw new StartupError(`${e.message}.`);
    throw e;
  }
}

/**
 * End the process now, whatever is stuck. process.exit() joins libuv's
 * thread pool, so one worker parked in a system call that never returns (an
 * open() of a FIFO, a read on a dead network mount) would keep the process —
 * and its cache lock — alive for good. Instead: the last words written
 * synchronously, `forced` (remove socket and lock), then SIGKILL to ourselves
 * (a shell sees status 137, systemd "killed").
 */
export function hardExit(message: string, forced?: () => void): void {
  try {
    fs.writeSync(2, `mediacached: ${message}\n`);
  } catch {
    /* stderr gone: nothing to tell */
  }
  try {
    forced?.();
  } finally {
    process.kill(process.pid, 'SIGKILL');
  }
}

/**
 * The bound on a shutdown: if it has not finished `ms` after the signal,
 * hardExit. The timer is unref'd, so it never keeps a finished daemon alive.
 */
export function armShutdownDeadline(ms: number, signal: string, logger: Logger, forced?: () => void): NodeJS.Timeout {
  const t = setTimeout(() => {
    const msg = `shutdown still not finished ${ms} ms after ${signal}; exiting anyway`;
    logger.error(msg);
    hardExit(msg, forced);
  }, ms);
  t.unref();
  return t;
}

export interface SignalHooks {
  logger: Logger;
  /** First SIGTERM/SIGINT; must resolve to the exit code. */
  shutdown(signal: NodeJS.Signals): Promise<number>;
  /** SIGHUP. */
  reload(): Promise<void>;
  /** Synchronous last words before a forced exit (remove our socket and lock). */
  forced?: () => void;
  /** Exit the process (injected for tests). Default: process.exit, and hardExit for a second signal. */
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
      if (!h.exit) return hardExit(`second ${signal}: exiting now without draining`, h.forced);
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
