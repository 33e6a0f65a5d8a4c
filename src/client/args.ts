/**
 * What mcctl was asked to do, as one typed value, and the fast parser for
 * the common simple command lines.
 *
 * Why two parsers: loading yargs costs about as much as starting node itself
 * (measured in bench/mcctl-startup.js), and `mcctl stats` must answer within
 * 1.5x of `node -e 0`. So the plain forms (a known command, its known flags,
 * the right number of positionals) are parsed here without yargs; anything
 * else — --help, completion, an unknown or malformed flag, a missing
 * argument — goes to the yargs CLI (cli-yargs.ts), which is the reference
 * grammar and produces the usage errors. test/client-args.test.ts checks that
 * both parsers agree on every form the fast one accepts.
 */
import { JOB_STATES, type JobState } from '../core/protocol/rpc.js';

export type Command =
  | { name: 'add'; urls: string[]; file?: string; wait: boolean; force: boolean; priority?: number; pin?: boolean }
  | { name: 'stats' }
  | { name: 'verify'; md5?: string; all: boolean }
  | { name: 'find'; query: string }
  | { name: 'jobs'; state?: JobState; limit?: number }
  | { name: 'sweep'; wait: boolean }
  | { name: 'status' }
  | { name: 'remove'; md5: string; yes: boolean }
  | { name: 'watch' }
  /** `target` is a job id, or a URL when it contains "://". */
  | { name: 'cancel'; target: string }
  | { name: 'retry'; id?: string; failed: boolean }
  | { name: 'prune'; olderThanMs?: number; keep?: number }
  | { name: 'pin'; target: string }
  | { name: 'unpin'; target: string }
  | { name: 'refresh'; target: string };

export type CommandName = Command['name'];
export const COMMAND_NAMES: readonly CommandName[] = ['add', 'stats', 'verify', 'find', 'jobs', 'sweep', 'status', 'remove', 'watch', 'cancel', 'retry', 'prune', 'pin', 'unpin', 'refresh'];

export interface GlobalOptions {
  /** As given by --socket; undefined means $MEDIACACHE_SOCKET or the platform default. */
  socket?: string;
  json: boolean;
  /** Request timeout in ms as given by --timeout (0 = none); undefined means the command's default. */
  timeoutMs?: number;
}

export interface Invocation {
  globals: GlobalOptions;
  command: Command;
}

/**
 * The seed's shorthand: `mcctl <url>…` means `mcctl add <url>… --wait`.
 * Applies when the first positional (the command slot) contains "://".
 */
export function expandUrlShorthand(argv: readonly string[]): string[] {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return [...argv];
    if (a === '--socket' || a === '--timeout') {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    if (!a.includes('://')) return [...argv];
    const out = [...argv.slice(0, i), 'add', ...argv.slice(i)];
    if (!out.includes('--wait') && !out.includes('--no-wait')) out.push('--wait');
    return out;
  }
  return [...argv];
}

/** Flags each command takes besides the globals; value says whether it takes an argument. */
export const COMMAND_FLAGS: Record<CommandName, Record<string, 'bool' | 'value'>> = {
  add: { '--wait': 'bool', '--force': 'bool', '--pin': 'bool', '--file': 'value', '-f': 'value', '--priority': 'value' },
  stats: {},
  verify: { '--all': 'bool' },
  find: {},
  jobs: { '--state': 'value', '--limit': 'value' },
  sweep: { '--wait': 'bool' },
  status: {},
  remove: { '--yes': 'bool', '-y': 'bool' },
  watch: {},
  cancel: {},
  retry: { '--failed': 'bool' },
  prune: { '--older-than': 'value', '--keep': 'value' },
  pin: {},
  unpin: {},
  refresh: {},
};
export const GLOBAL_FLAGS: Record<string, 'bool' | 'value'> = { '--json': 'bool', '--socket': 'value', '--timeout': 'value' };

/** Same rule as cli-yargs: a non-negative number of milliseconds. */
export function parseTimeout(s: string): number | undefined {
  if (!/^\d+(\.\d+)?$/.test(s)) return undefined;
  return Number(s);
}

export function parseLimit(s: string): number | undefined {
  if (!/^[1-9]\d*$/.test(s)) return undefined;
  return Number(s);
}

/** A whole number, negative allowed (queue priority: lower runs first). */
export function parsePriority(s: string): number | undefined {
  if (!/^-?\d{1,9}$/.test(s)) return undefined;
  return Number(s);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "90s", "30m", "12h", "7d", "2w", or plain milliseconds; undefined when malformed. */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$/.exec(s.trim());
  if (!m) return undefined;
  const v = Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms'];
  return Number.isFinite(v) ? Math.round(v) : undefined;
}

/**
 * Parse the simple forms; undefined means "not sure: let yargs decide" (which
 * also covers every error). Never throws. `argv` must be shorthand-expanded.
 */
export function fastParse(argv: readonly string[]): Invocation | undefined {
  const name = argv.find((a, i) => !a.startsWith('-') && !(i > 0 && GLOBAL_FLAGS[argv[i - 1]] === 'value'));
  if (!name || !(COMMAND_NAMES as readonly string[]).includes(name)) return undefined;
  const cmd = name as CommandName;
  const flags = COMMAND_FLAGS[cmd];
  const bools = new Set<string>();
  const values = new Map<string, string>();
  const positionals: string[] = [];
  let seenName = false;
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (a.startsWith('-')) {
      let inline: string | undefined;
      const eq = a.indexOf('=');
      if (a.startsWith('--') && eq > 0) {
        inline = a.slice(eq + 1);
        a = a.slice(0, eq);
      }
      const kind = GLOBAL_FLAGS[a] ?? flags[a];
      if (!kind) return undefined; // --help, -h, --no-x, --, unknown flags: yargs
      const key = a === '-f' ? '--file' : a === '-y' ? '--yes' : a;
      if (kind === 'bool') {
        if (inline !== undefined || bools.has(key)) return undefined;
        bools.add(key);
      } else {
        const v = inline ?? argv[++i];
        if (v === undefined || v === '' || (inline === undefined && v.startsWith('-') && v !== '-')) return undefined;
        if (values.has(key)) return undefined; // repeated: yargs makes an array
        values.set(key, v);
      }
      continue;
    }
    if (!seenName && a === name) {
      seenName = true;
      continue;
    }
    positionals.push(a);
  }

  const globals: GlobalOptions = { json: bools.has('--json') };
  if (values.has('--socket')) globals.socket = values.get('--socket');
  if (values.has('--timeout')) {
    const t = parseTimeout(values.get('--timeout')!);
    if (t === undefined) return undefined;
    globals.timeoutMs = t;
  }

  let command: Command;
  switch (cmd) {
    case 'add': {
      const file = values.get('--file');
      if (positionals.length === 0 && file === undefined) return undefined;
      command = { name: 'add', urls: positionals, wait: bools.has('--wait'), force: bools.has('--force') };
      if (file !== undefined) command.file = file;
      const prio = values.get('--priority');
      if (prio !== undefined) {
        const n = parsePriority(prio);
        if (n === undefined) return undefined;
        command.priority = n;
      }
      if (bools.has('--pin')) command.pin = true;
      break;
    }
    case 'verify': {
      const all = bools.has('--all');
      if (all ? positionals.length !== 0 : positionals.length !== 1) return undefined;
      command = all ? { name: 'verify', all } : { name: 'verify', md5: positionals[0], all };
      break;
    }
    case 'pin':
    case 'unpin':
    case 'refresh':
      if (positionals.length !== 1) return undefined;
      command = { name: cmd, target: positionals[0] };
      break;
    case 'find':
    case 'remove':
    case 'cancel':
      if (positionals.length !== 1) return undefined;
      command =
        cmd === 'find'
          ? { name: 'find', query: positionals[0] }
          : cmd === 'cancel'
            ? { name: 'cancel', target: positionals[0] }
            : { name: 'remove', md5: positionals[0], yes: bools.has('--yes') };
      break;
    case 'retry': {
      const failed = bools.has('--failed');
      if (failed ? positionals.length !== 0 : positionals.length !== 1) return undefined;
      command = failed ? { name: 'retry', failed } : { name: 'retry', id: positionals[0], failed };
      break;
    }
    case 'prune': {
      if (positionals.length !== 0) return undefined;
      command = { name: 'prune' };
      const older = values.get('--older-than');
      const keep = values.get('--keep');
      if (older === undefined && keep === undefined) return undefined;
      if (older !== undefined) {
        const ms = parseDuration(older);
        if (ms === undefined) return undefined;
        command.olderThanMs = ms;
      }
      if (keep !== undefined) {
        const n = /^\d+$/.test(keep) ? Number(keep) : undefined;
        if (n === undefined) return undefined;
        command.keep = n;
      }
      break;
    }
    case 'jobs': {
      if (positionals.length !== 0) return undefined;
      command = { name: 'jobs' };
      const st = values.get('--state');
      if (st !== undefined) {
        if (!(JOB_STATES as readonly string[]).includes(st)) return undefined;
        command.state = st as JobState;
      }
      const lim = values.get('--limit');
      if (lim !== undefined) {
        const n = parseLimit(lim);
        if (n === undefined) return undefined;
        command.limit = n;
      }
      break;
    }
    case 'sweep':
      if (positionals.length !== 0) return undefined;
      command = { name: 'sweep', wait: bools.has('--wait') };
      break;
    default:
      if (positionals.length !== 0) return undefined;
      command = { name: cmd };
  }
  return { globals, command };
}
