/**
 * One writer per cache directory: `<cacheDir>/.lock`, created with O_EXCL and
 * holding the owner's pid. The index has no merge step, so two processes
 * writing it at once would each overwrite the other's shards (last writer
 * wins); the lock makes the second one stop with a clear error instead.
 *
 * Both the daemon (which takes it before it even binds its socket) and
 * library users (`MediaCache.open`) take the same lock, so a script and the
 * daemon can never write one cache at the same time. Within one process a
 * second open of a directory already open there is refused the same way.
 *
 * A lock whose pid is dead, or not a node/mediacache process (a pid reused
 * after a reboot), is stale and taken over.
 */
import fs from 'node:fs';
import path from 'node:path';
import { MediaCacheError } from '../errors.js';
import { processAlive } from '../content/store.js';

export const LOCK_FILE = '.lock';

export interface LockInfo {
  pid: number;
  /** The daemon's socket; empty for a library user. */
  socket: string;
  startedAt: string;
}

export interface CacheLock {
  readonly path: string;
  /** Set when a lock left by a dead process was replaced. */
  readonly tookOverStale: LockInfo | undefined;
  /** Remove the lock (only if it is still ours). Idempotent. */
  release(): void;
}

/** The cache directory is being written by another process (or another instance in this one). */
export class CacheInUseError extends MediaCacheError {
  constructor(
    message: string,
    readonly holder: LockInfo,
  ) {
    super('E_UNAVAILABLE', message);
    this.name = 'CacheInUseError';
  }
}

/** Lock files this process holds, by absolute path. */
const heldHere = new Set<string>();

/** Is `pid` a live process that could be a mediacache writer? */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (!processAlive(pid)) return false;
  // After a reboot the pid may belong to an unrelated process; on Linux we can tell.
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmd && !/mediacache|node/i.test(cmd)) return false;
  } catch (e) {
    // procfs is there but this pid is hidden from us (systemd ProtectProc=invisible):
    // it belongs to another user, so it is not a process of ours (a reused pid after
    // a crash and reboot). Without procfs (macOS, Windows) trust kill(0).
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && fs.existsSync('/proc/self/cmdline')) return false;
  }
  return true;
}

export function readLock(p: string): LockInfo | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(p, 'utf8')) as Partial<LockInfo>;
    return typeof v.pid === 'number' ? { pid: v.pid, socket: String(v.socket ?? ''), startedAt: String(v.startedAt ?? '?') } : undefined;
  } catch {
    return undefined;
  }
}

function describe(h: LockInfo): string {
  return h.socket ? `mediacached (pid ${h.pid}, socket ${h.socket}, started ${h.startedAt})` : `process ${h.pid} (a library user, since ${h.startedAt})`;
}

/**
 * Take `<cacheDir>/.lock`. Throws CacheInUseError (E_UNAVAILABLE) naming the
 * holder when a live process, or this one, already has it.
 */
export function acquireCacheLock(cacheDir: string, opts: { socket?: string; now?: () => Date } = {}): CacheLock {
  fs.mkdirSync(cacheDir, { recursive: true });
  const p = path.resolve(cacheDir, LOCK_FILE);
  const mine: LockInfo = { pid: process.pid, socket: opts.socket ?? '', startedAt: (opts.now?.() ?? new Date()).toISOString() };
  if (heldHere.has(p)) {
    const h = readLock(p) ?? mine;
    throw new CacheInUseError(`the cache directory ${cacheDir} is already open in this process; share that instance (or close it first)`, h);
  }
  let stale: LockInfo | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      fs.writeFileSync(p, JSON.stringify(mine) + '\n', { flag: 'wx', mode: 0o644 });
      // Two processes clearing the same stale lock at once: only one content survives.
      const back = readLock(p);
      if (back?.pid !== process.pid || back.startedAt !== mine.startedAt) continue;
      heldHere.add(p);
      let released = false;
      return {
        path: p,
        tookOverStale: stale,
        release() {
          if (released) return;
          released = true;
          heldHere.delete(p);
          const cur = readLock(p);
          if (cur?.pid === process.pid && cur.startedAt === mine.startedAt) fs.rmSync(p, { force: true });
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const held = readLock(p);
    if (held && held.pid !== process.pid && pidAlive(held.pid)) {
      throw new CacheInUseError(
        `the cache directory ${cacheDir} is in use by ${describe(held)}; ` +
          (held.socket ? 'send it work with mcctl or its socket, or use another cache directory' : 'wait for it to close the cache, or use another cache directory'),
        held,
      );
    }
    // Dead owner, our own pid from an earlier life (a restart that reused it) or an unreadable file: stale.
    if (held) stale = held;
    fs.rmSync(p, { force: true });
  }
  throw new MediaCacheError('E_UNAVAILABLE', `could not take the lock ${p} (another process keeps racing for it); try again`);
}
