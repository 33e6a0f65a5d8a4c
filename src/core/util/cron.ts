/**
 * Five-field cron expressions (minute hour day-of-month month day-of-week) as
 * Vixie cron reads them, and the next time one fires in local time. Pure.
 *
 * Semantics kept from Vixie cron:
 * - `*`, `a`, `a-b`, `*\/n`, `a-b/n`, `a/n` (= a-max/n), comma lists; month
 *   and weekday names (jan..dec, sun..sat, case-insensitive); weekday 7 = 0.
 * - Day-of-month and day-of-week: when either field starts with `*` the day
 *   must match both (the starred one matches everything, or its step); when
 *   both are restricted a day matching EITHER fires (`0 0 1,15 * 1` = the
 *   1st, the 15th and every Monday).
 * - `@hourly @daily @midnight @weekly @monthly @yearly @annually`.
 *
 * nextRun() jumps by month, day, hour and minute rather than scanning minute
 * by minute, and never goes backwards across a DST change: a time that does
 * not exist (spring forward) is skipped, a repeated hour (fall back) runs once.
 */
import { MediaCacheError } from '../errors.js';

export interface CronSpec {
  /** The expression as given (trimmed). */
  readonly expr: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly daysOfMonth: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 = Sunday .. 6 = Saturday (7 is folded into 0). */
  readonly daysOfWeek: ReadonlySet<number>;
  /** The day-of-month field started with `*` (Vixie's DOM_STAR). */
  readonly domStar: boolean;
  /** The day-of-week field started with `*` (Vixie's DOW_STAR). */
  readonly dowStar: boolean;
}

const HINT = "expected 5 fields like '0 3 * * *' (minute hour day-of-month month day-of-week) or @daily/@hourly/@weekly/@monthly/@yearly";

const MACROS: Readonly<Record<string, string>> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

const MONTH_NAMES = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

interface FieldDef {
  name: string;
  min: number;
  max: number;
  /** names[i] stands for value i + nameBase */
  names?: string[];
  nameBase?: number;
}

const FIELDS: readonly FieldDef[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day-of-month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTH_NAMES, nameBase: 1 },
  { name: 'day-of-week', min: 0, max: 7, names: DAY_NAMES, nameBase: 0 },
];

/** Longest month length, leap years included, per month 1..12. */
const MAX_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function bad(expr: string, why: string): MediaCacheError {
  return new MediaCacheError('E_BAD_REQUEST', `invalid cron expression ${JSON.stringify(expr)}: ${why}; ${HINT}`);
}

function parseValue(tok: string, f: FieldDef, expr: string): number {
  if (/^\d+$/.test(tok)) {
    const n = Number(tok);
    if (n < f.min || n > f.max) throw bad(expr, `${f.name} value ${n} is outside ${f.min}-${f.max}`);
    return n;
  }
  const i = f.names?.indexOf(tok.toLowerCase()) ?? -1;
  if (i < 0) throw bad(expr, `${f.name} value "${tok}" is not a number${f.names ? ' or a name' : ''}`);
  return i + (f.nameBase ?? 0);
}

function parseField(text: string, f: FieldDef, expr: string): Set<number> {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    if (part === '') throw bad(expr, `empty list item in ${f.name} field "${text}"`);
    const [rangePart, stepPart, extra] = part.split('/');
    if (extra !== undefined) throw bad(expr, `too many '/' in ${f.name} field "${part}"`);
    let step = 1;
    if (stepPart !== undefined) {
      if (!/^\d+$/.test(stepPart) || Number(stepPart) < 1) throw bad(expr, `step "${stepPart}" in ${f.name} field must be a positive integer`);
      step = Number(stepPart);
    }
    let lo: number;
    let hi: number;
    if (rangePart === '*') {
      lo = f.min;
      hi = f.max === 7 ? 6 : f.max; // `*` in day-of-week is 0-6; 7 would double Sunday
    } else if (rangePart.includes('-')) {
      const [a, b, more] = rangePart.split('-');
      if (more !== undefined || a === '' || b === '') throw bad(expr, `bad range "${rangePart}" in ${f.name} field`);
      lo = parseValue(a, f, expr);
      hi = parseValue(b, f, expr);
      if (lo > hi) throw bad(expr, `range "${rangePart}" in ${f.name} field goes backwards`);
    } else {
      lo = parseValue(rangePart, f, expr);
      // "a/n" means "from a to the end, every n" (cronie and Vixie-derived crons).
      hi = stepPart !== undefined ? f.max : lo;
    }
    for (let v = lo; v <= hi; v += step) out.add(f.max === 7 && v === 7 ? 0 : v);
  }
  return out;
}

/** Parse a cron expression; E_BAD_REQUEST with a hint when it is not one. */
export function parseCron(input: string): CronSpec {
  if (typeof input !== 'string') throw bad(String(input), 'not a string');
  const expr = input.trim();
  let body = expr;
  if (expr.startsWith('@')) {
    const m = MACROS[expr.toLowerCase()];
    if (!m) throw bad(expr, `unknown macro ${expr}${expr.toLowerCase() === '@reboot' ? ' (@reboot has no meaning for a sweep schedule)' : ''}`);
    body = m;
  }
  const parts = body.split(/\s+/).filter((s) => s !== '');
  if (parts.length !== 5) throw bad(expr, `it has ${parts.length} field${parts.length === 1 ? '' : 's'}`);
  const [minutes, hours, daysOfMonth, months, daysOfWeek] = parts.map((p, i) => parseField(p, FIELDS[i], expr));
  const domStar = parts[2].startsWith('*');
  const dowStar = parts[4].startsWith('*');
  // With the weekday unrestricted, a day-of-month that no selected month has
  // (`0 0 30 2 *`) would never fire; refuse it instead of waiting forever.
  if (dowStar && !domStar) {
    const possible = [...months].some((m) => [...daysOfMonth].some((d) => d <= MAX_DAYS[m - 1]));
    if (!possible) throw bad(expr, 'no selected month has that day, so it would never run');
  }
  return { expr, minutes, hours, daysOfMonth, months, daysOfWeek, domStar, dowStar };
}

function dayMatches(spec: CronSpec, d: Date): boolean {
  const dom = spec.daysOfMonth.has(d.getDate());
  const dow = spec.daysOfWeek.has(d.getDay());
  return spec.domStar || spec.dowStar ? dom && dow : dom || dow;
}

/** `cand` when it is later than `cur`, else `cur + ms` (a local-time jump that DST folded back). */
function forward(cur: Date, cand: Date, ms: number): Date {
  return cand.getTime() > cur.getTime() ? cand : new Date(cur.getTime() + ms);
}

/**
 * The first time strictly after `after` (to the minute) at which `spec`
 * fires, in the process's local time zone.
 */
export function nextRun(spec: CronSpec, after: Date): Date {
  const t0 = after.getTime();
  if (!Number.isFinite(t0)) throw new MediaCacheError('E_BAD_REQUEST', 'nextRun needs a valid date');
  // Every zone offset in use is a whole number of minutes, so truncating the
  // epoch time truncates the local time too.
  let d = new Date(Math.floor(t0 / 60_000) * 60_000 + 60_000);
  // Each turn moves to the next candidate month, day, hour or minute; 8 years
  // of days (Feb 29 on a Monday may be that far) bounds the loop.
  for (let guard = 0; guard < 200_000; guard++) {
    const y = d.getFullYear();
    const mo = d.getMonth();
    const day = d.getDate();
    const h = d.getHours();
    const mi = d.getMinutes();
    if (!spec.months.has(mo + 1)) {
      d = forward(d, new Date(y, mo + 1, 1, 0, 0), 60_000);
    } else if (!dayMatches(spec, d)) {
      d = forward(d, new Date(y, mo, day + 1, 0, 0), 60_000);
    } else if (!spec.hours.has(h)) {
      d = forward(d, new Date(y, mo, day, h + 1, 0), 3_600_000 - mi * 60_000);
    } else if (!spec.minutes.has(mi)) {
      d = forward(d, new Date(y, mo, day, h, mi + 1), 60_000);
    } else {
      return d;
    }
  }
  throw new MediaCacheError('E_BAD_REQUEST', `cron expression ${JSON.stringify(spec.expr)} never fires`);
}

/** Parse and compute in one go (convenience for callers holding a string). */
export function nextRunOf(expr: string, after: Date): Date {
  return nextRun(parseCron(expr), after);
}
