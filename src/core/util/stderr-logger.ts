/**
 * A small Logger that writes one line per message to stderr, for library
 * users who have no logger of their own (the default instance uses it at
 * `warn`, so a script's user sees failed downloads). Lines look like
 *
 *   mediacache warn: download failed url=https://h/x.jpg code=E_HTTP status=404 error="HTTP 404"
 *
 * Meta values are printed as key=value; strings with spaces or quotes are
 * JSON-quoted, so a line stays one line whatever a URL or message holds.
 */
import type { Logger } from './logger.js';

export type StderrLogLevel = 'error' | 'warn' | 'info' | 'debug';
const RANK: Record<StderrLogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** The daemon's level names mapped onto the four this logger knows (winston's extra ones fold in). */
export function stderrLevelOf(name: string | undefined): StderrLogLevel | undefined {
  switch (name?.trim().toLowerCase()) {
    case 'error':
      return 'error';
    case 'warn':
      return 'warn';
    case 'info':
    case 'http':
    case 'verbose':
      return 'info';
    case 'debug':
    case 'silly':
      return 'debug';
    default:
      return undefined;
  }
}

function metaText(meta: Record<string, unknown> | undefined): string {
  if (!meta) return '';
  let out = '';
  for (const [k, v] of Object.entries(meta)) {
    if (v === undefined) continue;
    const s = typeof v === 'string' ? v : JSON.stringify(v);
    out += ` ${k}=${/^[^\s"=\\\x00-\x1f\x7f]+$/.test(s) ? s : JSON.stringify(s)}`;
  }
  return out;
}

export function stderrLogger(level: StderrLogLevel = 'warn', stream: { write(s: string): unknown } = process.stderr): Logger {
  const max = RANK[level];
  const at =
    (l: StderrLogLevel) =>
    (message: string, meta?: Record<string, unknown>): undefined => {
      if (RANK[l] <= max) stream.write(`mediacache ${l}: ${message}${metaText(meta)}\n`);
      return undefined;
    };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}
