import t from 'tap';
import { formatSize, formatRelative, formatDuration } from '../../../src/core/util/format.js';

t.test('formatSize follows the seed: 1024-based, one decimal', async (t) => {
  t.equal(formatSize(0), '0 B');
  t.equal(formatSize(1023), '1023 B');
  t.equal(formatSize(1024), '1.0 KB');
  t.equal(formatSize(102400), '100.0 KB');
  t.equal(formatSize(1536 * 1024), '1.5 MB');
  t.equal(formatSize(5 * 1024 ** 3), '5.0 GB');
});

t.test('formatRelative and formatDuration', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  t.equal(formatRelative(now - 180_000, now), '3m ago');
  t.equal(formatRelative(now + 2 * 3600_000, now), 'in 2h');
  t.equal(formatRelative('garbage', now), 'never');
  t.equal(formatDuration(500), '500ms');
  t.equal(formatDuration(3723_000), '1h 2m 3s');
});
