/**
 * Make sure `dist/` is at least as new as `src/` before a test spawns the
 * real binaries (`bin/*.js` import `dist/`). Runs `tsc -p tsconfig.build.json`
 * at most once at a time across parallel test files: a lock directory
 * (mkdir is atomic) serialises builders, the others wait and re-check.
 *
 * tsc emits even when some file has type errors (noEmitOnError is off), so a
 * half-written module elsewhere in the tree does not stop the daemon tests;
 * the errors are copied to stderr and the build counts as done when the
 * outputs exist.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SRC = path.join(REPO_ROOT, 'src');
const DIST = path.join(REPO_ROOT, 'dist');
const LOCK = path.join(
  os.tmpdir(),
  `mediacache-build-${crypto.createHash('md5').update(REPO_ROOT).digest('hex').slice(0, 8)}.lock`,
);
/** A builder that holds the lock longer than this is presumed dead. */
const STALE_LOCK_MS = 180_000;

function* tsFiles(dir: string): Generator<string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* tsFiles(p);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) yield p;
  }
}

/** True when some src/**.ts has no dist twin or is newer than it. */
export function distIsStale(): boolean {
  for (const src of tsFiles(SRC)) {
    const out = path.join(DIST, path.relative(SRC, src)).replace(/\.ts$/, '.js');
    let outM: number;
    try {
      outM = fs.statSync(out).mtimeMs;
    } catch {
      return true;
    }
    if (fs.statSync(src).mtimeMs > outM) return true;
  }
  return false;
}

function tryLock(): boolean {
  try {
    fs.mkdirSync(LOCK);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    try {
      if (Date.now() - fs.statSync(LOCK).mtimeMs > STALE_LOCK_MS) fs.rmSync(LOCK, { recursive: true, force: true });
    } catch {
      /* raced with its owner removing it */
    }
    return false;
  }
}

let built = false;

/** Build dist once if it is older than src. Safe to call from every test file. */
export async function ensureBuilt(): Promise<void> {
  if (built) return;
  const deadline = Date.now() + STALE_LOCK_MS + 30_000;
  while (distIsStale()) {
    if (tryLock()) {
      try {
        if (distIsStale()) {
          const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
            cwd: REPO_ROOT,
            encoding: 'utf8',
          });
          if (r.status !== 0) {
            process.stderr.write(`ensureBuilt: tsc reported errors (outputs still emitted):\n${r.stdout}${r.stderr}\n`);
          }
          if (!fs.existsSync(path.join(DIST, 'daemon', 'main.js'))) {
            throw new Error(`ensureBuilt: tsc did not produce dist/daemon/main.js:\n${r.stdout}${r.stderr}`);
          }
        }
      } finally {
        fs.rmSync(LOCK, { recursive: true, force: true });
      }
      break;
    }
    if (Date.now() > deadline) throw new Error(`ensureBuilt: gave up waiting for build lock ${LOCK}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  built = true;
}
