/**
 * The daemon's configuration, resolved once from flags > environment >
 * JSON config file > platform defaults into one frozen object.
 *
 * Everything is injected (argv, env, platform, file reader, cwd) so the
 * whole precedence table is a pure function tested without a process.
 * Bad input throws ConfigError whose message says what to change; main.ts
 * prints it and exits 2.
 */
import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { checkSocketPath, defaultCacheDir, defaultConfigFile, defaultSocketPath, defaultStateDir, currentPlatformEnv, type PlatformEnv } from '../core/util/paths.js';
import { CACHE_DEFAULTS } from '../core/cache/options.js';
import { convertHookSetting, resolveHookSettings } from './hooks/config.js';
import { convertSecuritySetting, resolveSecuritySettings } from './security-config.js';
import type { UrlPolicyOptions } from '../core/fetch/url-policy.js';
import type { ErrorCode } from '../core/errors.js';
import { LIMIT_DEFAULTS } from './rpc/limits.js';

export interface DaemonConfig {
  /** The config file actually read, if any. */
  configFile?: string;
  cacheDir: string;
  indexDir: string;
  inboxes: string[];
  socket: string;
  concurrency: number;
  perHost: number;
  timeoutMs: number;
  maxFileSize: number;
  sweepSchedule: string;
  /** MB/s the sweep may read; 0 = unlimited. */
  sweepRate: number;
  /** ms a sweep may run before it stops (and the next resumes); 0 = no limit. */
  sweepMaxDuration: number;
  logLevel: string;
  logFile?: string;
  /** How long SIGTERM waits for running downloads before re-queueing them. */
  graceMs: number;
  /** Exec hooks (argv, no shell) for job.done / job.failed (docs/hooks.md). */
  onDone?: string[];
  onFailed?: string[];
  /** Time limit of one exec hook run and of one webhook request, ms. */
  hookTimeoutMs: number;
  /** Exec hooks running at once. */
  hookConcurrency: number;
  /** Webhook URLs every event is POSTed to. */
  webhooks: string[];
  /** HMAC-SHA256 key of webhook signatures (from --webhook-secret or read from --webhook-secret-file). */
  webhookSecret?: string;
  webhookSecretFile?: string;
  /** Retries of a job after a retryable failure; 0 = one try only. */
  retries: number;
  /** First wait before a retry, ms; doubles per retry (with jitter) up to 5 min. */
  retryDelayMs: number;
  /** Ended jobs remembered (newest first). */
  jobHistory: number;
  /** Ended jobs older than this are forgotten, ms. */
  jobHistoryAgeMs: number;
  /** Bytes the cached files may take; 0 = no limit. */
  maxSize: number;
  /** Bytes to keep free on the cache's filesystem; 0 = no limit. */
  minFree: number;
  /** Sweeps ask the origin about content not confirmed for this long, ms; 0 = never. */
  revalidateAfter: number;
  /**
   * Cluster mode: `postgres://…` holding records, URLs and the job queue
   * (docs/postgres.md). May carry a password: never log or show it whole
   * (describeTarget() gives "db on host:port").
   */
  database?: string;
  /** URL lines one inbox file may hold; a longer file is refused whole. */
  inboxMaxLines: number;
  /** Bytes one inbox file may hold; a larger file is refused whole. */
  inboxMaxBytes: number;
  /** Which hosts, addresses and ports may be fetched (docs/security.md). */
  urlPolicy: UrlPolicyOptions;
  /** The process umask, set at start (default 0o077: state is private). */
  umask: number;
  /** Socket connections served at once (capped at a quarter of the open-file limit). */
  maxConnections: number;
  /** Close socket connections idle (or not reading) this long, ms; 0 = never. */
  idleTimeoutMs: number;
}

/** Keys SIGHUP applies to a running daemon; the rest need a restart. */
export const RELOADABLE_KEYS = ['concurrency', 'perHost', 'sweepSchedule', 'sweepRate', 'sweepMaxDuration', 'logLevel', 'logFile'] as const;

export const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] as const;

/** The daemon's defaults; the engine's own come from CACHE_DEFAULTS so the two never drift. */
export const DEFAULTS = {
  concurrency: CACHE_DEFAULTS.concurrency,
  perHost: 4,
  timeoutMs: CACHE_DEFAULTS.timeoutMs,
  maxFileSize: CACHE_DEFAULTS.maxFileSize,
  sweepSchedule: '0 3 * * *',
  sweepRate: 64,
  sweepMaxDuration: 0,
  logLevel: 'info',
  graceMs: 10_000,
  hookTimeoutMs: 30_000,
  hookConcurrency: 2,
  retries: 3,
  retryDelayMs: 5000,
  jobHistory: 10_000,
  jobHistoryAgeMs: 7 * 86_400_000,
  maxSize: 0,
  minFree: 0,
  revalidateAfter: 0,
  inboxMaxLines: 100_000,
  inboxMaxBytes: 32 * 1024 ** 2,
  maxConnections: LIMIT_DEFAULTS.maxConnections,
  idleTimeoutMs: LIMIT_DEFAULTS.idleTimeoutMs,
} as const;

/** Thrown for any configuration the user must fix; main prints `message` and exits 2. */
export class ConfigError extends Error {
  readonly exitCode = 2;
  /** A stable code for refusals a script may branch on (printed before the message); most config errors have none. */
  readonly code?: ErrorCode;
  constructor(message: string, code?: ErrorCode) {
    super(message);
    this.name = 'ConfigError';
    if (code !== undefined) this.code = code;
  }
}

export interface ResolveInput {
  /** Arguments after the script name (process.argv.slice(2)). */
  argv: readonly string[];
  /** Where MEDIACACHE_* are read (normally process.env). */
  env: Readonly<Record<string, string | undefined>>;
  /** For defaults (XDG, systemd directories, Windows) and the socket limit. */
  platformEnv: PlatformEnv;
  /** Read a text file; return undefined when it does not exist, throw for other errors. */
  readFile: (file: string) => string | undefined;
  /** Base for relative paths given as flags or env. Default: process.cwd(). */
  cwd?: string;
  /** Validate a cron expression; return an error message or undefined. */
  validateCron?: (expr: string) => string | undefined;
}

export type ResolveResult = { kind: 'config'; config: DaemonConfig } | { kind: 'help'; text: string } | { kind: 'version' };

type Kind = 'path' | 'paths' | 'int' | 'number' | 'bytes' | 'duration' | 'string' | 'level' | 'argv' | 'urls' | 'secret' | 'words' | 'umask' | 'preset' | 'database';

/** Kinds given as a repeatable flag (an array) and a list in env and file. */
const LIST_KINDS: ReadonlySet<Kind> = new Set<Kind>(['paths', 'urls', 'words']);

/** Settings that are not config fields themselves but parts of one (the URL policy's lists). */
export type PolicyListKey = 'allowHosts' | 'denyHosts' | 'allowCidrs' | 'denyCidrs' | 'allowPorts';

interface Setting {
  key: keyof DaemonConfig | PolicyListKey;
  flag: string;
  env: string[];
  /** Accepted JSON keys: the flag's camelCase first. */
  fileKeys: string[];
  kind: Kind;
  min?: number;
  describe: string;
}

const SETTINGS: readonly Setting[] = [
  { key: 'cacheDir', flag: 'cache-dir', env: ['MEDIACACHE_DIR', 'MEDIACACHE_CACHE_DIR'], fileKeys: ['cacheDir'], kind: 'path', describe: 'cache root' },
  { key: 'inboxes', flag: 'inbox', env: ['MEDIACACHE_INBOX'], fileKeys: ['inbox', 'inboxes'], kind: 'paths', describe: 'watched inbox folder (repeatable; env is a path list)' },
  { key: 'socket', flag: 'socket', env: ['MEDIACACHE_SOCKET'], fileKeys: ['socket'], kind: 'path', describe: 'Unix socket path, or \\\\.\\pipe\\NAME on Windows' },
  { key: 'indexDir', flag: 'index', env: ['MEDIACACHE_INDEX'], fileKeys: ['index', 'indexDir'], kind: 'path', describe: 'index and daemon state location (default <cache-dir>/index; with --database <cache-dir>/.nodes/<host>-<socket digest>)' },
  { key: 'concurrency', flag: 'concurrency', env: ['MEDIACACHE_CONCURRENCY'], fileKeys: ['concurrency'], kind: 'int', min: 1, describe: `parallel downloads (default ${DEFAULTS.concurrency})` },
  { key: 'perHost', flag: 'per-host', env: ['MEDIACACHE_PER_HOST'], fileKeys: ['perHost'], kind: 'int', min: 1, describe: `parallel downloads per host (default ${DEFAULTS.perHost})` },
  { key: 'timeoutMs', flag: 'timeout', env: ['MEDIACACHE_TIMEOUT'], fileKeys: ['timeout', 'timeoutMs'], kind: 'duration', min: 1, describe: `per-download stall/overall limit, ms (default ${DEFAULTS.timeoutMs})` },
  { key: 'maxFileSize', flag: 'max-file-size', env: ['MEDIACACHE_MAX_FILE_SIZE'], fileKeys: ['maxFileSize'], kind: 'bytes', min: 1, describe: 'refuse larger content, bytes (suffixes K, M, G allowed; default 2G)' },
  { key: 'sweepSchedule', flag: 'sweep-schedule', env: ['MEDIACACHE_SWEEP_SCHEDULE'], fileKeys: ['sweepSchedule'], kind: 'string', describe: `integrity sweep cron schedule (default "${DEFAULTS.sweepSchedule}")` },
  { key: 'sweepRate', flag: 'sweep-rate', env: ['MEDIACACHE_SWEEP_RATE'], fileKeys: ['sweepRate'], kind: 'number', min: 0, describe: `sweep read rate, MB/s, 0 = unlimited (default ${DEFAULTS.sweepRate})` },
  { key: 'sweepMaxDuration', flag: 'sweep-max-duration', env: ['MEDIACACHE_SWEEP_MAX_DURATION'], fileKeys: ['sweepMaxDuration'], kind: 'duration', min: 0, describe: 'stop a sweep after this long, ms or 30m/2h, 0 = no limit' },
  { key: 'logLevel', flag: 'log-level', env: ['MEDIACACHE_LOG_LEVEL'], fileKeys: ['logLevel'], kind: 'level', describe: `${LOG_LEVELS.join('|')} (default ${DEFAULTS.logLevel})` },
  { key: 'logFile', flag: 'log-file', env: ['MEDIACACHE_LOG_FILE'], fileKeys: ['logFile'], kind: 'path', describe: 'also write JSON lines to this file (reopened on SIGHUP)' },
  { key: 'retries', flag: 'retries', env: ['MEDIACACHE_RETRIES'], fileKeys: ['retries'], kind: 'int', min: 0, describe: `retries of a job after a network error, timeout, 408, 429 or 5xx; 0 = one try (default ${DEFAULTS.retries})` },
  { key: 'retryDelayMs', flag: 'retry-delay', env: ['MEDIACACHE_RETRY_DELAY'], fileKeys: ['retryDelay', 'retryDelayMs'], kind: 'duration', min: 0, describe: 'first wait before a retry, ms or 10s; doubles per retry up to 5 min (default 5s)' },
  { key: 'jobHistory', flag: 'job-history', env: ['MEDIACACHE_JOB_HISTORY'], fileKeys: ['jobHistory'], kind: 'int', min: 0, describe: `ended jobs remembered for jobs/retry (default ${DEFAULTS.jobHistory})` },
  { key: 'jobHistoryAgeMs', flag: 'job-history-age', env: ['MEDIACACHE_JOB_HISTORY_AGE'], fileKeys: ['jobHistoryAge', 'jobHistoryAgeMs'], kind: 'duration', min: 0, describe: 'forget ended jobs older than this, ms or 12h/7d (default 7d)' },
  { key: 'maxSize', flag: 'max-size', env: ['MEDIACACHE_MAX_SIZE'], fileKeys: ['maxSize'], kind: 'bytes', min: 0, describe: 'cache size quota: evict least recently used unpinned files past it, down to 90% (e.g. 50G; 0 = none)' },
  { key: 'minFree', flag: 'min-free', env: ['MEDIACACHE_MIN_FREE'], fileKeys: ['minFree'], kind: 'bytes', min: 0, describe: 'keep this much disk space free, evicting as for --max-size (e.g. 5G; 0 = none)' },
  { key: 'revalidateAfter', flag: 'revalidate-after', env: ['MEDIACACHE_REVALIDATE_AFTER'], fileKeys: ['revalidateAfter'], kind: 'duration', min: 0, describe: 'sweeps ask origins (If-None-Match/If-Modified-Since) about content older than this, e.g. 7d (0 = never)' },
  { key: 'graceMs', flag: 'grace', env: ['MEDIACACHE_GRACE'], fileKeys: ['grace', 'graceMs'], kind: 'duration', min: 0, describe: `on SIGTERM, wait this long for running downloads, ms (default ${DEFAULTS.graceMs})` },
  { key: 'onDone', flag: 'on-done', env: ['MEDIACACHE_ON_DONE'], fileKeys: ['onDone'], kind: 'argv', describe: 'run this program after each finished download, record as JSON on stdin (no shell: words split, or a JSON array; see docs/hooks.md)' },
  { key: 'onFailed', flag: 'on-failed', env: ['MEDIACACHE_ON_FAILED'], fileKeys: ['onFailed'], kind: 'argv', describe: 'run this program after each failed download, error as JSON on stdin' },
  { key: 'hookTimeoutMs', flag: 'hook-timeout', env: ['MEDIACACHE_HOOK_TIMEOUT'], fileKeys: ['hookTimeout', 'hookTimeoutMs'], kind: 'duration', min: 1, describe: `kill an exec hook, abandon a webhook request after this long, ms or 30s (default ${DEFAULTS.hookTimeoutMs})` },
  { key: 'hookConcurrency', flag: 'hook-concurrency', env: ['MEDIACACHE_HOOK_CONCURRENCY'], fileKeys: ['hookConcurrency'], kind: 'int', min: 1, describe: `exec hooks running at once (default ${DEFAULTS.hookConcurrency})` },
  { key: 'webhooks', flag: 'webhook', env: ['MEDIACACHE_WEBHOOK'], fileKeys: ['webhook', 'webhooks'], kind: 'urls', describe: 'POST every event to this http(s) URL, signed, at least once (repeatable; env is a space-separated list)' },
  { key: 'webhookSecret', flag: 'webhook-secret', env: ['MEDIACACHE_WEBHOOK_SECRET'], fileKeys: ['webhookSecret'], kind: 'secret', describe: 'HMAC-SHA256 key for webhook signatures (visible in ps: prefer --webhook-secret-file)' },
  { key: 'webhookSecretFile', flag: 'webhook-secret-file', env: ['MEDIACACHE_WEBHOOK_SECRET_FILE'], fileKeys: ['webhookSecretFile'], kind: 'path', describe: 'read the webhook secret from this file (trailing newline ignored)' },
  { key: 'database', flag: 'database', env: ['MEDIACACHE_DATABASE'], fileKeys: ['database'], kind: 'database', describe: 'cluster mode: keep records, URLs and the job queue in this PostgreSQL database (postgres://user@host/db); several daemons share it and one --cache-dir' },
  { key: 'inboxMaxLines', flag: 'inbox-max-lines', env: ['MEDIACACHE_INBOX_MAX_LINES'], fileKeys: ['inboxMaxLines'], kind: 'int', min: 1, describe: `refuse an inbox file with more URL lines (default ${DEFAULTS.inboxMaxLines})` },
  { key: 'inboxMaxBytes', flag: 'inbox-max-bytes', env: ['MEDIACACHE_INBOX_MAX_BYTES'], fileKeys: ['inboxMaxBytes'], kind: 'bytes', min: 1, describe: 'refuse a larger inbox file, bytes (suffixes K, M, G allowed; default 32M)' },
  { key: 'urlPolicy', flag: 'url-policy', env: ['MEDIACACHE_URL_POLICY'], fileKeys: ['urlPolicy'], kind: 'preset', describe: 'which addresses may be fetched: open (default: any), public (no loopback/private/link-local/metadata/multicast), allowlist (only --allow-host/--allow-cidr); docs/security.md' },
  { key: 'allowHosts', flag: 'allow-host', env: ['MEDIACACHE_ALLOW_HOST'], fileKeys: ['allowHost', 'allowHosts'], kind: 'words', describe: 'always fetch from this host name (example.org, *.example.org, .example.org) whatever it resolves to (repeatable)' },
  { key: 'denyHosts', flag: 'deny-host', env: ['MEDIACACHE_DENY_HOST'], fileKeys: ['denyHost', 'denyHosts'], kind: 'words', describe: 'never fetch from this host name (repeatable)' },
  { key: 'allowCidrs', flag: 'allow-cidr', env: ['MEDIACACHE_ALLOW_CIDR'], fileKeys: ['allowCidr', 'allowCidrs'], kind: 'words', describe: 'fetch from addresses in this range even if the preset denies it, e.g. 10.20.0.0/16 (repeatable)' },
  { key: 'denyCidrs', flag: 'deny-cidr', env: ['MEDIACACHE_DENY_CIDR'], fileKeys: ['denyCidr', 'denyCidrs'], kind: 'words', describe: 'never fetch from addresses in this range, checked after DNS and on every redirect (repeatable)' },
  { key: 'allowPorts', flag: 'allow-port', env: ['MEDIACACHE_ALLOW_PORT'], fileKeys: ['allowPort', 'allowPorts'], kind: 'words', describe: 'fetch only from these ports or ranges, e.g. 443 or 8000-8099 (repeatable; default any)' },
  { key: 'umask', flag: 'umask', env: ['MEDIACACHE_UMASK'], fileKeys: ['umask'], kind: 'umask', describe: 'file mode mask for everything the daemon creates, octal (default 077: cache, index and reports are private)' },
  { key: 'maxConnections', flag: 'max-connections', env: ['MEDIACACHE_MAX_CONNECTIONS'], fileKeys: ['maxConnections'], kind: 'int', min: 1, describe: `socket connections served at once, at most a quarter of the open-file limit (default ${DEFAULTS.maxConnections})` },
  { key: 'idleTimeoutMs', flag: 'idle-timeout', env: ['MEDIACACHE_IDLE_TIMEOUT'], fileKeys: ['idleTimeout', 'idleTimeoutMs'], kind: 'duration', min: 0, describe: 'close socket connections idle or not reading for this long, ms or 5m; 0 = never (default 5m)' },
];

const FILE_KEYS = new Map<string, Setting>(SETTINGS.flatMap((s) => s.fileKeys.map((k) => [k, s] as const)));

type Source = { from: string; raw: unknown; baseDir: string };

/** Where this platform's defaults land, for --help (the paths a bare `mediacached` uses). */
function defaultPathsText(pe: PlatformEnv): string {
  const P = pe.platform === 'win32' ? path.win32 : path.posix;
  const cacheDir = defaultCacheDir(pe);
  return [
    'Defaults here:',
    `  cache-dir  ${cacheDir}`,
    `  index      ${P.join(cacheDir, 'index')}`,
    `  inbox      ${P.join(defaultStateDir(pe), 'inbox')}`,
    `  socket     ${defaultSocketPath(pe)}`,
    `  config     ${defaultConfigFile(pe)} (read when it exists)`,
  ].join('\n');
}

function buildParser(argv: readonly string[], pe?: PlatformEnv) {
  let y = yargs([...argv])
    .scriptName('mediacached')
    .usage('$0 [options]\n\nThe mediacache daemon: downloads media from URLs given over its socket or dropped into inbox folders, stores each content once, and re-verifies the cache on a schedule.\nEvery option is also an environment variable MEDIACACHE_<OPTION> and a camelCase key of the JSON config file; flag > env > file > default.')
    .help(false)
    .version(false)
    .option('config', { type: 'string', describe: 'JSON config file (env MEDIACACHE_CONFIG)' })
    .option('help', { type: 'boolean', alias: 'h', describe: 'show this help' })
    .option('version', { type: 'boolean', alias: 'V', describe: 'print the version' })
    .strict()
    .exitProcess(false)
    .wrap(100)
    .fail((msg, err) => {
      throw new ConfigError(`${msg ?? err?.message ?? 'bad arguments'}. Run mediacached --help for the options.`);
    });
  for (const s of SETTINGS) {
    const describe = `${s.describe} [env ${s.env.join(', ')}]`;
    y = y.option(s.flag, { type: 'string', array: LIST_KINDS.has(s.kind) ? true : undefined, describe, requiresArg: true });
  }
  if (pe) y = y.epilogue(defaultPathsText(pe));
  return y;
}

/** Position in a JSON text → "line L, column C" for error messages. */
function lineCol(text: string, pos: number): string {
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const col = pos - before.lastIndexOf('\n');
  return `line ${line}, column ${col}`;
}

function parseJsonFile(file: string, text: string): Record<string, unknown> {
  let data: unknown;
  try {
    data = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    const msg = (e as Error).message;
    const m = /position (\d+)/.exec(msg);
    const where = m ? ` (${lineCol(text, Number(m[1]))})` : '';
    throw new ConfigError(`config file ${file} is not valid JSON: ${msg}${where}. Fix the file, or point --config / MEDIACACHE_CONFIG at another one.`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ConfigError(`config file ${file} must hold a JSON object like {"concurrency": 4}, not ${Array.isArray(data) ? 'an array' : typeof data}.`);
  }
  return data as Record<string, unknown>;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

/** "Did you mean" for a misspelt or kebab-cased config key. */
function suggest(key: string): string {
  const norm = (k: string): string => k.toLowerCase().replace(/[-_]/g, '');
  let best: string | undefined;
  let bestD = 3;
  for (const k of FILE_KEYS.keys()) {
    const d = editDistance(norm(key), norm(k));
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best ? ` Did you mean "${best}"?` : '';
}

/** "Did you mean" for a misspelt MEDIACACHE_* environment variable (the same rule as for config keys). */
function suggestEnv(name: string, known: readonly string[]): string {
  const norm = (k: string): string => k.toLowerCase().replace(/^mediacache_/, '').replace(/[-_]/g, '');
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const d = editDistance(norm(name), norm(k));
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best ? ` Did you mean ${best}?` : '';
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4 };

function convert(s: Setting, src: Source, P: path.PlatformPath, home: string): unknown {
  const what = `${s.key === 'inboxes' ? 'inbox' : s.flag} (from ${src.from})`;
  const raw = src.raw;
  const expand = (p: string): string => {
    const t = p.trim();
    if (t === '') throw new ConfigError(`${what} is empty; give a path or leave it out.`);
    const h = t === '~' ? home : t.startsWith('~/') ? P.join(home, t.slice(2)) : t;
    return P.resolve(src.baseDir, h);
  };
  const str = (): string => {
    if (typeof raw === 'number' && s.kind !== 'path' && s.kind !== 'paths') return String(raw);
    if (typeof raw !== 'string') throw new ConfigError(`${what} must be a ${s.kind === 'path' ? 'path string' : 'string'}, got ${JSON.stringify(raw)}.`);
    return raw.trim();
  };
  switch (s.kind) {
    case 'path':
      if (s.key === 'socket' && typeof raw === 'string' && /^\\\\[.?]\\pipe\\/i.test(raw)) return raw;
      return expand(str());
    case 'paths': {
      const list = Array.isArray(raw) ? raw : [raw];
      return list.map((p) => {
        if (typeof p !== 'string') throw new ConfigError(`${what} must be a path or a list of paths, got ${JSON.stringify(p)}.`);
        return expand(p);
      });
    }
    case 'int':
    case 'number': {
      const v = typeof raw === 'number' ? raw : Number(str());
      const ok = Number.isFinite(v) && (s.kind === 'number' || Number.isInteger(v)) && str() !== '';
      if (!ok) throw new ConfigError(`${what} must be ${s.kind === 'int' ? 'a whole number' : 'a number'}, got ${JSON.stringify(raw)}.`);
      if (s.min !== undefined && v < s.min) throw new ConfigError(`${what} must be at least ${s.min}, got ${v}.`);
      return v;
    }
    case 'duration': {
      const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/i.exec(str());
      if (!m) throw new ConfigError(`${what} must be milliseconds or a duration like 30s, 30m, 2h, got ${JSON.stringify(raw)}.`);
      const v = Math.round(Number(m[1]) * UNITS[(m[2] ?? 'ms').toLowerCase()]!);
      if (s.min !== undefined && v < s.min) throw new ConfigError(`${what} must be at least ${s.min} ms, got ${v}.`);
      return v;
    }
    case 'bytes': {
      const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?b?)$/i.exec(str());
      if (!m) throw new ConfigError(`${what} must be a number of bytes, optionally with K, M, G (e.g. 500M), got ${JSON.stringify(raw)}.`);
      const v = Math.floor(Number(m[1]) * BYTE_UNITS[m[2]!.toLowerCase()]!);
      if (s.min !== undefined && v < s.min) throw new ConfigError(`${what} must be at least ${s.min} byte, got ${v}.`);
      return v;
    }
    case 'level': {
      const v = str().toLowerCase();
      if (!(LOG_LEVELS as readonly string[]).includes(v)) throw new ConfigError(`${what} must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(raw)}.`);
      return v;
    }
    case 'string': {
      const v = str();
      if (v === '') throw new ConfigError(`${what} is empty.`);
      return v;
    }
    case 'database': {
      const v = str();
      // Checked here so a typo fails at start with the flag named, not later as a connection error.
      if (!/^postgres(ql)?:\/\/./i.test(v)) throw new ConfigError(`${what} must be a postgres:// or postgresql:// connection URL, got something else (not shown: it may hold a password).`);
      return v;
    }
    case 'argv':
    case 'urls':
    case 'secret': {
      const r = convertHookSetting(s.kind, raw);
      if ('error' in r) throw new ConfigError(`${what} ${r.error}.`);
      return r.value;
    }
    case 'words':
    case 'umask':
    case 'preset': {
      const r = convertSecuritySetting(s.kind, raw);
      if ('error' in r) throw new ConfigError(`${what} ${r.error}.`);
      return r.value;
    }
  }
}

/**
 * In cluster mode the cache dir is shared, so each daemon's own state (job
 * journal, hooks outbox, node id, its lock) defaults to a folder of its own
 * under it: one per host and socket.
 */
function nodeStateName(socket: string): string {
  const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, '_');
  return `${host}-${crypto.createHash('sha256').update(socket).digest('hex').slice(0, 8)}`;
}

/** Help text (yargs-generated), for --help. */
export async function helpText(pe: PlatformEnv = currentPlatformEnv()): Promise<string> {
  return buildParser([], pe).getHelp();
}

/**
 * flag > env > file > default. Throws ConfigError for anything the user
 * must fix. Relative paths from flags/env are taken from `cwd`, those in
 * the config file from the file's directory.
 */
export async function resolveConfig(input: ResolveInput): Promise<ResolveResult> {
  const pe = input.platformEnv;
  const P = pe.platform === 'win32' ? path.win32 : path.posix;
  const cwd = input.cwd ?? process.cwd();
  const env = input.env;

  const args = buildParser(input.argv).parseSync() as Record<string, unknown>;
  if (args.help) return { kind: 'help', text: await helpText(pe) };
  if (args.version) return { kind: 'version' };

  // A misspelt variable would silently be ignored; like an unknown config key it stops the start.
  const knownEnv = ['MEDIACACHE_CONFIG', ...SETTINGS.flatMap((s) => s.env)];
  for (const k of Object.keys(env).sort()) {
    if (k.startsWith('MEDIACACHE_') && env[k] !== undefined && !knownEnv.includes(k)) {
      throw new ConfigError(`unknown environment variable ${k}.${suggestEnv(k, knownEnv)} Known: ${knownEnv.join(', ')}.`);
    }
  }

  // The config file: explicit (must exist) or the platform default (if present).
  const explicit = typeof args.config === 'string' ? { file: args.config, from: '--config' } : env.MEDIACACHE_CONFIG ? { file: env.MEDIACACHE_CONFIG, from: 'MEDIACACHE_CONFIG' } : undefined;
  const configFile = explicit ? P.resolve(cwd, explicit.file) : defaultConfigFile(pe);
  let fileData: Record<string, unknown> = {};
  let usedFile: string | undefined;
  let text: string | undefined;
  try {
    text = input.readFile(configFile);
  } catch (e) {
    throw new ConfigError(`cannot read config file ${configFile}: ${(e as Error).message}.`);
  }
  if (text === undefined) {
    if (explicit) throw new ConfigError(`config file ${configFile} (from ${explicit.from}) does not exist. Create it or fix the path.`);
  } else {
    fileData = parseJsonFile(configFile, text);
    usedFile = configFile;
    for (const k of Object.keys(fileData)) {
      if (!FILE_KEYS.has(k)) {
        throw new ConfigError(`unknown key "${k}" in config file ${configFile}.${suggest(k)} Known keys: ${SETTINGS.map((s) => s.fileKeys[0]).join(', ')}.`);
      }
    }
  }
  const fileDir = usedFile ? P.dirname(usedFile) : cwd;
  const listSep = pe.platform === 'win32' ? ';' : ':';

  const out: Partial<Record<keyof DaemonConfig | PolicyListKey, unknown>> = {};
  for (const s of SETTINGS) {
    let src: Source | undefined;
    const flagVal = args[s.flag];
    if (flagVal !== undefined && !(Array.isArray(flagVal) && flagVal.length === 0)) {
      if (!LIST_KINDS.has(s.kind) && Array.isArray(flagVal)) {
        // A repeated single-valued flag: the last one wins, as in most CLIs.
        src = { from: `--${s.flag}`, raw: flagVal[flagVal.length - 1], baseDir: cwd };
      } else src = { from: `--${s.flag}`, raw: flagVal, baseDir: cwd };
    }
    if (!src) {
      const e = s.env.find((n) => env[n] !== undefined && env[n] !== '');
      if (e) {
        const v = env[e]!;
        const raw = s.kind === 'paths' ? v.split(listSep).filter((x) => x !== '') : s.kind === 'urls' ? v.split(/\s+/).filter((x) => x !== '') : v;
        src = { from: e, raw, baseDir: cwd };
      }
    }
    if (!src) {
      const k = s.fileKeys.find((n) => fileData[n] !== undefined);
      if (k) src = { from: `"${k}" in ${usedFile}`, raw: fileData[k], baseDir: fileDir };
    }
    if (src) out[s.key] = convert(s, src, P, pe.homedir);
  }

  const cacheDir = (out.cacheDir as string | undefined) ?? defaultCacheDir(pe);
  const socket = (out.socket as string | undefined) ?? defaultSocketPath(pe);
  const sockErr = checkSocketPath(socket, pe.platform);
  if (sockErr) throw new ConfigError(sockErr);
  const sweepSchedule = (out.sweepSchedule as string | undefined) ?? DEFAULTS.sweepSchedule;
  const cronErr = input.validateCron?.(sweepSchedule);
  if (cronErr) throw new ConfigError(`sweep-schedule ${JSON.stringify(sweepSchedule)} is not a valid cron expression: ${cronErr}`);

  /** A setting as given (flag, env or file), else its default. */
  const orDefault = <K extends keyof typeof DEFAULTS>(k: K): (typeof DEFAULTS)[K] => (out[k] as (typeof DEFAULTS)[K] | undefined) ?? DEFAULTS[k];
  const config: DaemonConfig = {
    cacheDir,
    indexDir: (out.indexDir as string | undefined) ?? (out.database ? P.join(cacheDir, '.nodes', nodeStateName(socket)) : P.join(cacheDir, 'index')),
    inboxes: (out.inboxes as string[] | undefined) ?? [P.join(defaultStateDir(pe), 'inbox')],
    socket,
    concurrency: orDefault('concurrency'),
    perHost: orDefault('perHost'),
    timeoutMs: orDefault('timeoutMs'),
    maxFileSize: orDefault('maxFileSize'),
    sweepSchedule,
    sweepRate: orDefault('sweepRate'),
    sweepMaxDuration: orDefault('sweepMaxDuration'),
    logLevel: orDefault('logLevel'),
    graceMs: orDefault('graceMs'),
    ...(out.database ? { database: out.database as string } : {}),
    hookTimeoutMs: orDefault('hookTimeoutMs'),
    hookConcurrency: orDefault('hookConcurrency'),
    webhooks: [],
    retries: orDefault('retries'),
    retryDelayMs: orDefault('retryDelayMs'),
    jobHistory: orDefault('jobHistory'),
    jobHistoryAgeMs: orDefault('jobHistoryAgeMs'),
    maxSize: orDefault('maxSize'),
    minFree: orDefault('minFree'),
    revalidateAfter: orDefault('revalidateAfter'),
    inboxMaxLines: orDefault('inboxMaxLines'),
    inboxMaxBytes: orDefault('inboxMaxBytes'),
    maxConnections: orDefault('maxConnections'),
    idleTimeoutMs: orDefault('idleTimeoutMs'),
    urlPolicy: {},
    umask: 0,
  };
  try {
    Object.assign(config, resolveHookSettings(out, input.readFile));
    Object.assign(config, resolveSecuritySettings(out));
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  if (config.database && (config.maxSize > 0 || config.minFree > 0)) {
    // Eviction works on the embedded index's synchronous view; in a cluster it would
    // need a cluster-wide LRU and lock. Refused, never silently ignored.
    throw new ConfigError(
      `${config.maxSize > 0 ? 'max-size' : 'min-free'} (a cache size quota) is not supported with --database (cluster mode) yet; leave out --max-size/--min-free (MEDIACACHE_MAX_SIZE/MEDIACACHE_MIN_FREE, "maxSize"/"minFree") or run without --database.`,
      'E_BAD_REQUEST',
    );
  }
  if (usedFile) config.configFile = usedFile;
  if (out.logFile) config.logFile = out.logFile as string;
  return { kind: 'config', config: Object.freeze(Object.assign(config, { inboxes: Object.freeze([...config.inboxes]) as string[] })) };
}

/** Keys whose values differ between two configs (for SIGHUP reporting). */
export function changedKeys(a: DaemonConfig, b: DaemonConfig): Array<keyof DaemonConfig> {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as Array<keyof DaemonConfig>);
  return [...keys].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}
