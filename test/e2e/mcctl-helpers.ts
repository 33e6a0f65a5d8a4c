/**
 * Shared by the mcctl end-to-end tests: run the real `node bin/mcctl.js`
 * (or any command line, e.g. under script(1)) and capture what it prints.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { REPO_ROOT } from '../helpers/build.js';
import { fixture } from '../helpers/origin.js';

export const MCCTL = path.join(REPO_ROOT, 'bin', 'mcctl.js');

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MEDIACACHE_')) env[k] = v;
  return env;
}

/** Run a command line (argv for node, or a shell line for script(1)), capture everything. */
export function exec(cmd: string, args: string[], input?: string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const p = spawn(cmd, args, { env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    p.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
    p.stdin.end(input ?? '');
  });
}

export function mcctl(d: { socket: string }, args: string[], input?: string): Promise<Ran> {
  return exec(process.execPath, [MCCTL, ...args, '--socket', d.socket], input);
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Files under the cache's type folders: what `stats` must add up to. */
export function filesOnDisk(cacheDir: string): { count: number; size: number } {
  let count = 0;
  let size = 0;
  for (const dir of ['images', 'videos', 'audio', 'documents']) {
    const p = path.join(cacheDir, dir);
    if (!fs.existsSync(p)) continue;
    for (const f of fs.readdirSync(p)) {
      count++;
      size += fs.statSync(path.join(p, f)).size;
    }
  }
  return { count, size };
}

/** A real MP4 head followed by padding: sniffed as video/mp4, big enough to throttle. */
export function bigMp4(bytes: number): Buffer {
  const head = fixture('sample.mp4');
  return Buffer.concat([head, crypto.randomBytes(bytes - head.length)]);
}

/**
 * How long a bare `node -e 0` takes right now. On a loaded machine node alone
 * can take seconds to start; time limits on mcctl are checked against the
 * larger of the limit and this baseline plus a margin, so they test mcctl
 * (no waiting for a timeout), not the machine's load.
 */
export async function nodeStartMs(): Promise<number> {
  return (await exec(process.execPath, ['-e', '0'])).ms;
}
