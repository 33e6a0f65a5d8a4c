/**
 * An inbox's `processed/` folder, used without trusting its name.
 *
 * Whoever can write the inbox can replace `processed/` (a symlink to a folder
 * the writer could not write, or a folder of their own). So every use opens
 * it with O_DIRECTORY | O_NOFOLLOW, checks the opened descriptor — a real
 * directory, owned by the daemon's user, not writable by group or others —
 * and then works *through that descriptor*: on Linux the path
 * `/proc/self/fd/<fd>` names exactly the directory that was checked, so a
 * swap between the check and the rename changes nothing. (Elsewhere the
 * checked path itself is used; the check still refuses a link found there.)
 * A refusal is an error the inbox logs and retries later, with the file left
 * where it is.
 */
import fs from 'node:fs';
import path from 'node:path';

export const PROCESSED_DIR = 'processed';
/** Mode of a processed/ the daemon creates: what gates access is the inbox folder's own mode. */
const PROCESSED_MODE = 0o750;
const C = fs.constants;
const DIR_FLAGS = C.O_RDONLY | (C.O_DIRECTORY ?? 0) | (C.O_NOFOLLOW ?? 0);
const PROC_FD = process.platform === 'linux' && fs.existsSync('/proc/self/fd');

export class ProcessedDirError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProcessedDirError';
  }
}

export function processedPathOf(inbox: string): string {
  return path.join(inbox, PROCESSED_DIR);
}

/** Create processed/ when missing (never through a link); an existing one is checked at use. */
export async function ensureProcessedDir(inbox: string): Promise<void> {
  const dir = processedPathOf(inbox);
  try {
    await fs.promises.mkdir(dir, { mode: PROCESSED_MODE });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw e;
  }
  // Exact mode whatever the umask; keep a setgid bit inherited from the inbox (the group sees reports).
  await withProcessedDir(inbox, async (_p, fh) => {
    const st = await fh.stat();
    await fh.chmod(PROCESSED_MODE | (st.mode & 0o2000));
  });
}

/**
 * Run `fn` with a path that names the checked processed/ directory (and its
 * open handle, e.g. to fsync it). Throws ProcessedDirError when processed/ is
 * not a directory the daemon alone controls.
 */
export async function withProcessedDir<T>(inbox: string, fn: (dirPath: string, fh: fs.promises.FileHandle) => Promise<T>): Promise<T> {
  const dir = processedPathOf(inbox);
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(dir, DIR_FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR' || code === 'EMLINK') {
      throw new ProcessedDirError(`${dir} is not a directory (a symbolic link or a file); refusing to use it. Remove it; the daemon creates a fresh one at its next start`);
    }
    throw e;
  }
  try {
    const st = await fh.stat();
    const uid = process.geteuid?.();
    if (!st.isDirectory()) throw new ProcessedDirError(`${dir} is not a directory; refusing to use it`);
    if (uid !== undefined && st.uid !== uid) {
      throw new ProcessedDirError(`${dir} is owned by uid ${st.uid}, not by the daemon's user (uid ${uid}); refusing to use it. Remove it, or chown it to the daemon's user`);
    }
    if ((st.mode & 0o022) !== 0 && process.platform !== 'win32') {
      throw new ProcessedDirError(`${dir} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)}); refusing to use it. chmod g-w,o-w it`);
    }
    return await fn(PROC_FD ? `/proc/self/fd/${fh.fd}` : dir, fh);
  } finally {
    await fh.close().catch(() => undefined);
  }
}
