/**
 * What each mcctl command does once parsed: one handler per command in a
 * typed table, each returning its exit code. Handlers talk to the daemon
 * through RpcClient and print through the injected streams: with --json
 * exactly one JSON document on stdout (JSON lines for `watch`), otherwise
 * the human text from render.ts; errors always go to stderr (cli.ts).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { MIN_REMOVE_PREFIX, type AddItem, type AddParams, type EventName } from '../core/protocol/rpc.js';
import type { Command, GlobalOptions } from './args.js';
import { paintFor } from './color.js';
import { EXIT, UsageError } from './exit-codes.js';
import { JOB_CONTROL_HANDLERS } from './job-commands.js';
import type { OutStream } from './progress.js';
import { canAsk, confirm } from './prompt.js';
import { watch } from './watch.js';
import {
  printable,
  renderAddItem,
  renderAddSummary,
  renderJobs,
  renderRecord,
  renderStats,
  renderStatus,
  renderSweepReport,
  renderVerify,
} from './render.js';
import type { RpcClient } from './rpc-client.js';
import { formatSize } from '../core/util/format.js';
import { pinCommand, refreshCommand } from './quota-commands.js';

export interface CliIO {
  stdout: OutStream;
  stderr: OutStream;
  /** Read for `add -f -` and remove's confirmation (asked only when it is a TTY). */
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
  env: Readonly<Record<string, string | undefined>>;
  /** Aborted on SIGINT/SIGTERM: cli.ts closes the connection, so any wait (add --wait, watch) ends cleanly. */
  signal?: AbortSignal;
  /** Working directory for relative -f paths. */
  cwd?: string;
  now?: () => number;
}

/** Everything a handler needs; the connection is opened on first use and closed by cli.ts. */
export interface Ctx {
  io: CliIO;
  globals: GlobalOptions;
  socketPath: string;
  connect(): Promise<RpcClient>;
  /** Drop the current connection (if any) and open a new one (watch, after a daemon restart). */
  reconnect(): Promise<RpcClient>;
  /** The request timeout for this call: --timeout if given, else `dflt`. */
  timeout(dflt: number): number;
  /** Aborted on Ctrl-C/SIGTERM, for commands that wait (add --wait, sweep --wait, verify --all, watch). */
  signal?: AbortSignal;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
/** Waiting for downloads or a sweep has no natural bound: no timeout unless --timeout says so. */
export const NO_TIMEOUT = 0;
const ADD_BATCH = 5000;
const JOB_EVENTS: EventName[] = ['job.queued', 'job.progress', 'job.done', 'job.failed'];
/** After --timeout ends a wait: how long the daemon may take to show it is still alive. */
const ALIVE_CHECK_MS = 5000;

export function printJson(ctx: Ctx, value: unknown): void {
  ctx.io.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks);
}

/**
 * Wait for `work`, at most --timeout ms when it was given (0 or none: no
 * limit). When the limit passes, the daemon is asked for its status: if it
 * answers, the wait ended while the work goes on (undefined is returned, the
 * caller says so and exits 4); if it does not, the RequestTimeoutError
 * propagates (exit 3, unreachable).
 */
async function waitLimited<T>(ctx: Ctx, client: RpcClient, work: Promise<T>): Promise<T | undefined> {
  const limit = ctx.globals.timeoutMs;
  if (!limit) return work;
  work.catch(() => undefined); // settled later, when the connection closes; nobody listens then
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'expired'>((r) => (timer = setTimeout(() => r('expired'), limit)));
  try {
    const r = await Promise.race([work.then((v) => ({ v })), expired]);
    if (r !== 'expired') return r.v;
  } finally {
    clearTimeout(timer);
  }
  await client.call('status', {}, { timeoutMs: ALIVE_CHECK_MS });
  return undefined;
}

/** URLs from the arguments and the -f file (same rules as inbox files); bad file lines become failed items. */
async function collectUrls(cmd: Extract<Command, { name: 'add' }>, io: CliIO): Promise<{ urls: string[]; invalid: AddItem[] }> {
  const urls = [...cmd.urls];
  const invalid: AddItem[] = [];
  if (cmd.file !== undefined) {
    let bytes: Buffer;
    const shownName = cmd.file === '-' ? 'stdin' : printable(cmd.file, 120);
    try {
      if (cmd.file === '-') {
        if (!io.stdin) throw new Error('no stdin');
        bytes = await readAll(io.stdin);
      } else {
        bytes = readFileSync(resolve(io.cwd ?? '.', cmd.file));
      }
    } catch (e) {
      throw new UsageError(`cannot read ${shownName}: ${e instanceof Error ? e.message : String(e)}`);
    }
    // A .urls file is text: NUL bytes mean an image, an archive, … given by mistake; say so instead of listing its garbage.
    if (bytes.includes(0)) throw new UsageError(`${shownName} is not a text file of URLs (it holds NUL bytes); give a .urls file, one URL per line`);
    const text = bytes.toString('utf8');
    // Loaded only here: pure, and small, but the hot commands do not need it.
    const { parseUrlsFile } = await import('../core/util/urls-file.js');
    const where = cmd.file === '-' ? 'stdin' : cmd.file;
    for (const l of parseUrlsFile(text)) {
      if (l.url !== undefined) urls.push(l.url);
      else if (l.error) invalid.push({ url: l.raw, state: 'failed', error: { ...l.error, message: `${where}:${l.line}: ${l.error.message}` } });
    }
  }
  // One job per distinct URL, first occurrence first.
  return { urls: [...new Set(urls)], invalid };
}

async function add(ctx: Ctx, cmd: Extract<Command, { name: 'add' }>): Promise<number> {
  const { urls, invalid } = await collectUrls(cmd, ctx.io);
  if (urls.length === 0 && invalid.length === 0) throw new UsageError(`no URLs in ${cmd.file !== undefined ? printable(cmd.file, 120) : 'the arguments'}`);
  const paint = ctx.globals.json ? paintFor({}, {}) : paintFor(ctx.io.stdout, ctx.io.env);
  let items: AddItem[] = [];
  let linesPrinted = false;
  if (urls.length > 0) {
    const client = await ctx.connect();
    // Loaded only for --wait: the hot commands do not pay for it.
    const live = cmd.wait && !ctx.globals.json ? new (await import('./progress.js')).AddProgress({ stream: ctx.io.stdout, urls, now: ctx.io.now, paint }) : undefined;
    try {
      if (live) {
        // Subscribe before adding, so no event of our jobs can be missed.
        client.onEvent((e) => live.onEvent(e));
        await client.call('subscribe', { events: JOB_EVENTS });
      }
      // The daemon takes at most 10000 URLs per call; bigger lists go as several calls on one connection.
      const batches: string[][] = [];
      for (let i = 0; i < urls.length; i += ADD_BATCH) batches.push(urls.slice(i, i + ADD_BATCH));
      // Waiting has no natural bound; --timeout then limits the wait itself (waitLimited), not one request.
      const timeoutMs = cmd.wait ? NO_TIMEOUT : ctx.timeout(DEFAULT_TIMEOUT_MS);
      const params = (b: string[]): AddParams => {
        const p: AddParams = { urls: b, wait: cmd.wait, force: cmd.force };
        if (cmd.priority !== undefined) p.priority = cmd.priority;
        if (cmd.pin) p.pin = true;
        return p;
      };
      const calls = Promise.all(batches.map((b) => client.call('add', params(b), { timeoutMs })));
      const replies = cmd.wait ? await waitLimited(ctx, client, calls) : await calls;
      if (replies === undefined) {
        live?.stop();
        const left = live ? `${live.pending} of ${urls.length}` : `the ${urls.length === 1 ? 'download' : `${urls.length} downloads`}`;
        ctx.io.stderr.write(
          `mcctl: stopped waiting after ${ctx.globals.timeoutMs} ms (--timeout); the daemon goes on with ${left}${live ? ' downloads' : ''} (mcctl jobs shows them)\n`,
        );
        return EXIT.WAIT_TIMEOUT;
      }
      items = replies.flatMap((r) => r.items);
      // Lines for what no event covered (cached URLs, bad file lines), once each.
      live?.finish([...invalid, ...items]);
      linesPrinted = live !== undefined;
    } finally {
      // Also on Ctrl-C (cli.ts closes the connection): take the bars down, give the cursor back.
      live?.stop();
    }
  }
  const all = [...invalid, ...items];
  if (ctx.globals.json) {
    printJson(ctx, { items: all });
  } else {
    if (!linesPrinted) for (const it of all) ctx.io.stdout.write(renderAddItem(it, paint) + '\n');
    ctx.io.stdout.write(renderAddSummary(all));
  }
  return all.some((i) => i.state === 'failed' || i.error) ? EXIT.FAILED : EXIT.OK;
}

/** The md5 argument of remove: hex, and long enough to name one file on purpose. */
function removeTarget(md5: string): string {
  const v = md5.trim().toLowerCase();
  if (!/^[0-9a-f]+$/.test(v) || v.length > 32) throw new UsageError(`remove needs an md5 (hex digits), got "${printable(md5, 40)}"`);
  if (v.length < MIN_REMOVE_PREFIX) {
    throw new UsageError(`remove needs at least ${MIN_REMOVE_PREFIX} hex digits of the md5 (or all 32), got ${v.length}: "${v}" could match the wrong file`);
  }
  return v;
}

type Handler<N extends Command['name']> = (ctx: Ctx, cmd: Extract<Command, { name: N }>) => Promise<number>;
type HandlerTable = { [N in Command['name']]: Handler<N> };

export const HANDLERS: HandlerTable = {
  add,
  pin: pinCommand,
  unpin: pinCommand,
  refresh: refreshCommand,

  async stats(ctx) {
    const client = await ctx.connect();
    const s = await client.call('stats', {}, { timeoutMs: ctx.timeout(DEFAULT_TIMEOUT_MS) });
    if (ctx.globals.json) printJson(ctx, s);
    else ctx.io.stdout.write(renderStats(s));
    return EXIT.OK;
  },

  async verify(ctx, cmd) {
    const client = await ctx.connect();
    const params = cmd.all ? { all: true } : { md5: cmd.md5 };
    const v = await client.call('verify', params, { timeoutMs: ctx.timeout(cmd.all ? NO_TIMEOUT : DEFAULT_TIMEOUT_MS) });
    if (ctx.globals.json) printJson(ctx, v);
    else ctx.io.stdout.write(renderVerify(v));
    return v.bad.length > 0 ? EXIT.FAILED : EXIT.OK;
  },

  async find(ctx, cmd) {
    const client = await ctx.connect();
    const params = cmd.query.includes('://') ? { url: cmd.query } : { md5: cmd.query.toLowerCase() };
    const r = await client.call('find', params, { timeoutMs: ctx.timeout(DEFAULT_TIMEOUT_MS) });
    if (ctx.globals.json) printJson(ctx, r);
    else ctx.io.stdout.write(renderRecord(r, ctx.io.now?.()));
    return EXIT.OK;
  },

  async jobs(ctx, cmd) {
    const client = await ctx.connect();
    const params: { state?: typeof cmd.state; limit?: number } = {};
    if (cmd.state) params.state = cmd.state;
    if (cmd.limit !== undefined) params.limit = cmd.limit;
    const r = await client.call('jobs', params, { timeoutMs: ctx.timeout(DEFAULT_TIMEOUT_MS) });
    if (ctx.globals.json) printJson(ctx, r);
    else {
      const out = ctx.io.stdout;
      // On a terminal the table fits its width (URLs give way, keeping their end); piped, nothing is cut.
      const width = out.isTTY ? Math.max(40, (out.columns || 80) - 1) : undefined;
      ctx.io.stdout.write(renderJobs(r, { now: ctx.io.now?.(), width, paint: paintFor(out, ctx.io.env) }));
    }
    return EXIT.OK;
  },

  async sweep(ctx, cmd) {
    const client = await ctx.connect();
    let line: import('./progress.js').StatusLine | undefined;
    if (cmd.wait && !ctx.globals.json && ctx.io.stdout.isTTY) {
      const status = (line = new (await import('./progress.js')).StatusLine(ctx.io.stdout));
      client.onEvent((e) => {
        if (e.type === 'sweep.progress') status.set(`sweeping: ${e.step} ${e.done}${e.total !== undefined ? `/${e.total}` : ''}`);
      });
      await client.call('subscribe', { events: ['sweep.progress'] });
    }
    let r;
    try {
      const call = client.call('sweep', { wait: cmd.wait }, { timeoutMs: cmd.wait ? NO_TIMEOUT : ctx.timeout(DEFAULT_TIMEOUT_MS) });
      r = cmd.wait ? await waitLimited(ctx, client, call) : await call;
    } finally {
      line?.clear();
    }
    if (r === undefined) {
      ctx.io.stderr.write(`mcctl: stopped waiting after ${ctx.globals.timeoutMs} ms (--timeout); the sweep goes on (mcctl status shows it)\n`);
      return EXIT.WAIT_TIMEOUT;
    }
    if (ctx.globals.json) printJson(ctx, r);
    else if (r.report) ctx.io.stdout.write(renderSweepReport(r.report, ctx.io.now?.()));
    else ctx.io.stdout.write(r.joined ? `joined the sweep already running (${r.id})\n` : `sweep ${r.id} started (mcctl status shows when it ends)\n`);
    return r.report && r.report.unrepaired.length > 0 ? EXIT.FAILED : EXIT.OK;
  },

  async status(ctx) {
    const client = await ctx.connect();
    const s = await client.call('status', {}, { timeoutMs: ctx.timeout(DEFAULT_TIMEOUT_MS) });
    if (ctx.globals.json) printJson(ctx, s);
    else ctx.io.stdout.write(renderStatus(s, ctx.io.now?.()));
    return EXIT.OK;
  },

  async remove(ctx, cmd) {
    const md5 = removeTarget(cmd.md5);
    const client = await ctx.connect();
    let target = md5;
    if (!cmd.yes && canAsk(ctx.io)) {
      // Show exactly what would go, then remove that record by its full md5 (not the prefix again).
      const rec = await client.call('find', { md5 }, { timeoutMs: ctx.timeout(DEFAULT_TIMEOUT_MS) });
      const ok = await confirm(ctx.io, `remove ${rec.md5} (${rec.mimeType}, ${formatSize(rec.fileSize)}) ${printable(rec.localPath)}?`);
      if (!ok) {
        ctx.io.stderr.write('mcctl: nothing removed\n');
        return EXIT.FAILED;
      }
      target = rec.md5;
    }
    const r = await client.call('remove', { md5: target }, { timeoutMs: ctx.timeout(DEFAULT_TIMEOUT_MS) });
    if (ctx.globals.json) printJson(ctx, r);
    else ctx.io.stdout.write(`removed ${r.removed.md5}  ${printable(r.removed.localPath)}\n`);
    return EXIT.OK;
  },

  watch,
  ...JOB_CONTROL_HANDLERS,
};

export function runCommand(ctx: Ctx, cmd: Command): Promise<number> {
  const h = HANDLERS[cmd.name] as Handler<typeof cmd.name>;
  return h(ctx, cmd as never);
}
