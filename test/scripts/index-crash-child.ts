/**
 * Child for the index crash test: writes records in batches forever, flushing
 * after each, and reports on stderr `durable <n>` once records 0..n are
 * durable. The test SIGKILLs it at an arbitrary moment.
 * Arguments: index dir, batch size (40), journal compaction threshold in
 * bytes (optional: IndexDb's default).
 *
 * Deterministic content so the test can check every record it finds:
 *   record k: md5 = md5("rec-k"), sha256 = sha256("rec-k"), fileSize = k,
 *             urls = [http://127.0.0.1/r/k] (+ "…/latest" while it is newest)
 *   record k with k % 7 === 0 is removed when record k + 100 is put.
 * Every batch also moves the shared URL …/latest to its newest record, so
 * one flush rewrites several shards that must agree with each other.
 */
import { createHash } from 'node:crypto';
import { IndexDb } from '../../src/core/entry-index/index-db.js';

const dir = process.argv[2];
const batch = Number(process.argv[3] ?? 40);
// A small journal threshold makes compactions (journal rotation, shard
// rewrites in the background, journal deletion) run all the time, so a
// SIGKILL lands in them as well as in journal appends.
const compactBytes = process.argv[4] === undefined ? undefined : Number(process.argv[4]);
const hex = (alg: string, s: string): string => createHash(alg).update(s).digest('hex');
const LATEST = 'http://127.0.0.1/latest';

const db = await IndexDb.open(dir, { flushDelayMs: 1, ...(compactBytes === undefined ? {} : { compactBytes }) });
// Continue after the highest record already present (a previous child was killed).
let n = 0;
for (const r of db.records()) n = Math.max(n, r.fileSize + 1);
process.stderr.write(`opened ${db.size} next ${n}\n`);
for (;;) {
  for (let b = 0; b < batch; b++, n++) {
    db.put({
      md5: hex('md5', `rec-${n}`),
      sha256: hex('sha256', `rec-${n}`),
      fileSize: n,
      mimeType: 'image/png',
      mediaType: 'image',
      extension: '.png',
      urls: [`http://127.0.0.1/r/${n}`],
      fetchedAt: new Date(Date.UTC(2026, 0, 1) + n * 1000).toISOString(),
      verifiedAt: new Date().toISOString(),
    });
    if (b === batch - 1) db.addUrl(hex('md5', `rec-${n}`), LATEST);
    const old = n - 100;
    if (old >= 0 && old % 7 === 0) db.remove(hex('md5', `rec-${old}`));
  }
  await db.flush();
  process.stderr.write(`durable ${n - 1}\n`);
}
