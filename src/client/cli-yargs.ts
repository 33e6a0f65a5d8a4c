/**
 * The full mcctl grammar in yargs 18: help with an example per command,
 * strict flags, shell completion, and usage errors (exit 2, not yargs'
 * default 1). Loaded lazily by cli.ts only when the fast parser (args.ts)
 * is not sure, because importing yargs roughly doubles mcctl's start time.
 *
 * Parsing never runs a command: the handlers only record the Invocation, so
 * both parsers feed the same dispatcher (commands.ts).
 */
import fs from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { JOB_STATES, type JobState } from '../core/protocol/rpc.js';
import { type Command, type GlobalOptions, type Invocation, GLOBAL_FLAGS, parseDuration } from './args.js';
import { EXIT } from './exit-codes.js';
import { allCommands, unknownCommand, usageLine } from './usage.js';

export type YargsOutcome =
  | { kind: 'run'; invocation: Invocation }
  /** Help, version or completion text (stdout, exit 0), or a usage error (stderr, exit 2). */
  | { kind: 'print'; stdout: string; stderr: string; code: number };

function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const EPILOGUE =
  'Exit codes: 0 success; 1 verify found corruption or a job failed; 2 usage error or not found; ' +
  '3 the daemon cannot be reached; 4 --wait ended at --timeout while the work goes on; 130 interrupted. ' +
  'The socket is --socket, else $MEDIACACHE_SOCKET, else the platform default the daemon uses. ' +
  '`mcctl help COMMAND` shows one command.';

/** Index of the command word: the first argument that is neither a flag nor a global flag's value. */
function commandIndex(argv: readonly string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return i + 1 < argv.length ? i + 1 : -1;
    if (a.startsWith('-')) {
      if (GLOBAL_FLAGS[a] === 'value') i++;
      continue;
    }
    return i;
  }
  return -1;
}

/**
 * `mcctl help [CMD]` becomes `mcctl [CMD] --help`; `completion --json` is
 * refused (the completion script is shell, not JSON). Returns the argv to
 * parse, or a one-line usage error.
 */
function preParse(argv: readonly string[]): { argv: string[] } | { error: string } {
  const i = commandIndex(argv);
  if (i < 0) return { argv: [...argv] };
  const word = argv[i];
  if (word === 'help') {
    const rest = argv.slice(i + 1).filter((a, k, all) => !a.startsWith('-') && !(k > 0 && GLOBAL_FLAGS[all[k - 1]] === 'value'));
    if (rest.length === 0) return { argv: ['--help'] };
    if (rest.length > 1) return { error: 'help takes one command name (mcctl help lists the commands)' };
    if (!allCommands().includes(rest[0]) || rest[0] === 'help') return rest[0] === 'help' ? { argv: ['--help'] } : { error: unknownCommand(rest[0]) };
    return { argv: [rest[0], '--help'] };
  }
  if (word === 'completion' && argv.some((a) => a === '--json' || a.startsWith('--json='))) {
    return { error: 'completion prints a shell script, not JSON: drop --json (mcctl completion >> ~/.bashrc)' };
  }
  return { argv: [...argv] };
}

interface Raw {
  socket?: string;
  json?: boolean;
  timeout?: number;
  [k: string]: unknown;
}

/** Parse `argv` (already shorthand-expanded) with yargs. `width` wraps the help text. */
export async function parseWithYargs(given: readonly string[], width = 80): Promise<YargsOutcome> {
  const pre = preParse(given);
  if ('error' in pre) return { kind: 'print', stdout: '', stderr: `mcctl: ${pre.error}\n`, code: EXIT.USAGE };
  const argv = pre.argv;
  let invocation: Invocation | undefined;
  let usageError: string | undefined;
  const globalsOf = (a: Raw): GlobalOptions => {
    const g: GlobalOptions = { json: a.json === true };
    if (a.socket !== undefined) g.socket = a.socket;
    if (a.timeout !== undefined) g.timeoutMs = a.timeout;
    return g;
  };
  const run = (a: Raw, command: Command): void => {
    invocation = { globals: globalsOf(a), command };
  };

  const y: Argv = yargs()
    .scriptName('mcctl')
    .usage('$0 <command> [options]\n$0 <url>…   (shorthand for: $0 add <url>… --wait)\n\nTalks to the mediacached daemon over its local socket.')
    .exitProcess(false)
    .option('socket', {
      type: 'string',
      requiresArg: true,
      global: true,
      describe: 'daemon socket (or \\\\.\\pipe\\NAME on Windows); default $MEDIACACHE_SOCKET, else the platform default',
    })
    .option('json', { type: 'boolean', global: true, describe: 'print one JSON document (JSON lines for watch) and nothing else on stdout' })
    .option('timeout', {
      type: 'number',
      requiresArg: true,
      global: true,
      describe: 'request timeout in ms, 0 = none (default 30000; none for verify --all and watch); with --wait: how long to wait (exit 4 when it runs out, the work goes on)',
    })
    .command(
      'add [urls..]',
      'queue URLs for download (from arguments and/or a .urls file)',
      (c) =>
        c
          .positional('urls', { type: 'string', array: true, describe: 'http(s) URLs' })
          .option('file', { alias: 'f', type: 'string', requiresArg: true, describe: 'read URLs from a .urls file (one per line, # comments); - for stdin' })
          .option('wait', { type: 'boolean', describe: 'wait until every download has ended; progress bars on a terminal' })
          .option('force', { type: 'boolean', describe: 'download again even when the URL is cached' })
          .option('priority', { type: 'number', requiresArg: true, describe: 'queue order: higher runs sooner (-1000..1000, default 0; inbox files run at -10)' })
          .option('pin', { type: 'boolean', describe: 'pin the content once cached (never evicted by --max-size / --min-free)' })
          .check((a) => {
            const urls = (a.urls as string[] | undefined) ?? [];
            if (urls.length === 0 && a.file === undefined) throw new Error('add needs at least one URL or -f FILE');
            if (a.priority !== undefined && !(Number.isInteger(a.priority) && Math.abs(a.priority as number) < 1e9)) throw new Error('--priority must be a whole number');
            return true;
          })
          .example('$0 add https://example.com/a.jpg --wait', 'download one image and wait for it')
          .example('$0 add -f batch.urls --wait', 'queue every URL listed in batch.urls and show progress')
          .example('cat list.urls | $0 add -f - --json', 'queue URLs from stdin, print the queued jobs as JSON'),
      (a) => {
        const cmd: Command = { name: 'add', urls: ((a.urls as string[] | undefined) ?? []).map(String), wait: a.wait === true, force: a.force === true };
        if (a.file !== undefined) cmd.file = String(a.file);
        if (a.priority !== undefined) cmd.priority = a.priority as number;
        if (a.pin === true) cmd.pin = true;
        run(a as Raw, cmd);
      },
    )
    .command(
      'stats',
      'show how many files and bytes the cache holds, by type, and the queue',
      (c) => c.example('$0 stats', 'totals per media type').example('$0 stats --json', 'the same as JSON'),
      (a) => run(a as Raw, { name: 'stats' }),
    )
    .command(
      'verify [md5]',
      're-hash a cached file (by md5 or unique prefix), or all of them',
      (c) =>
        c
          .positional('md5', { type: 'string', describe: 'md5 or a unique prefix of it' })
          .option('all', { type: 'boolean', describe: 'verify every cached file' })
          .check((a) => {
            if (a.all && a.md5 !== undefined) throw new Error('give an md5 or --all, not both');
            if (!a.all && a.md5 === undefined) throw new Error('verify needs an md5 (or prefix), or --all');
            return true;
          })
          .example('$0 verify a1b2c3d4e5f6', 'check one file; exit 1 if its bytes changed')
          .example('$0 verify --all', 'check the whole cache'),
      (a) => run(a as Raw, a.all ? { name: 'verify', all: true } : { name: 'verify', md5: String(a.md5), all: false }),
    )
    .command(
      'find <query>',
      'show the record of a cached file by md5, md5 prefix or URL',
      (c) =>
        c
          .positional('query', { type: 'string', describe: 'md5, unique md5 prefix, or a URL (anything containing "://")' })
          .example('$0 find 9e107d9d', 'by md5 prefix')
          .example('$0 find https://example.com/a.jpg', 'by URL'),
      (a) => run(a as Raw, { name: 'find', query: String(a.query) }),
    )
    .command(
      'jobs',
      'list download jobs and their outcome',
      (c) =>
        c
          .option('state', { choices: JOB_STATES as string[], describe: 'only jobs in this state' })
          .option('limit', { type: 'number', requiresArg: true, describe: 'at most this many' })
          .check((a) => {
            if (a.limit !== undefined && !(Number.isInteger(a.limit) && (a.limit as number) > 0)) throw new Error('--limit must be a positive integer');
            return true;
          })
          .example('$0 jobs --state failed', 'what failed, and why')
          .example('$0 jobs --limit 10 --json', 'the last ten jobs as JSON'),
      (a) => {
        const cmd: Command = { name: 'jobs' };
        if (a.state !== undefined) cmd.state = a.state as JobState;
        if (a.limit !== undefined) cmd.limit = a.limit as number;
        run(a as Raw, cmd);
      },
    )
    .command(
      'sweep',
      'start an integrity sweep now (re-hash, quarantine and re-fetch bad files)',
      (c) =>
        c
          .option('wait', { type: 'boolean', describe: 'wait for the report' })
          .example('$0 sweep', 'start one in the background')
          .example('$0 sweep --wait', 'run one and print its report'),
      (a) => run(a as Raw, { name: 'sweep', wait: a.wait === true }),
    )
    .command(
      'status',
      "show the daemon's version, paths, queue, active downloads and sweeps",
      (c) => c.example('$0 status', 'is it running, and where are its files'),
      (a) => run(a as Raw, { name: 'status' }),
    )
    .command(
      'remove <md5>',
      'delete a cached file and its record (asks first on a terminal)',
      (c) =>
        c
          .positional('md5', { type: 'string', describe: 'md5, or a unique prefix of at least 8 hex digits' })
          .option('yes', { alias: 'y', type: 'boolean', describe: 'do not ask for confirmation' })
          .example('$0 remove 9e107d9d372bb6826bd81d3542a419d6', 'forget this file (asks y/N on a terminal)')
          .example('$0 remove 9e107d9d --yes', 'by a unique 8-digit prefix, without asking'),
      (a) => run(a as Raw, { name: 'remove', md5: String(a.md5), yes: a.yes === true }),
    )
    .command(
      'pin <target>',
      'keep cached content from ever being evicted by the quota',
      (c) => c.positional('target', { type: 'string', describe: 'md5, unique md5 prefix, or URL' }).example('$0 pin https://example.com/a.jpg', 'never evict this'),
      (a) => run(a as Raw, { name: 'pin', target: String(a.target) }),
    )
    .command(
      'unpin <target>',
      'let the quota evict this content again (least recently used first)',
      (c) => c.positional('target', { type: 'string', describe: 'md5, unique md5 prefix, or URL' }).example('$0 unpin 9e107d9d', 'evictable again'),
      (a) => run(a as Raw, { name: 'unpin', target: String(a.target) }),
    )
    .command(
      'refresh <target>',
      'ask the origin whether content changed (If-None-Match / If-Modified-Since)',
      (c) =>
        c
          .positional('target', { type: 'string', describe: 'a URL, or an md5 / unique prefix (all its URLs)' })
          .example('$0 refresh https://example.com/a.jpg', '304: nothing transferred; changed: stored as new content, the URL moves to it'),
      (a) => run(a as Raw, { name: 'refresh', target: String(a.target) }),
    )
    .command(
      'watch',
      'print daemon events (downloads, sweeps) until Ctrl-C',
      (c) => c.example('$0 watch', 'follow what the daemon does').example('$0 watch --json | jq .type', 'as JSON lines'),
      (a) => run(a as Raw, { name: 'watch' }),
    )
    .command(
      'cancel <target>',
      'cancel a queued or running job (by job id), or every job of a URL',
      (c) =>
        c
          .positional('target', { type: 'string', describe: 'job id (see mcctl jobs) or URL (anything containing "://")' })
          .example('$0 cancel j42', 'cancel one job')
          .example('$0 cancel https://example.com/big.mp4', 'cancel the download of this URL'),
      (a) => run(a as Raw, { name: 'cancel', target: String(a.target) }),
    )
    .command(
      'retry [id]',
      'queue a failed job again, or every failed job',
      (c) =>
        c
          .positional('id', { type: 'string', describe: 'job id of a failed job' })
          .option('failed', { type: 'boolean', describe: 'retry every failed job' })
          .check((a) => {
            if (a.failed && a.id !== undefined) throw new Error('give a job id or --failed, not both');
            if (!a.failed && a.id === undefined) throw new Error('retry needs a job id, or --failed');
            return true;
          })
          .example('$0 retry j42', 'try this job again')
          .example('$0 retry --failed', 'try every failed job again'),
      (a) => run(a as Raw, a.failed ? { name: 'retry', failed: true } : { name: 'retry', id: String(a.id), failed: false }),
    )
    .command(
      'prune',
      'forget ended (done or failed) jobs by age or count; cached files stay',
      (c) =>
        c
          .option('older-than', { type: 'string', requiresArg: true, describe: 'jobs that ended longer ago than this (90s, 30m, 12h, 7d, 2w)' })
          .option('keep', { type: 'number', requiresArg: true, describe: 'keep only the newest N ended jobs' })
          .check((a) => {
            if (a.olderThan === undefined && a.keep === undefined) throw new Error('prune needs --older-than DURATION and/or --keep N');
            if (a.olderThan !== undefined && parseDuration(String(a.olderThan)) === undefined) throw new Error('--older-than must be a duration such as 90s, 30m, 12h, 7d or 2w');
            if (a.keep !== undefined && !(Number.isInteger(a.keep) && (a.keep as number) >= 0)) throw new Error('--keep must be a whole number >= 0');
            return true;
          })
          .example('$0 prune --older-than 7d', 'forget jobs that ended more than a week ago')
          .example('$0 prune --keep 100', 'keep the newest 100 ended jobs'),
      (a) => {
        const cmd: Command = { name: 'prune' };
        if (a.olderThan !== undefined) cmd.olderThanMs = parseDuration(String(a.olderThan));
        if (a.keep !== undefined) cmd.keep = a.keep as number;
        run(a as Raw, cmd);
      },
    )
    .command('help [command]', 'show the help of one command', (c) => c.positional('command', { type: 'string' }))
    .completion('completion', 'print a bash/zsh completion script (mcctl completion >> ~/.bashrc)')
    .check((a) => {
      for (const k of ['socket', 'timeout', 'file', 'state', 'limit', 'priority', 'older-than', 'keep']) {
        if (Array.isArray(a[k])) throw new Error(`--${k} was given more than once`);
      }
      if (a.timeout !== undefined && !(Number.isFinite(a.timeout) && (a.timeout as number) >= 0)) {
        throw new Error('--timeout must be a number of milliseconds (0 = none)');
      }
      return true;
    })
    .demandCommand(1, 'Name a command')
    .recommendCommands()
    .strict()
    .help()
    .alias('h', 'help')
    .version(packageVersion())
    .alias('V', 'version')
    .epilogue(EPILOGUE)
    .wrap(Math.max(60, Math.min(width, 120)))
    .fail((msg, err) => {
      // One line, never the whole help (git's way): usage.ts says what is wrong and suggests a fix.
      usageError = `mcctl: ${usageLine(msg ?? err?.message ?? 'usage error', argv)}\n`;
      throw new Error('usage');
    });

  let printed = '';
  try {
    await y.parseAsync([...argv], {}, (_err: Error | undefined, _a: unknown, output: string) => {
      printed = output;
    });
  } catch (e) {
    if (usageError === undefined) usageError = `${e instanceof Error ? e.message : String(e)}\n`;
  }
  if (usageError !== undefined) return { kind: 'print', stdout: '', stderr: usageError, code: EXIT.USAGE };
  if (invocation) return { kind: 'run', invocation };
  return { kind: 'print', stdout: printed ? `${printed}\n` : '', stderr: '', code: EXIT.OK };
}
