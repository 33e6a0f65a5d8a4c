/**
 * mcctl's main function: argv and injected streams in, exit code out (the
 * entry, mcctl.ts, only wires it to the process). Parses with the fast
 * parser, falling back to yargs (loaded lazily, see args.ts), resolves the
 * socket like the daemon does, runs the command, and turns every error into
 * a message on stderr and an exit code (exit-codes.ts).
 */
import { MediaCacheError } from '../core/errors.js';
import { expandUrlShorthand, fastParse, type Invocation } from './args.js';
import { runCommand, type CliIO, type Ctx } from './commands.js';
import { EXIT, exitCodeFor, UsageError } from './exit-codes.js';
import { errorText } from './render.js';
import { RpcClient, RpcReplyError } from './rpc-client.js';

export type { CliIO } from './commands.js';

/** Fail fast when the daemon is not there; a Unix connect either succeeds or fails at once. */
const CONNECT_TIMEOUT_MS = 3000;

/*
 * core/paths.js is imported lazily below: it loads node:os, which costs a
 * visible share of mcctl's start (bench/mcctl-startup.js), and the common
 * case (--socket or MEDIACACHE_SOCKET given, a short path) does not need it.
 */

/** --socket, else $MEDIACACHE_SOCKET, else the platform default (the daemon's own rule). */
export async function resolveSocket(given: string | undefined, env: Readonly<Record<string, string | undefined>>): Promise<string> {
  if (given) return given;
  if (env.MEDIACACHE_SOCKET) return env.MEDIACACHE_SOCKET;
  const { currentPlatformEnv, defaultSocketPath } = await import('../core/util/paths.js');
  return defaultSocketPath({ ...currentPlatformEnv(), env });
}

/** Why this socket path cannot work (too long: Node would truncate it silently), or undefined. */
export async function socketPathProblem(socketPath: string, platform: NodeJS.Platform = process.platform): Promise<string | undefined> {
  // Every Unix platform allows at least 103 bytes; only longer paths and Windows need the full check.
  if (platform !== 'win32' && Buffer.byteLength(socketPath) <= 103) return undefined;
  const { checkSocketPath } = await import('../core/util/paths.js');
  return checkSocketPath(socketPath, platform);
}

export function describeError(e: unknown): string {
  if (e instanceof RpcReplyError) return errorText({ code: e.code, message: e.message, status: e.status });
  if (e instanceof UsageError) return e.message;
  if (e instanceof MediaCacheError) return e.message;
  return e instanceof Error ? (e.stack ?? e.message) : String(e);
}

async function parse(argv: readonly string[], io: CliIO): Promise<Invocation | number> {
  const args = expandUrlShorthand(argv);
  const fast = fastParse(args);
  if (fast) return fast;
  const { parseWithYargs } = await import('./cli-yargs.js');
  const out = await parseWithYargs(args, io.stdout.columns ?? 80);
  if (out.kind === 'run') return out.invocation;
  if (out.stdout) io.stdout.write(out.stdout);
  if (out.stderr) io.stderr.write(out.stderr);
  return out.code;
}

export async function main(argv: readonly string[], io: CliIO): Promise<number> {
  let inv: Invocation | number;
  try {
    inv = await parse(argv, io);
  } catch (e) {
    io.stderr.write(`mcctl: ${describeError(e)}\n`);
    return EXIT.USAGE;
  }
  if (typeof inv === 'number') return inv;
  const { globals, command } = inv;

  const socketPath = await resolveSocket(globals.socket, io.env);
  const bad = await socketPathProblem(socketPath);
  if (bad) {
    io.stderr.write(`mcctl: ${bad}\n`);
    return EXIT.USAGE;
  }
  // Never send URLs to (or believe verify results from) a socket someone else could have planted.
  const { socketDistrust, SocketUntrustedError } = await import('./socket-trust.js');
  const distrust = socketDistrust({ socketPath, explicit: Boolean(globals.socket || io.env.MEDIACACHE_SOCKET), uid: process.getuid?.() });
  if (distrust) {
    const err = new SocketUntrustedError(socketPath, distrust);
    io.stderr.write(`mcctl: ${describeError(err)}\n`);
    return exitCodeFor(err);
  }

  let client: RpcClient | undefined;
  let connecting: Promise<RpcClient> | undefined;
  // Only commands that wait need a clean Ctrl-C; the others are over in a moment, and not
  // touching io.signal spares them the signal handlers (mcctl.ts installs them on first use).
  const waits = command.name === 'watch' || ((command.name === 'add' || command.name === 'sweep') && command.wait) || (command.name === 'verify' && command.all);
  const signal = waits ? io.signal : undefined;
  const connectTimeoutMs = globals.timeoutMs ? Math.min(globals.timeoutMs, CONNECT_TIMEOUT_MS) : CONNECT_TIMEOUT_MS;
  const ctx: Ctx = {
    io,
    globals,
    socketPath,
    signal,
    timeout: (dflt) => globals.timeoutMs ?? dflt,
    connect: () =>
      (connecting ??= RpcClient.connect(socketPath, { connectTimeoutMs }).then((c) => {
        client = c;
        if (signal?.aborted) c.close(); // interrupted while connecting: every call now fails at once
        return c;
      })),
    reconnect: () => {
      client?.close();
      client = undefined;
      connecting = undefined;
      const p = ctx.connect();
      // A failed attempt is not remembered: the next reconnect() tries again.
      p.catch(() => {
        if (connecting === p) connecting = undefined;
      });
      return p;
    },
  };

  const run = runCommand(ctx, command).then(
    (code) => ({ code }),
    (err: unknown) => ({ err }),
  );
  const interrupted = new Promise<'interrupted'>((resolve) => {
    if (!signal) return;
    if (signal.aborted) resolve('interrupted');
    else signal.addEventListener('abort', () => resolve('interrupted'), { once: true });
  });
  try {
    const r = await Promise.race([run, interrupted]);
    if (r === 'interrupted') {
      // Closing the connection fails whatever the command waits for, so it unwinds (and its progress bars go away).
      client?.close();
      await run;
      if (command.name === 'watch') return EXIT.OK;
      if ((command.name === 'add' || command.name === 'sweep') && command.wait) {
        io.stderr.write(`mcctl: stopped waiting; the daemon goes on with the work (mcctl ${command.name === 'add' ? 'jobs' : 'status'} shows it)\n`);
      }
      return EXIT.INTERRUPTED;
    }
    if ('err' in r) {
      io.stderr.write(`mcctl: ${describeError(r.err)}\n`);
      return exitCodeFor(r.err);
    }
    return r.code;
  } finally {
    client?.close();
  }
}
