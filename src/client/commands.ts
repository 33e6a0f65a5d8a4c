/**
 * What each mcctl command does once parsed: one handler per command in a
 * typed table, each returning its exit code. Handlers talk to the daemon
 * through RpcClient and print through the injected streams: with --json
 * exactly one JSON document on stdout (JSON lines for `watch`), otherwise
 * the human text from render.ts; errors always go to stderr (cli.ts).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { AddItem, EventName, RpcEvent } from '../core/protocol/rpc.js';
import type { Command, GlobalOptions } from './args.js';
import { EXIT, UsageError } from './exit-codes.js';
import type { OutStream } from './progress.js';
import {
  renderAddItem,
  renderAddSummary,
  renderEvent,
  renderJobs,
  renderRecord,
  renderStats,
  renderStatus,
  renderSweepReport,
  renderVerify,
} from './render.js';
import type { RpcClient } from './rpc-client.js';

export interface CliIO {
  stdout: OutStream;
  stderr: OutStream;
  /** Read for `add -f -`. */
  stdin?: NodeJS.ReadableStream;
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
  /** The request timeout for this call: --timeout if given, else `dflt`. */
  timeout(dflt: number): number;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
/** Waiting for downloads or a sweep has no natural bound: no timeout unless --timeout says so. */
const NO_TIMEOUT = 0;
const ADD_BATCH = 5000;
const JOB_EVENTS: EventName[] = ['job.queued', 'job.progress', 'job.done', 'job.failed'];

function printJson(ctx: Ctx, value: unknown): void {
  ctx.io.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** URLs from the arguments and the -f file (same rules as inbox files); bad file lines become failed items. */
async function collectUrls(cmd: Extract<Command, { name: 'add' }>, io: CliIO): Promise<{ urls: string[]; invalid: AddItem[] }> {
  const urls = [...cmd.urls];
  const invalid: AddItem[] = [];
  if (cmd.file !== undefined) {
    let text: string;
    try {
      if (cmd.file === '-') {
        if (!io.stdin) throw new Error('no stdin');
        text = await readAll(io.stdin);
      } else {
        text = readFileSync(resolve(io.cwd ?? '.', cmd.file), 'utf8');
      }
    } catch (e) {
      throw new UsageError(`cannot read ${cmd.file === '-' ? 'stdin' : cmd.file}: ${e instanceof Error ? e.message : String(e)}`);
    }
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
  if (urls.length === 0 && invalid.length === 0) throw new UsageError(`no URLs in ${cmd.file ?? 'the arguments'}`);
  let items: AddItem[] = [];
  let linesPrinted = false;
  if (urls.length > 0) {
    const client = await ctx.connect();
    // Loaded only for --wait: the hot commands do not pay for it.
    const live = cmd.wait && !ctx.globals.json ? new (await import('./progress.js')).AddProgress({ stream: ctx.io.stdout, urls, now: ctx.io.now }) : undefined;
    try {
      if (live) {
        // Subscribe before adding, so no event of our jobs can be missed.
        client.onEvent((e) => live.onEvent(e));
        await client.call('subscribe', { events: JOB_EVENTS });
      }
      // The daemon takes at most 10000 URLs per call; bigger lists go as several calls on one connection.
      const batches: string[][] = [];
      for (let i = 0; i < urls.length; i += ADD_BATCH) batches.push(urls.slice(i, i + ADD_BATCH));
      const timeoutMs = ctx.timeout(cmd.wait ? NO_TIMEOUT : DEFAULT_TIMEOUT_MS);
      const replies = await Promise.all(batches.map((b) => client.call('add', { urls: b, wait: cmd.wait, force: cmd.force }, { timeoutMs })));
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
    if (!linesPrinted) for (const it of all) ctx.io.stdout.write(renderAddItem(it) + '\n');
    ctx.io.stdout.write(renderAddSummary(all));
  }
  return all.some((i) => i.state === 'failed' || i.error) ? EXIT.FAILED : EXIT.OK;
}

type Handler<N extends Command['name']> = (ctx: Ctx, cmd: Extract<Command, { name: N }>) => Promise<number>;
type HandlerTable = { [N in Command['name']]: Handler<N> };

export const HANDLERS: HandlerTable = {
  add,

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
    else ctx.io.stdout.write(renderJobs(r, ctx.io.now?.()));
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
      r = await client.call('sweep', { wait: cmd.wait }, { timeoutMs: ctx.timeout(cmd.wait ? NO_TIMEOUT : DEFAULT_TIMEOUT_MS) });
    } finally {
      line?.clear();
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
    const client = await ctx.connect();
    const r = await client.call('remove', { md5: cmd.md5.toLowerCase() }, { timeoutMs: ctx.timeout(DEFAULT_TIMEOUT_MS) });
    if (ctx.globals.json) printJson(ctx, r);
    else ctx.io.stdout.write(`removed ${r.removed.md5}  ${r.removed.localPath}\n`);
    return EXIT.OK;
  },

  async watch(ctx) {
    const client = await ctx.connect();
    const out = ctx.io.stdout;
    const lastProgress = new Map<string, { at: number; bytes: number }>();
    const now = ctx.io.now ?? Date.now;
    client.onEvent((e: RpcEvent) => {
      if (ctx.globals.json) return void out.write(JSON.stringify(e) + '\n');
      // Progress is chatty: at most one line per job per second for people.
      if (e.type === 'job.progress') {
        const t = now();
        const last = lastProgress.get(e.jobId);
        if (last && (last.bytes === e.bytes || (t - last.at < 1000 && e.bytes !== e.totalBytes))) return;
        lastProgress.set(e.jobId, { at: t, bytes: e.bytes });
      } else if (e.type === 'job.done' || e.type === 'job.failed') {
        lastProgress.delete(e.job.id);
      }
      out.write(renderEvent(e, new Date(now())) + '\n');
    });
    client.onDropped((n) => {
      if (ctx.globals.json) out.write(JSON.stringify({ type: 'events.dropped', dropped: n }) + '\n');
      else ctx.io.stderr.write(`mcctl: ${n} event(s) were not delivered: this watch fell behind the daemon\n`);
    });
    const closed = new Promise<Error | undefined>((resolve) => client.onClose(resolve));
    await client.call('subscribe', {}, { timeoutMs: ctx.timeout(DEFAULT_TIMEOUT_MS) });
    if (!ctx.globals.json) ctx.io.stderr.write(`watching ${ctx.socketPath} (Ctrl-C to stop)\n`);
    // Runs until Ctrl-C/SIGTERM (cli.ts closes the connection: no error) or the daemon goes away.
    const err = await closed;
    if (err) throw err;
    return EXIT.OK;
  },
};

export function runCommand(ctx: Ctx, cmd: Command): Promise<number> {
  const h = HANDLERS[cmd.name] as Handler<typeof cmd.name>;
  return h(ctx, cmd as never);
}
