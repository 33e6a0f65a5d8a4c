/**
 * `mediacached` entry point: resolve the configuration (exit 2 with one
 * clear line when it is wrong), answer --help/--version, then load and run
 * the daemon (daemon.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import { parseCron } from '../core/util/cron.js';
import { currentPlatformEnv } from '../core/util/paths.js';
import { ConfigError, resolveConfig, type ResolveInput } from './config.js';
import { acquireCacheLock } from './lifecycle.js';
import { refuseIfSocketLive, StartupError } from './rpc/socket-bind.js';
import { applyUmask } from './security-config.js';

function readVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

function readFileIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

function cronError(expr: string): string | undefined {
  try {
    parseCron(expr);
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

function configInput(): ResolveInput {
  return { argv: process.argv.slice(2), env: process.env, platformEnv: currentPlatformEnv(), readFile: readFileIfExists, validateCron: cronError };
}

/** Filesystem errors that mean "this folder cannot be the cache" (not a passing failure), in words. */
const UNUSABLE_DIR: Readonly<Record<string, string>> = {
  ENOTDIR: 'a part of the path is a file, not a folder',
  EEXIST: 'a file of that name is in the way',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'the path is too long',
  ENOENT: 'a part of the path does not exist',
};

function unusableDirReason(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !(code in UNUSABLE_DIR)) return undefined;
  const p = (e as NodeJS.ErrnoException).path;
  return `${UNUSABLE_DIR[code]}${p ? ` (${p})` : ''} [${code}]`;
}

async function main(): Promise<number> {
  if (process.argv[2] === 'migrate') {
    const { runMigrate } = await import('./migrate-cmd.js');
    return runMigrate(process.argv.slice(3), process.env, currentPlatformEnv(), process.stdout, process.stderr);
  }
  let resolved;
  try {
    resolved = await resolveConfig(configInput());
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`mediacached: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (resolved.kind === 'help') {
    process.stdout.write(resolved.text + '\n');
    return 0;
  }
  if (resolved.kind === 'version') {
    process.stdout.write(readVersion() + '\n');
    return 0;
  }
  // Single instance, checked before the engine is even loaded, so a second
  // daemon is turned away within a second: a live socket, then the cache lock.
  const config = resolved.config;
  // Before anything is created (socket folder, lock, cache, index, reports, log file):
  // state is private unless --umask says otherwise. The one place the umask is set.
  applyUmask(config.umask);
  let lock;
  try {
    await refuseIfSocketLive(config.socket);
    // Cluster mode: the cache dir is shared by design; the lock guards this daemon's own state dir.
    lock = acquireCacheLock(config.database ? config.indexDir : config.cacheDir, config.socket);
  } catch (e) {
    if (e instanceof StartupError) {
      process.stderr.write(`mediacached: ${e.message}\n`);
      return 1;
    }
    const why = unusableDirReason(e);
    if (why) {
      // A usage problem (like a bad flag): name the option, exit 2.
      process.stderr.write(`mediacached: --cache-dir ${config.cacheDir} cannot be used: ${why}. Give --cache-dir (env MEDIACACHE_CACHE_DIR) a folder this user can create and write.\n`);
      return 2;
    }
    throw e;
  }
  // Memory: undici parses HTTP/1 with a WebAssembly module (llhttp). V8 first
  // runs it from its baseline compiler and later, once it is hot (a few
  // seconds into a transfer), recompiles it with TurboFan on a background
  // thread, whose working memory (~30 MiB for llhttp's large parser function)
  // came on top of the downloads' buffers: the daemon's peak. --no-liftoff
  // compiles each function with TurboFan once, on its first call (the first
  // request), while little else is held.
  (await import('node:v8')).setFlagsFromString('--no-liftoff');
  // Memory: bound the dead socket buffers of large downloads (young-gc.ts);
  // on 2 cores or fewer, no hash worker isolate (stream-hasher.ts).
  const { enableYoungGc } = await import('../core/util/young-gc.js');
  enableYoungGc();
  if (os.availableParallelism() <= 2) (await import('../core/hash/stream-hasher.js')).setInlineHashing(true);
  const { runDaemon } = await import('./daemon.js');
  return runDaemon(config, configInput, readVersion(), lock);
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`mediacached: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
