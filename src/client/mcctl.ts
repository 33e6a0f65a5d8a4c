/**
 * The `mcctl` entry (bin/mcctl.js imports it): wires main() to the process.
 * Kept tiny — what it imports is what every `mcctl stats` pays for at start.
 */
import { main } from './cli.js';

let ac: AbortController | undefined;
let signals = 0;
const onSignal = (): void => {
  // First Ctrl-C/SIGTERM: stop waiting cleanly. A second one: leave now.
  if (++signals > 1) {
    if (process.stdout.isTTY) process.stdout.write('\x1b[?25h'); // the progress view may have hidden the cursor
    process.exit(130);
  }
  ac?.abort();
};
/** Handlers are installed only when a command asks for the signal (one that waits). */
function interruptSignal(): AbortSignal {
  if (!ac) {
    ac = new AbortController();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  return ac.signal;
}
// `mcctl jobs | head`: the reader went away; nothing left to say.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
});

main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  // A getter: touching process.stdin creates the stream, which only `add -f -` needs.
  get stdin() {
    return process.stdin;
  },
  env: process.env,
  get signal() {
    return interruptSignal();
  },
  cwd: process.cwd(),
}).then(
  (code) => {
    process.exitCode = code;
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  },
  (e: unknown) => {
    process.stderr.write(`mcctl: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
