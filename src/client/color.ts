/**
 * Colour for mcctl's human output: green for done, red for failed, yellow for
 * waiting to retry, dim for secondary text. Only on a terminal, never with
 * NO_COLOR set to anything non-empty (https://no-color.org) or TERM=dumb,
 * and never in --json output. Colour is applied after a cell is padded, so
 * the escape codes never count towards a column's width.
 */
export interface Paint {
  readonly enabled: boolean;
  ok(s: string): string;
  fail(s: string): string;
  warn(s: string): string;
  dim(s: string): string;
}

const sgr =
  (open: number, close: number) =>
  (s: string): string =>
    s === '' ? s : `\x1b[${open}m${s}\x1b[${close}m`;
const same = (s: string): string => s;

export const NO_PAINT: Paint = { enabled: false, ok: same, fail: same, warn: same, dim: same };
export const ANSI_PAINT: Paint = { enabled: true, ok: sgr(32, 39), fail: sgr(31, 39), warn: sgr(33, 39), dim: sgr(2, 22) };

export function colorWanted(stream: { isTTY?: boolean }, env: Readonly<Record<string, string | undefined>>): boolean {
  if (stream.isTTY !== true) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return env.TERM !== 'dumb';
}

export function paintFor(stream: { isTTY?: boolean }, env: Readonly<Record<string, string | undefined>>): Paint {
  return colorWanted(stream, env) ? ANSI_PAINT : NO_PAINT;
}

/** Colour of a job or item state word. */
export function paintState(p: Paint, state: string, padded: string = state): string {
  switch (state) {
    case 'done':
    case 'cached':
      return p.ok(padded);
    case 'failed':
      return p.fail(padded);
    case 'retrying':
    case 'cancelled':
      return p.warn(padded);
    default:
      return padded;
  }
}

/** Width on screen: code points, escape sequences not counted. */
export function visibleWidth(s: string): number {
  return [...s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')].length;
}
