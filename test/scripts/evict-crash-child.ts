/**
 * Child for the "kill -9 during eviction" test: a MediaCache with a small
 * quota downloading distinct files forever, so evictions run all the time.
 * Reports on stderr `marked <md5,…>` each time an eviction's marks are
 * durable (its files not yet unlinked) and `done <i>` per download.
 * Arguments: cache dir, origin base URL, number of routes, max size, and
 * "hang" to block forever at the first marked eviction (the parent then
 * kills it exactly between the marks and the unlinks).
 */
import { MediaCache } from '../../src/core/cache/media-cache.js';

const [dir, base, routes, maxSize, mode] = process.argv.slice(2);
const hang = mode === 'hang';
const cache = await MediaCache.open({
  cacheDir: dir!,
  maxSize: Number(maxSize),
  flushDelayMs: 5,
  onEvictionMarked: async (md5s) => {
    process.stderr.write(`marked ${md5s.join(',')}\n`);
    if (hang) await new Promise(() => undefined);
  },
});
process.stderr.write('opened\n');
for (let i = Math.floor(Math.random() * 1000); ; i++) {
  await cache.download(`${base}/f/${i % Number(routes)}`);
  process.stderr.write(`done ${i}\n`);
}
