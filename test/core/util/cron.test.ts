import t from 'tap';
import { parseCron, nextRun, nextRunOf } from '../../../src/core/util/cron.js';
import { MediaCacheError } from '../../../src/core/errors.js';

// Local-time constructor shorthand: month is 1-based here for readability.
const L = (y: number, mo: number, d: number, h = 0, mi = 0): Date => new Date(y, mo - 1, d, h, mi);
const next = (expr: string, after: Date): Date => nextRunOf(expr, after);

t.test('fields: values, ranges, steps, lists', async (t) => {
  const s = parseCron('*/15 1-3,22 * * *');
  t.same([...s.minutes].sort((a, b) => a - b), [0, 15, 30, 45]);
  t.same([...s.hours].sort((a, b) => a - b), [1, 2, 3, 22]);
  t.equal(s.daysOfMonth.size, 31);
  t.equal(s.daysOfWeek.size, 7);
  t.same([...parseCron('0 0 * * *').minutes], [0]);
  t.same([...parseCron('10-50/20 * * * *').minutes], [10, 30, 50]);
  // "a/n" runs from a to the field's end
  t.same([...parseCron('50/5 * * * *').minutes], [50, 55]);
  t.same([...parseCron('0 0 * * 7').daysOfWeek], [0], 'weekday 7 is Sunday');
  t.same([...parseCron('0 0 * * 5-7').daysOfWeek].sort(), [0, 5, 6]);
  t.equal(parseCron('  0   3 *  * *  ').expr, '0   3 *  * *');
});

t.test('month and weekday names, case-insensitive, in ranges', async (t) => {
  const s = parseCron('0 0 * JAN,mar-May mon-FRI');
  t.same([...s.months].sort((a, b) => a - b), [1, 3, 4, 5]);
  t.same([...s.daysOfWeek].sort(), [1, 2, 3, 4, 5]);
  t.same([...parseCron('0 0 * dec sun').months], [12]);
  t.same([...parseCron('0 0 * dec sun').daysOfWeek], [0]);
});

t.test('macros', async (t) => {
  // Wed 2026-03-11 10:20
  const after = L(2026, 3, 11, 10, 20);
  t.same(next('@hourly', after), L(2026, 3, 11, 11, 0));
  t.same(next('@daily', after), L(2026, 3, 12, 0, 0));
  t.same(next('@midnight', after), L(2026, 3, 12, 0, 0));
  t.same(next('@weekly', after), L(2026, 3, 15, 0, 0), 'next Sunday');
  t.same(next('@monthly', after), L(2026, 4, 1, 0, 0));
  t.same(next('@yearly', after), L(2027, 1, 1, 0, 0));
  t.same(next('@annually', after), L(2027, 1, 1, 0, 0));
  t.same(next('@DAILY', after), L(2026, 3, 12, 0, 0));
});

t.test('bad expressions give E_BAD_REQUEST with a hint', async (t) => {
  const bad = [
    '',
    '* * * *',
    '* * * * * *',
    '60 * * * *',
    '* 24 * * *',
    '* * 0 * *',
    '* * 32 * *',
    '* * * 13 *',
    '* * * * 8',
    '*/0 * * * *',
    '5-1 * * * *',
    '1,,2 * * * *',
    'a * * * *',
    '* * * foo *',
    '1-2-3 * * * *',
    '*/2/3 * * * *',
    '@reboot',
    '@never',
    '0 0 30 2 *',
    '0 0 31 4,6 *',
  ];
  for (const expr of bad) {
    const err = (() => {
      try {
        parseCron(expr);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    t.ok(err instanceof MediaCacheError, `${JSON.stringify(expr)} is refused`);
    t.equal((err as MediaCacheError).code, 'E_BAD_REQUEST');
    t.match((err as MediaCacheError).message, /expected 5 fields like '0 3 \* \* \*'/);
  }
  // 31st exists in some selected month: fine; Feb 29 exists in leap years: fine
  t.ok(parseCron('0 0 31 1-4 *'));
  t.same(next('0 0 29 2 *', L(2026, 3, 1)), L(2028, 2, 29));
  // dom impossible but the weekday (OR) makes it possible
  t.same(next('0 0 30 2 mon', L(2026, 1, 1)), L(2026, 2, 2));
});

t.test('next run: simple and strictly after', async (t) => {
  t.same(next('0 3 * * *', L(2026, 5, 10, 2, 59)), L(2026, 5, 10, 3, 0));
  t.same(next('0 3 * * *', L(2026, 5, 10, 3, 0)), L(2026, 5, 11, 3, 0), 'not the same minute again');
  t.same(next('* * * * *', new Date(L(2026, 5, 10, 3, 0).getTime() + 59_999)), L(2026, 5, 10, 3, 1));
  t.same(next('*/5 * * * *', L(2026, 5, 10, 3, 7)), L(2026, 5, 10, 3, 10));
  t.same(next('30 */6 * * *', L(2026, 5, 10, 7, 0)), L(2026, 5, 10, 12, 30));
});

t.test('next run across month and year boundaries', async (t) => {
  t.same(next('0 0 1 * *', L(2026, 1, 31, 23, 59)), L(2026, 2, 1, 0, 0));
  t.same(next('15 10 * * *', L(2026, 12, 31, 23, 0)), L(2027, 1, 1, 10, 15));
  t.same(next('0 0 31 * *', L(2026, 4, 1)), L(2026, 5, 31), 'skips April (30 days)');
  t.same(next('0 12 * feb *', L(2026, 3, 1)), L(2027, 2, 1, 12, 0));
  t.same(next('59 23 31 12 *', L(2026, 12, 31, 23, 59)), L(2027, 12, 31, 23, 59));
  t.same(next('0 0 29 2 *', L(2028, 2, 29, 0, 0)), L(2032, 2, 29));
});

t.test('day-of-month / day-of-week: OR when both restricted, AND when one is starred', async (t) => {
  // 2026-06-01 is a Monday.
  const after = L(2026, 6, 2); // Tuesday
  // both restricted: the 15th OR any Friday -> Friday 5th comes first
  t.same(next('0 0 15 * fri', after), L(2026, 6, 5));
  const runs: Date[] = [];
  let d = after;
  for (let i = 0; i < 6; i++) runs.push((d = next('0 0 1,15 * 5', d)));
  t.same(
    runs.map((x) => x.getDate()),
    [5, 12, 15, 19, 26, 1],
    'Fridays plus the 1st and 15th',
  );
  // dom starred: only weekday counts
  t.same(next('0 0 * * 1', after), L(2026, 6, 8));
  // dow starred: only dom counts
  t.same(next('0 0 13 * *', after), L(2026, 6, 13));
  // "*/2" still counts as starred (Vixie): AND -> odd days that are Mondays
  t.same(next('0 0 */2 * 1', after), L(2026, 6, 15));
});

t.test('does not scan minute by minute for a year', async (t) => {
  const started = process.hrtime.bigint();
  for (let i = 0; i < 200; i++) next('0 0 29 2 1', L(2026, 1, 1)); // Monday Feb 29 OR ... both restricted: OR
  for (let i = 0; i < 200; i++) next('59 23 31 12 *', L(2026, 1, 1));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.ok(ms < 2000, `400 far-away next runs took ${ms.toFixed(0)} ms`);
});

t.test('DST: New York spring forward and fall back', async (t) => {
  const saved = process.env.TZ;
  process.env.TZ = 'America/New_York';
  t.teardown(() => {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  });
  // 2026-03-08 02:00 EST -> 03:00 EDT; 02:30 does not exist that day.
  const before = new Date('2026-03-08T06:00:00Z'); // 01:00 EST
  const r = next('30 2 * * *', before);
  t.equal(r.toISOString(), '2026-03-09T06:30:00.000Z', 'the missing 02:30 is skipped, next day 02:30 EDT');
  const hourly = next('0 * * * *', before);
  t.equal(hourly.toISOString(), '2026-03-08T07:00:00.000Z', '03:00 EDT follows 01:00 EST');
  // 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice, run once.
  const first = next('30 1 * * *', new Date('2026-11-01T04:00:00Z')); // 00:00 EDT
  t.equal(first.toISOString(), '2026-11-01T05:30:00.000Z', '01:30 EDT');
  const second = next('30 1 * * *', first);
  t.equal(second.toISOString(), '2026-11-02T06:30:00.000Z', 'not again at 01:30 EST');
  // every-minute schedule keeps moving forward through the repeated hour
  let d = new Date('2026-11-01T05:58:00Z');
  const seen: number[] = [];
  for (let i = 0; i < 4; i++) {
    d = next('* * * * *', d);
    seen.push(d.getTime());
  }
  for (let i = 1; i < seen.length; i++) t.ok(seen[i] > seen[i - 1], 'strictly increasing');
});

t.test('nextRun refuses an invalid date', async (t) => {
  t.throws(() => nextRun(parseCron('* * * * *'), new Date(NaN)), { code: 'E_BAD_REQUEST' });
});
