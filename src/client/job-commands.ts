/**
 * Job control in mcctl: `cancel JOB|URL`, `retry JOB|--failed`, `prune
 * --older-than D --keep N`. Each is one RPC call and a short report; a daemon
 * that does not know the method (older than this mcctl) is named as such.
 */
import type { ClientMethodName, ClientMethods, JobInfo } from '../core/protocol/rpc.js';
import { RPC_ERRORS } from '../core/protocol/rpc.js';
import { MediaCacheError } from '../core/errors.js';
import type { Command } from './args.js';
import { DEFAULT_TIMEOUT_MS, printJson, type Ctx } from './commands.js';
import { EXIT } from './exit-codes.js';
import { printable } from './render.js';
import { RpcReplyError } from './rpc-client.js';

async function callJobControl<M extends ClientMethodName>(ctx: Ctx, method: M, params: ClientMethods[M]['params']): Promise<ClientMethods[M]['result']> {
  const client = await ctx.connect();
  try {
    return await client.call(method, params, { timeoutMs: ctx.timeout(DEFAULT_TIMEOUT_MS) });
  } catch (e) {
    if (e instanceof RpcReplyError && e.rpcCode === RPC_ERRORS.METHOD_NOT_FOUND) {
      throw new MediaCacheError('E_UNAVAILABLE', `the daemon at ${ctx.socketPath} does not support "${method}" (it is older than this mcctl; restart it after upgrading)`);
    }
    throw e;
  }
}

function jobLines(verb: string, jobs: readonly JobInfo[]): string {
  return jobs.map((j) => `${verb}  ${j.id}  ${printable(j.url)}\n`).join('');
}

export const JOB_CONTROL_HANDLERS = {
  async cancel(ctx: Ctx, cmd: Extract<Command, { name: 'cancel' }>): Promise<number> {
    const params = cmd.target.includes('://') ? { url: cmd.target } : { id: cmd.target };
    const r = await callJobControl(ctx, 'cancel', params);
    if (ctx.globals.json) printJson(ctx, r);
    else if (!r.cancelled) ctx.io.stderr.write(`mcctl: job ${r.job.id} had already ended (${r.job.state}); nothing cancelled\n`);
    else ctx.io.stdout.write(jobLines('cancelled', [r.job]));
    return r.cancelled ? EXIT.OK : EXIT.NOT_FOUND;
  },

  async retry(ctx: Ctx, cmd: Extract<Command, { name: 'retry' }>): Promise<number> {
    const r = await callJobControl(ctx, 'retry', cmd.failed ? { failed: true } : { id: cmd.id });
    if (ctx.globals.json) printJson(ctx, r);
    else if (r.jobs.length === 0) ctx.io.stdout.write(cmd.failed ? 'no failed jobs to retry\n' : `job ${printable(cmd.id ?? '')} was not retried\n`);
    else ctx.io.stdout.write(jobLines('queued again', r.jobs) + `${r.jobs.length} job${r.jobs.length === 1 ? '' : 's'} queued again\n`);
    // Nothing to retry with --failed is fine; a named job that could not be retried is not.
    return r.jobs.length === 0 && !cmd.failed ? EXIT.NOT_FOUND : EXIT.OK;
  },

  async prune(ctx: Ctx, cmd: Extract<Command, { name: 'prune' }>): Promise<number> {
    const params: ClientMethods['prune']['params'] = {};
    if (cmd.olderThanMs !== undefined) params.olderThanMs = cmd.olderThanMs;
    if (cmd.keep !== undefined) params.keep = cmd.keep;
    const r = await callJobControl(ctx, 'prune', params);
    if (ctx.globals.json) printJson(ctx, r);
    else ctx.io.stdout.write(`forgot ${r.pruned} ended job${r.pruned === 1 ? '' : 's'}, ${r.remaining} remembered (cached files stay)\n`);
    return EXIT.OK;
  },
};
