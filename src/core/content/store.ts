/**
 * The on-disk layout and the one way content enters it:
 * a complete, hashed file in `.tmp/` renamed into `{type}/{md5}{ext}`.
 *
 * Invariant: a file under a type folder is always complete. It is fsynced
 * before the rename, and the rename is atomic on one filesystem, so a reader
 * or a crash never sees a partial file under its final name.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { MediaCacheError, toMediaCacheError } from '../errors.js';
import { MEDIA_TYPES, TYPE_DIRS, type MediaType } from '../types.js';

export const TMP_DIR_NAME = '.tmp';

/** Backup tools (tar --exclude-caches, borg, restic) skip folders with this file. */
export const CACHEDIR_TAG =
  'Signature: 8a477f597d28d172789f06886806bc55\n' +
  '# This file is a cache directory tag created by mediacache.\n' +
  '# For information about cache directory tags, see:\n' +
  '#\thttps://bford.info/cachedir/\n';

const MD5_RE = /^[0-9a-f]{32}$/;
const EXT_RE = /^\.[a-z0-9]{1,8}$/;

export function tmpDirOf(cacheDir: string): string {
  return path.join(cacheDir, TMP_DIR_NAME);
}

/** `<cacheDir>/<typeDir>/<md5><ext>`; refuses anything that could escape the folder. */
export function storePath(cacheDir: string, rec: { md5: string; mediaType: MediaType; extension: string }): string {
  if (!MD5_RE.test(rec.md5)) throw new MediaCacheError('E_BAD_REQUEST', `not a lowercase hex md5: ${JSON.stringify(rec.md5)}`);
  if (!EXT_RE.test(rec.extension)) throw new MediaCacheError('E_BAD_REQUEST', `bad extension: ${JSON.stringify(rec.extension)}`);
  const dir = TYPE_DIRS[rec.mediaType];
  if (!dir) throw new MediaCacheError('E_BAD_REQUEST', `unknown media type: ${JSON.stringify(rec.mediaType)}`);
  return path.join(cacheDir, dir, rec.md5 + rec.extension);
}

/** Type folders, `.tmp/` and CACHEDIR.TAG; idempotent. Returns the tmp dir. */
export async function ensureCacheLayout(cacheDir: string): Promise<string> {
  try {
    await fs.mkdir(cacheDir, { recursive: true });
    await Promise.all(MEDIA_TYPES.map((t) => fs.mkdir(path.join(cacheDir, TYPE_DIRS[t]), { recursive: true })));
    const tmp = tmpDirOf(cacheDir);
    await fs.mkdir(tmp, { recursive: true });
    try {
      await fs.writeFile(path.join(cacheDir, 'CACHEDIR.TAG'), CACHEDIR_TAG, { flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    return tmp;
  } catch (e) {
    throw toMediaCacheError(e);
  }
}

/**
 * Tmp files already fsynced by their writer (fetchToTmp syncs on the fd it
 * still has open), so commitTmp need not reopen them: that saved three of
 * eight filesystem operations per small download. Forgetting an entry is
 * always safe (it only costs a redundant fsync), so the set is capped.
 */
const syncedTmpFiles = new Set<string>();
const SYNCED_MAX = 4096;

/** Record that `tmpPath` is complete and fsynced; commitTmp then skips its own fsync. */
export function markSynced(tmpPath: string): void {
  if (syncedTmpFiles.size >= SYNCED_MAX) {
    const oldest = syncedTmpFiles.values().next().value;
    if (oldest !== undefined) syncedTmpFiles.delete(oldest);
  }
  syncedTmpFiles.add(tmpPath);
}

/**
 * Move a complete tmp file to its final name. The tmp file is fsynced first
 * so the rename never publishes data that is still only in the page cache.
 * The directory is not fsynced per file (that doubled the cost of small
 * downloads): a rename lost in a crash leaves an index entry whose file is
 * missing, which the integrity sweep detects and re-fetches.
 * An existing file of the same size under the same content-addressed name
 * is the same content (the caller checked md5 and sha256), so losing a
 * rename race to it is success; the tmp copy is dropped.
 */
export async function commitTmp(tmpPath: string, finalPath: string, opts: RenameRetryOptions = {}): Promise<void> {
  try {
    if (!syncedTmpFiles.delete(tmpPath)) {
      const fh = await fs.open(tmpPath, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    try {
      await renameWithRetry(tmpPath, finalPath, opts);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && (await exists(tmpPath))) {
        // The type folder is missing (deleted by hand?): create it and retry once.
        await fs.mkdir(path.dirname(finalPath), { recursive: true });
        await renameWithRetry(tmpPath, finalPath, opts);
      } else if (await sameSize(tmpPath, finalPath)) {
        await removeQuietly(tmpPath);
        return;
      } else {
        throw e;
      }
    }
  } catch (e) {
    throw toMediaCacheError(e);
  }
}

export interface RenameRetryOptions {
  platform?: NodeJS.Platform;
  /** Total tries, including the first. */
  attempts?: number;
  rename?: (from: string, to: string) => Promise<void>;
  /** First backoff; doubles each try. */
  delayMs?: number;
}

/**
 * Windows refuses a rename while another process (antivirus, indexer, a
 * reader) holds either file open: EPERM/EBUSY/EACCES that clear within
 * moments. Retry those there; elsewhere they are real and thrown at once.
 */
export async function renameWithRetry(from: string, to: string, opts: RenameRetryOptions = {}): Promise<void> {
  const platform = opts.platform ?? process.platform;
  const attempts = Math.max(1, opts.attempts ?? 8);
  const rename = opts.rename ?? fs.rename;
  let delay = opts.delayMs ?? 20;
  for (let i = 1; ; i++) {
    try {
      await rename(from, to);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const transient = platform === 'win32' && (code === 'EPERM' || code === 'EBUSY' || code === 'EACCES');
      if (!transient || i >= attempts) throw e;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 500);
    }
  }
}

/** Remove a file or folder, ignoring "not there" and any other failure (cleanup paths). */
export async function removeQuietly(p: string): Promise<void> {
  syncedTmpFiles.delete(p);
  try {
    await fs.rm(p, { force: true, recursive: true });
  } catch {
    // Best effort: a leftover in .tmp/ is swept later; never mask the real error.
  }
}

async function sameSize(a: string, b: string): Promise<boolean> {
  try {
    const [sa, sb] = await Promise.all([fs.stat(a), fs.stat(b)]);
    return sa.isFile() && sb.isFile() && sa.size === sb.size;
  } catch {
    return false;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Name of a partial download in `.tmp/`: `<pid>-<uuid>.part`. The owner's pid
 * in the name lets a later process tell a dead download's leftovers from a
 * live one's (several processes may share a cache: a daemon and library users).
 */
export function tmpFileName(pid: number = process.pid): string {
  return `${pid}-${randomUUID()}.part`;
}

/** Whether a process with this pid exists (EPERM: it does, but belongs to someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove partial downloads whose owning process is gone (a crash or SIGKILL
 * mid-download). Files of live processes, ours included, and names without a
 * pid are left alone (the sweep's clean-tmp step ages those out after a day).
 * Returns how many were removed.
 */
export async function removeDeadTmp(tmpDir: string, isAlive: (pid: number) => boolean = processAlive): Promise<number> {
  let names: string[];
  try {
    names = await fs.readdir(tmpDir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const m = /^(\d+)-[0-9a-f-]{36}\.part$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isAlive(pid)) continue;
    await removeQuietly(path.join(tmpDir, name));
    removed++;
  }
  return removed;
}
