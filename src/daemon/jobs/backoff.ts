/**
 * Exponential backoff with jitter for jobs the scheduler keeps queued after a
 * failure (disk full, origin unavailable). Pure apart from the random source.
 */

/**
 * Delay before try number `n` (0-based): base * 2^n capped at `max`, then
 * scaled by a random factor in [0.75, 1] so that many jobs failing together
 * do not all come back in the same instant.
 */
export function backoffMs(n: number, base: number, max: number, random: () => number = Math.random): number {
  const exp = Math.min(max, base * 2 ** Math.min(Math.max(0, n), 30));
  return Math.round(exp * (0.75 + 0.25 * random()));
}
