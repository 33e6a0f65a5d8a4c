/**
 * Sweep step 5, adopt: files in the type folders that the index does not
 * know. A file named `{md5}.{ext}`, in the folder of its extension, whose
 * bytes hash to that md5 and sniff to that type is indexed (type, size,
 * dimensions, sha256, no URLs). Anything else there — wrong name, wrong
 * hash, wrong type, a stray second copy, tmp junk — moves to quarantine.
 * Runs in every sweep; after an index loss it rebuilds the index.
 */
import fs from 'node:fs';
import path from 'node:path';
import { IMAGE_HEAD_CAP, SNIFF_BYTES, imageDimensions, sniff } from '../content/sniff.js';
import { adoptionProblem, classifyFolderEntry, type FolderEntry } from './plan.js';
import { errno, hashAll, lstatOrUndefined, nowIso, quarantine, type SweepContext } from './steps.js';
import { MEDIA_TYPES, TYPE_DIRS, type StoredRecord } from '../types.js';

interface Candidate {
  path: string;
  entry: FolderEntry & { kind: 'candidate' };
}

/** Step 5: adopt unknown well-formed files; quarantine everything else in the type folders. Returns false when cut short. */
export async function stepAdopt(ctx: SweepContext): Promise<boolean> {
  const { cache } = ctx;
  const index = cache.index;
  const candidates: Candidate[] = [];
  const junk: Array<{ path: string; reason: string; st: fs.Stats }> = [];
  for (const type of MEDIA_TYPES) {
    const dir = path.join(cache.cacheDir, TYPE_DIRS[type]);
    let names: fs.Dirent[];
    try {
      names = await fs.promises.readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (errno(e) === 'ENOENT') continue;
      throw e;
    }
    for (const d of names) {
      const p = path.join(dir, d.name);
      if (d.isDirectory()) {
        ctx.logger.warn('sweep: unexpected folder in a type folder; left alone', { path: p });
        continue;
      }
      const named = /^[0-9a-f]{32}(?=\.)/.exec(d.name)?.[0];
      const known = named === undefined ? undefined : await index.get(named);
      const c = classifyFolderEntry(type, d.name, (md5) => (known?.md5 === md5 ? known : undefined));
      if (c.kind === 'indexed') continue;
      const st = await lstatOrUndefined(p);
      if (!st) continue;
      if (c.kind === 'junk') junk.push({ path: p, reason: c.reason, st });
      else if (!st.isFile()) junk.push({ path: p, reason: 'not a regular file', st });
      else candidates.push({ path: p, entry: c });
    }
  }
  let done = 0;
  const total = candidates.length + junk.length;
  for (const j of junk) {
    ctx.signal.throwIfAborted();
    await quarantine(ctx, { path: j.path, reason: j.reason, ino: j.st.ino, mtimeMs: j.st.mtimeMs, size: j.st.size }).catch((e: unknown) =>
      ctx.logger.error('sweep: cannot quarantine', { path: j.path, error: String(e) }),
    );
    ctx.progress('adopt', ++done, total);
  }
  return hashAll(
    ctx,
    candidates,
    (c) => ({ ...c, headBytes: c.entry.expected.mediaType === 'image' ? IMAGE_HEAD_CAP : SNIFF_BYTES }),
    (c) => ctx.pool.hash(c.path, { headBytes: c.headBytes }),
    async (c, h) => {
      ctx.progress('adopt', ++done, total);
      if (!h) return;
      const sniffed = h.head ? sniff(h.head.subarray(0, SNIFF_BYTES)) : undefined;
      const problem = adoptionProblem(c.entry, h, sniffed);
      // A download may have indexed this md5 while we hashed: nothing to do.
      if (await index.get(c.entry.md5)) return;
      if (problem || !sniffed) {
        await quarantine(ctx, { path: c.path, reason: problem ?? 'not media', ino: h.ino, mtimeMs: h.mtimeMs, size: h.size }).catch((e: unknown) =>
          ctx.logger.error('sweep: cannot quarantine', { path: c.path, error: String(e) }),
        );
        return;
      }
      const rec: StoredRecord = {
        md5: h.md5,
        sha256: h.sha256,
        fileSize: h.size,
        mimeType: sniffed.mimeType,
        mediaType: sniffed.mediaType,
        extension: sniffed.extension,
        urls: [],
        fetchedAt: new Date(h.mtimeMs).toISOString(),
        verifiedAt: nowIso(ctx),
      };
      const dims = sniffed.mediaType === 'image' && h.head ? imageDimensions(h.head) : undefined;
      if (dims) {
        rec.width = dims.width;
        rec.height = dims.height;
      }
      // upsert, not put: a download of this content committing meanwhile keeps its URLs.
      await index.upsert(rec);
      ctx.report.adopted.push(rec.md5);
      ctx.tally.adopt.count++;
      ctx.tally.adopt.bytes += rec.fileSize;
      ctx.logger.info('sweep: adopted', { md5: rec.md5, path: c.path });
    },
    !ctx.adoptAll,
  );
}
