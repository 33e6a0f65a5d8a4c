import t from 'tap';
import { formatSize, formatRelative, formatDuration, formatRate, formatEta } from '../../../src/core/util/format.js';

t.test('formatSize: 1024-based like the seed, one decimal, IEC labels (KiB, MiB) for the binary multiples', async (t) => {
  t.equal(formatSize(0), '0 B');
  t.equal(formatSize(1023), '1023 B');
  t.equal(formatSize(1024), '1.0 KiB');
  t.equal(formatSize(102400), '100.0 KiB');
  t.equal(formatSize(1536 * 1024), '1.5 MiB');
  t.equal(formatSize(5 * 1024 ** 3), '5.0 GiB');
  t.equal(formatSize(1024 * 1024 - 1), '1.0 MiB', 'rounds up into the next unit, never "1024.0 KiB"');
  t.equal(formatSize(-2048), '-2.0 KiB');
  t.notMatch(formatSize(5e12), /\b[KMGT]B\b/, 'no SI label anywhere');
});

t.test('formatRate and formatEta', async (t) => {
  t.equal(formatRate(1.5 * 1024 * 1024), '1.5 MiB/s');
  t.equal(formatRate(0), '0 B/s');
  t.equal(formatRate(NaN), '-');
  t.equal(formatEta(7000), '0:07');
  t.equal(formatEta(6100), '0:07', 'rounds up: never says 0:00 while work is left');
  t.equal(formatEta(750_000), '12:30');
  t.equal(formatEta(3723_000), '1:02:03');
  t.equal(formatEta(undefined), '--:--');
  t.equal(formatEta(Infinity), '--:--');
});

t.test('formatRelative and formatDuration', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  t.equal(formatRelative(now - 180_000, now), '3m ago');
  t.equal(formatRelative(now + 2 * 3600_000, now), 'in 2h');
  t.equal(formatRelative('garbage', now), 'never');
  t.equal(formatDuration(500), '500ms');
  t.equal(formatDuration(3723_000), '1h 2m 3s');
});
