/**
 * `mcctl watch`: print daemon events until Ctrl-C. When the daemon goes away
 * (restart, upgrade, crash) it says so on stderr and reconnects, retrying
 * with a growing pause (up to RECONNECT_MAX_MS), then subscribes again and
 * says it is back; only Ctrl-C/SIGTERM ends it. Events that happen while
 * no daemon is there are not replayed (the daemon keeps no event log).
 */
import type { RpcEvent } from '../core/protocol/rpc.js';
import { paintFor, NO_PAINT } from './color.js';
import { DEFAULT_TIMEOUT_MS, type Ctx } from './commands.js';
import { EXIT } from './exit-codes.js';
import { renderEvent } from './render.js';
import type { RpcClient } from './rpc-client.js';

const RECONNECT_FIRST_MS = 250;
const RECONNECT_MAX_MS = 2000;

/** Resolves after `ms`, or at once when `signal` aborts (then true). */
function pause(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(true);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(false);
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export async function watch(ctx: Ctx): Promise<number> {
  const out = ctx.io.stdout;
  const err = ctx.io.stderr;
  const json = ctx.globals.json;
  const paint = json ? NO_PAINT : paintFor(out, ctx.io.env);
  const lastProgress = new Map<string, { at: number; bytes: number }>();
  const now = ctx.io.now ?? Date.now;
  const onEvent = (e: RpcEvent): void => {
    if (json) return void out.write(JSON.stringify(e) + '\n');
    // Progress is chatty: at most one line per job per second for people.
    if (e.type === 'job.progress') {
      const t = now();
      const last = lastProgress.get(e.jobId);
      if (last && (last.bytes === e.bytes || (t - last.at < 1000 && e.bytes !== e.totalBytes))) return;
      lastProgress.set(e.jobId, { at: t, bytes: e.bytes });
    } else if (e.type === 'job.done' || e.type === 'job.failed') {
      lastProgress.delete(e.job.id);
    }
    out.write(renderEvent(e, new Date(now()), paint) + '\n');
  };

  // The daemon stopped sending to a watch that fell behind, then resumed: say how much was missed.
  const onDropped = (n: number): void => {
    if (json) out.write(JSON.stringify({ type: 'events.dropped', dropped: n }) + '\n');
    else err.write(`mcctl: ${n} event(s) were not delivered: this watch fell behind the daemon\n`);
  };

  let client: RpcClient | undefined = await ctx.connect();
  let first = true;
  for (;;) {
    const closed = new Promise<Error | undefined>((resolve) => client!.onClose(resolve));
    client.onEvent(onEvent);
    client.onDropped(onDropped);
    let subscribed = false;
    try {
      await client.call('subscribe', {}, { timeoutMs: ctx.timeout(DEFAULT_TIMEOUT_MS) });
      err.write(first ? `watching ${ctx.socketPath} (Ctrl-C to stop)\n` : `mcctl: reconnected to ${ctx.socketPath}; watching again\n`);
      subscribed = true;
    } catch (e) {
      // The first subscribe failing is an answer (exit code via cli.ts). After a restart the
      // daemon may answer before it is ready (E_UNAVAILABLE, "still starting"): connect again.
      if (first) throw e;
    }
    first = false;
    if (subscribed) {
      // Runs until Ctrl-C/SIGTERM (cli.ts closes the connection: no error) or the daemon goes away.
      const why = await closed;
      if (!why || ctx.signal?.aborted) return EXIT.OK;
      err.write(`mcctl: lost the daemon at ${ctx.socketPath}; reconnecting (Ctrl-C to stop)\n`);
    } else {
      client.close();
    }
    client = undefined;
    let wait = RECONNECT_FIRST_MS;
    while (!client) {
      if (await pause(wait, ctx.signal)) return EXIT.OK;
      wait = Math.min(RECONNECT_MAX_MS, wait * 2);
      try {
        client = await ctx.reconnect();
      } catch {
        // Not back yet (ENOENT/ECONNREFUSED while it restarts): keep trying.
      }
    }
  }
}
