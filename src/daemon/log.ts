/**
 * The daemon's winston logger: human-readable lines on stderr (stdout stays
 * clean for whoever reads it: tap, a pipe), and optionally JSON lines in a
 * file. The file is our own append stream under a winston Stream transport,
 * so `reopen()` (SIGHUP, after logrotate renamed the file away) can swap in
 * a fresh stream at the configured path without losing a line: the new
 * transport is added before the old one is removed, and the old stream is
 * ended only after it has been detached.
 *
 * Under systemd (JOURNAL_STREAM names the device:inode of our stderr) the
 * console lines start with the kernel-style priority `<3>` error, `<4>` warn,
 * `<6>` info, `<7>` debug and carry no timestamp or colour of their own:
 * journald stores the priority (so `journalctl -p warning` works) and the time.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import winston from 'winston';
import type { Logger } from '../core/util/logger.js';
import { redactDeep, redactText } from '../core/util/redact.js';

export interface DaemonLoggerOptions {
  level: string;
  logFile?: string;
  /** Human-readable output; default process.stderr. */
  console?: Writable;
  /** Colour the level names (default: when `console` is a TTY). */
  colors?: boolean;
  /** journald format on the console (default: when stderr is the JOURNAL_STREAM, see journaldStderr). */
  journald?: boolean;
}

/** syslog priorities journald reads from a `<N>` line prefix. */
const JOURNAL_PRIORITY: Record<string, number> = { error: 3, warn: 4, info: 6, http: 7, verbose: 7, debug: 7, silly: 7 };

/**
 * Whether file descriptor `fd` is the stream systemd connected to the
 * journal: JOURNAL_STREAM is "device:inode" of it. Checking the inode (not
 * only that the variable is set) keeps the format off when stderr was
 * redirected elsewhere by someone who inherited the variable.
 */
export function journaldStderr(env: Readonly<Record<string, string | undefined>> = process.env, fd = 2): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    return st.dev === BigInt(m[1]) && st.ino === BigInt(m[2]);
  } catch {
    return false;
  }
}

export interface DaemonLogger extends Logger {
  readonly winston: winston.Logger;
  readonly logFile: string | undefined;
  level: string;
  /** Close and reopen the log file at `file` (default: the current path). */
  reopen(file?: string | undefined): Promise<void>;
  /** Flush and close every transport. */
  end(): Promise<void>;
}

/** Errors inside meta would serialise as {}; keep what a reader needs. */
const errorsInMeta = winston.format((info) => {
  for (const [k, v] of Object.entries(info)) {
    if (v instanceof Error) {
      const code = (v as { code?: unknown }).code;
      info[k] = { name: v.name, message: v.message, ...(code !== undefined ? { code } : {}), stack: v.stack };
    }
  }
  return info;
});

/**
 * Credentials in URLs never reach a log line (util/redact.ts): the message,
 * every string in the metadata and error stacks, on every transport.
 */
const redactSecrets = winston.format((info) => {
  if (typeof info.message === 'string') info.message = redactText(info.message);
  for (const [k, v] of Object.entries(info)) {
    if (k !== 'level' && k !== 'message') info[k] = redactDeep(v);
  }
  return info;
});

const RESERVED = new Set(['level', 'message', 'timestamp', 'stack']);

function metaText(info: Record<string, unknown>): string {
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(info)) if (!RESERVED.has(k)) meta[k] = v;
  return Object.keys(meta).length ? ` ${JSON.stringify(meta)}` : '';
}

/** One line per entry, `<N>` priority first; a stack trace stays on the same entry (one line each, same priority). */
function journald(): winston.Logform.Format {
  return winston.format.combine(
    winston.format.errors({ stack: true }),
    errorsInMeta(),
    winston.format.printf((info) => {
      const p = `<${JOURNAL_PRIORITY[String(info.level)] ?? 6}>`;
      const stack = typeof info.stack === 'string' ? `\n${info.stack}` : '';
      return `${p}${String(info.message)}${metaText(info)}${stack}`.split('\n').join(`\n${p}`);
    }),
  );
}

function human(colors: boolean): winston.Logform.Format {
  return winston.format.combine(
    winston.format.errors({ stack: true }),
    errorsInMeta(),
    redactSecrets(),
    winston.format.timestamp(),
    ...(colors ? [winston.format.colorize({ level: true })] : []),
    winston.format.printf((info) => {
      const meta: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(info)) if (!RESERVED.has(k)) meta[k] = v;
      const m = Object.keys(meta).length ? ` ${JSON.stringify(meta)}` : '';
      const stack = typeof info.stack === 'string' ? `\n${info.stack}` : '';
      return `${String(info.timestamp)} ${String(info.level)} ${String(info.message)}${m}${stack}`;
    }),
  );
}

const jsonLines = winston.format.combine(winston.format.errors({ stack: true }), errorsInMeta(), redactSecrets(), winston.format.timestamp(), winston.format.json());

function openStream(file: string): fs.WriteStream {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // Opened synchronously: the file exists (or the error is thrown) before we return.
  const fd = fs.openSync(file, 'a', 0o640);
  const s = fs.createWriteStream(file, { fd, flags: 'a' });
  // A failing log file must not take the daemon down; it is reported on stderr.
  s.on('error', (e) => process.stderr.write(`mediacached: log file ${file}: ${e.message}\n`));
  return s;
}

function endStream(s: fs.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (s.closed || s.destroyed) return resolve();
    s.once('close', () => resolve());
    s.end();
  });
}

export function createDaemonLogger(o: DaemonLoggerOptions): DaemonLogger {
  const out = o.console ?? process.stderr;
  const colors = o.colors ?? Boolean((out as { isTTY?: boolean }).isTTY);
  const toJournal = o.journald ?? (o.console === undefined && journaldStderr());
  const w = winston.createLogger({
    level: o.level,
    levels: winston.config.npm.levels,
    transports: [new winston.transports.Stream({ stream: out, format: toJournal ? journald() : human(colors) })],
    exitOnError: false,
  });
  let file = o.logFile;
  let fileStream: fs.WriteStream | undefined;
  let fileTransport: winston.transport | undefined;

  const attach = (f: string): void => {
    fileStream = openStream(f);
    fileTransport = new winston.transports.Stream({ stream: fileStream, format: jsonLines });
    w.add(fileTransport);
  };
  if (file) attach(file);

  const logger: DaemonLogger = {
    winston: w,
    get logFile() {
      return file;
    },
    get level() {
      return w.level;
    },
    set level(l: string) {
      w.level = l;
    },
    // Checked here: winston builds a message object and runs it through its
    // stream pipeline before a transport drops it for its level.
    error: (m, meta) => w.error(m, meta),
    warn: (m, meta) => void (w.isLevelEnabled('warn') && w.warn(m, meta)),
    info: (m, meta) => void (w.isLevelEnabled('info') && w.info(m, meta)),
    debug: (m, meta) => void (w.isLevelEnabled('debug') && w.debug(m, meta)),
    async reopen(next = file) {
      const oldStream = fileStream;
      const oldTransport = fileTransport;
      fileStream = undefined;
      fileTransport = undefined;
      if (next) {
        try {
          attach(next);
        } catch (e) {
          // Keep logging where we were rather than nowhere.
          fileStream = oldStream;
          fileTransport = oldTransport;
          throw e;
        }
      }
      file = next;
      if (oldTransport) w.remove(oldTransport);
      if (oldStream) await endStream(oldStream);
    },
    async end() {
      // Not winston's end(): its 'finish' does not wait for (or sometimes
      // fire with) Stream transports. stderr writes are synchronous for
      // files and pipes on POSIX; the file is ours to flush and close.
      if (fileTransport) w.remove(fileTransport);
      fileTransport = undefined;
      if (fileStream) await endStream(fileStream);
      fileStream = undefined;
      w.silent = true;
    },
  };
  return logger;
}
