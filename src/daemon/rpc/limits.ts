/**
 * The socket server's resource limits, their defaults and the open-file
 * limit they must stay under. Every connection costs a descriptor and some
 * buffer, so without these a few hundred idle clients take the descriptors
 * the inbox watcher and downloads need (EMFILE), and subscribers that never
 * read grow the daemon's memory without bound.
 */
import fs from 'node:fs';

export interface ConnectionLimits {
  /** Connections served at once; more get one error line and are closed (default 128). */
  maxConnections?: number;
  /** Unsent output over all connections before congested ones are paused and lagging subscribers dropped (default 32 MiB). */
  maxBufferedBytes?: number;
  /** One subscriber's unsent output past which its events are dropped until it catches up (default 4 MiB). */
  subscriberBacklogBytes?: number;
  /** Close a connection idle (or not reading) this long, ms; 0 = never (default 5 min). */
  idleTimeoutMs?: number;
}

export const LIMIT_DEFAULTS = Object.freeze({
  maxConnections: 128,
  maxBufferedBytes: 32 * 1024 * 1024,
  subscriberBacklogBytes: 4 * 1024 * 1024,
  idleTimeoutMs: 5 * 60_000,
});

/** Progress ticks are dropped, silently, for a subscriber this far behind. */
export const PROGRESS_DROP_BYTES = 1024 * 1024;

/**
 * The soft RLIMIT_NOFILE from /proc/self/limits (Linux), or undefined where
 * it cannot be read. (Node has no getrlimit; it raises the soft limit to the
 * hard one at start-up, so this is what the process really has.)
 */
export function openFileLimit(read: () => string = () => fs.readFileSync('/proc/self/limits', 'utf8')): number | undefined {
  let text: string;
  try {
    text = read();
  } catch {
    return undefined;
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (!m || m[1] === 'unlimited') return undefined;
  return Number(m[1]);
}

/**
 * The connection limit actually used: the configured one, but at most a
 * quarter of the open-file limit, so descriptors remain for downloads, the
 * index, the inbox watcher and hooks however many clients connect.
 */
export function effectiveMaxConnections(configured: number, fdLimit: number | undefined): { limit: number; capped: boolean } {
  if (fdLimit === undefined) return { limit: configured, capped: false };
  const cap = Math.max(4, Math.floor(fdLimit / 4));
  return configured > cap ? { limit: cap, capped: true } : { limit: configured, capped: false };
}
