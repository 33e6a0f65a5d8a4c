/**
 * Sweep step `metadata`: read the media metadata of records that lack it
 * (indexed before the reader existed, adopted by a sweep, or read by an
 * older reader version, or whose last try hit a time limit). Files judged
 * missing or corrupt in this sweep are left out. Stops taking files at the
 * sweep's deadline like the hashing steps (the next sweep resumes).
 */
import { pastDeadline } from '../verify/plan.js';
import type { SweepContext } from '../verify/steps.js';
import { storePath } from '../content/store.js';
import { METADATA_VERSION } from './index.js';
import { readRecordMetadata, withMetadata } from './record.js';

/** Files read at once: the reads are small, but each audio file waits on the one parser thread. */
const LANES = 2;

/** Returns false when the deadline cut it short. */
export async function stepMetadata(ctx: SweepContext): Promise<boolean> {
  const { cache } = ctx;
  const todo: string[] = [];
  for await (const r of cache.index.records()) {
    if ((r.metadataVersion ?? 0) < METADATA_VERSION && !ctx.needRepair.has(r.md5)) todo.push(r.md5);
  }
  const bad = new Set(ctx.report.corrupt);
  let next = 0;
  let done = 0;
  let cut = false;
  const lane = async (): Promise<void> => {
    while (next < todo.length) {
      if (pastDeadline(ctx.startMs, ctx.maxDurationMs, Date.now())) {
        cut = true;
        return;
      }
      ctx.signal.throwIfAborted();
      const md5 = todo[next++];
      const rec = await cache.index.get(md5);
      if (rec && !bad.has(md5)) {
        const out = await readRecordMetadata(storePath(cache.cacheDir, rec), rec, ctx.logger, {
          timeoutMs: cache.options.timeoutMs,
          signal: ctx.signal,
        });
        // Only into the record that was read: it may have been removed or replaced meanwhile.
        const cur = await cache.index.get(md5);
        if (out && cur && cur.sha256 === rec.sha256 && (cur.metadataVersion ?? 0) < METADATA_VERSION) {
          await cache.index.put(withMetadata(cur, out));
          ctx.tally.metadata.count++;
          ctx.tally.metadata.bytes += cur.fileSize;
          ctx.report.metadataFilled = (ctx.report.metadataFilled ?? 0) + 1;
        }
      }
      ctx.progress('metadata', ++done, todo.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(LANES, todo.length) }, lane));
  return !cut;
}
