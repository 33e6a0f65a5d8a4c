/**
 * A yes/no question on the terminal (remove's confirmation). Reads one line
 * from the given stdin, then lets go of it so the process can exit.
 */
export interface PromptIO {
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
  stderr: { write(s: string): unknown };
}

/** Whether a person can be asked: stdin is a terminal. */
export function canAsk(io: PromptIO): boolean {
  return io.stdin?.isTTY === true;
}

/** Ask on stderr; true only for "y" or "yes" (any case). End of input counts as no. */
export function confirm(io: PromptIO, question: string): Promise<boolean> {
  const stdin = io.stdin;
  if (!stdin) return Promise.resolve(false);
  io.stderr.write(`${question} [y/N] `);
  return new Promise((resolve) => {
    let buf = '';
    const done = (answer: string | undefined): void => {
      stdin.removeListener('data', onData);
      stdin.removeListener('end', onEnd);
      stdin.pause();
      if (answer === undefined) io.stderr.write('\n');
      resolve(/^\s*y(es)?\s*$/i.test(answer ?? ''));
    };
    const onData = (c: Buffer | string): void => {
      buf += c.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(buf.slice(0, nl));
    };
    const onEnd = (): void => done(undefined);
    stdin.on('data', onData);
    stdin.once('end', onEnd);
    stdin.resume();
  });
}
