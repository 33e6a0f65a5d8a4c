/**
 * Start-up repair after a crash: a job durable as `done` whose URL the index
 * does not map to the job's md5 lost its record (the job store reached the
 * disk before the index did). Such jobs are run again.
 *
 * Only the newest job per URL is looked at (older ones may name content the
 * URL no longer serves), and only jobs that ended within REPAIR_WINDOW_MS of
 * the newest job: a crash loses at most the last moments, while an older
 * record missing was most likely removed on purpose (`mcctl remove`), and
 * must not come back.
 */
import type { JobRecord } from './job-store.js';

export const REPAIR_WINDOW_MS = 10 * 60_000;

export function findStaleDone(
  jobs: Iterable<JobRecord>,
  index: { md5ForUrl(url: string): string | undefined },
  windowMs = REPAIR_WINDOW_MS,
): JobRecord[] {
  let newest = -Infinity;
  const lastPerUrl = new Map<string, JobRecord>();
  for (const j of jobs) {
    const t = Date.parse(j.updatedAt);
    if (t > newest) newest = t;
    const prev = lastPerUrl.get(j.url);
    if (!prev || prev.seq < j.seq) lastPerUrl.set(j.url, j);
  }
  const out: JobRecord[] = [];
  for (const j of lastPerUrl.values()) {
    if (j.state !== 'done' || !j.md5) continue;
    if (Date.parse(j.updatedAt) < newest - windowMs) continue;
    if (index.md5ForUrl(j.url) !== j.md5) out.push(j);
  }
  return out;
}
