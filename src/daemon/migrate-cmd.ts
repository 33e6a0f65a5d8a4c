/**
 * `mediacached migrate --to postgres://… | --from postgres://…`: move a
 * cache's records between its embedded index and PostgreSQL (see
 * core/postgres/migrate-index.ts). The content files stay where they are.
 * Takes the cache's lock, so it refuses to run beside a daemon or a library
 * user of the same cache. Exit codes: 0 copied and checked, 1 failed, 2 usage.
 */
import path from 'node:path';
import { acquireCacheLock } from '../core/cache/writer-lock.js';
import { isMediaCacheError } from '../core/errors.js';
import { copyIndexToPostgres, copyPostgresToIndex } from '../core/postgres/migrate-index.js';
import { describeTarget } from '../core/postgres/pg-db.js';
import { defaultCacheDir, type PlatformEnv } from '../core/util/paths.js';

export const MIGRATE_USAGE = `usage: mediacached migrate (--to postgres://… | --from postgres://…) [--cache-dir DIR] [--index DIR]

  --to URL      copy the embedded index into this PostgreSQL database (which must hold no records)
  --from URL    copy the records of this database into the embedded index (which must be empty)
  --cache-dir   the cache root (default as for the daemon; env MEDIACACHE_DIR)
  --index       the embedded index (default <cache-dir>/index)
Counts and every record's md5 and sha256 are compared after the copy. No file is downloaded or moved.`;

interface Out {
  write(s: string): unknown;
}

export async function runMigrate(argv: string[], env: NodeJS.ProcessEnv, pe: PlatformEnv, out: Out, err: Out): Promise<number> {
  const opts: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--(to|from|cache-dir|index)(?:=(.*))?$/.exec(a);
    if (a === '--help' || a === '-h') {
      out.write(MIGRATE_USAGE + '\n');
      return 0;
    }
    const v = m ? (m[2] ?? argv[++i]) : undefined;
    if (!m || v === undefined || v === '') {
      err.write(`mediacached migrate: ${m ? `${a} needs a value` : `unknown argument "${a}"`}\n${MIGRATE_USAGE}\n`);
      return 2;
    }
    opts[m[1]] = v;
  }
  if ((opts.to === undefined) === (opts.from === undefined)) {
    err.write(`mediacached migrate: give exactly one of --to or --from\n${MIGRATE_USAGE}\n`);
    return 2;
  }
  const url = opts.to ?? opts.from!;
  if (!/^postgres(ql)?:\/\/./i.test(url)) {
    err.write('mediacached migrate: the database must be a postgres:// or postgresql:// URL\n');
    return 2;
  }
  const cacheDir = path.resolve(opts['cache-dir'] ?? env.MEDIACACHE_DIR ?? env.MEDIACACHE_CACHE_DIR ?? defaultCacheDir(pe));
  const indexDir = path.resolve(opts.index ?? env.MEDIACACHE_INDEX ?? path.join(cacheDir, 'index'));
  const target = describeTarget(url);
  let lock;
  try {
    lock = acquireCacheLock(cacheDir);
  } catch (e) {
    err.write(`mediacached migrate: ${e instanceof Error ? e.message : String(e)} (stop the daemon first)\n`);
    return 1;
  }
  try {
    const r = opts.to !== undefined ? await copyIndexToPostgres(indexDir, url) : await copyPostgresToIndex(url, indexDir);
    const dir = opts.to !== undefined ? `${indexDir} -> ${target}` : `${target} -> ${indexDir}`;
    out.write(`migrated ${r.records} records and ${r.urls} URLs (${dir}) in ${(r.ms / 1000).toFixed(1)} s; counts and digests match\n`);
    if (opts.to !== undefined) out.write(`start the daemons with --database and --cache-dir ${cacheDir}; the embedded index is left as it was\n`);
    return 0;
  } catch (e) {
    err.write(`mediacached migrate: ${isMediaCacheError(e) ? `${e.code} ${e.message}` : e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    lock.release();
  }
}
