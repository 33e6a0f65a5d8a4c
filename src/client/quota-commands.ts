/**
 * mcctl pin | unpin | refresh: thin wrappers over the RPC methods of the
 * same names (registered in commands.ts, parsed in args.ts / cli-yargs.ts).
 */
import { formatSize } from '../core/util/format.js';
import type { RefreshItem } from '../core/protocol/rpc.js';
import type { Command } from './args.js';
import type { Ctx } from './commands.js';
import { EXIT } from './exit-codes.js';

const TIMEOUT_MS = 30_000;
/** A refresh may download changed content: no timeout unless --timeout says so. */
const REFRESH_TIMEOUT_MS = 0;

function printJson(ctx: Ctx, value: unknown): void {
  ctx.io.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** md5s are sent lowercase; URLs as given. */
function target(t: string): string {
  return t.includes('://') ? t : t.toLowerCase();
}

export async function pinCommand(ctx: Ctx, cmd: Extract<Command, { name: 'pin' | 'unpin' }>): Promise<number> {
  const client = await ctx.connect();
  const r = await client.call(cmd.name, { target: target(cmd.target) }, { timeoutMs: ctx.timeout(TIMEOUT_MS) });
  if (ctx.globals.json) printJson(ctx, r);
  else ctx.io.stdout.write(`${cmd.name === 'pin' ? 'pinned' : 'unpinned'} ${r.record.md5}  ${formatSize(r.record.fileSize)}  ${r.record.localPath}\n`);
  return EXIT.OK;
}

export function renderRefreshItem(i: RefreshItem): string {
  switch (i.state) {
    case 'not-modified':
      return `not modified (304)  ${i.record.md5}  ${i.url}`;
    case 'unchanged':
      return `unchanged           ${i.record.md5}  ${i.url}`;
    case 'changed':
      return `CHANGED upstream    ${i.change?.from ?? '?'} -> ${i.record.md5}  ${i.url}`;
  }
}

export async function refreshCommand(ctx: Ctx, cmd: Extract<Command, { name: 'refresh' }>): Promise<number> {
  const client = await ctx.connect();
  const r = await client.call('refresh', { target: target(cmd.target) }, { timeoutMs: ctx.timeout(REFRESH_TIMEOUT_MS) });
  if (ctx.globals.json) printJson(ctx, r);
  else for (const i of r.items) ctx.io.stdout.write(renderRefreshItem(i) + '\n');
  return EXIT.OK;
}
