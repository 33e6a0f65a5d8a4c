import t from 'tap';
import { createHash } from 'node:crypto';
import { MediaCacheError } from '../../../src/core/errors.js';
import { PgDatabase } from '../../../src/core/postgres/pg-db.js';
import { PgQueue, type PgJob } from '../../../src/core/postgres/pg-queue.js';
import { PgRecords } from '../../../src/core/postgres/pg-records.js';
import type { StoredRecord } from '../../../src/core/types.js';
import { pgServer } from '../../helpers/postgres.js';
import { waitFor } from '../../helpers/wait.js';

const pg = await pgServer(t);

const md5Of = (s: string): string => createHash('md5').update(s).digest('hex');
const rec = (url: string): StoredRecord => ({
  md5: md5Of(url),
  sha256: createHash('sha256').update(url).digest('hex'),
  fileSize: url.length,
  mimeType: 'image/png',
  mediaType: 'image',
  extension: '.png',
  urls: [url],
  fetchedAt: new Date().toISOString(),
  verifiedAt: new Date().toISOString(),
});

const N = 60;
const LEASE = { perHostLimit: 4, leaseMs: 3000 };

t.test('the server stopped and restarted under load: E_UNAVAILABLE meanwhile, then every job ends once', async (t) => {
  const url = await pg.freshDatabase();
  const daemons = await Promise.all(
    ['A', 'B'].map(async (node) => {
      const db = await PgDatabase.open({ database: url, poolSize: 3, connectTimeoutMs: 1000 });
      t.teardown(() => db.close());
      return { node, db, queue: new PgQueue(db), records: new PgRecords(db) };
    }),
  );
  const urls = Array.from({ length: N }, (_, i) => `http://o${i % 5}.test/${i}.png`);
  await daemons[0].queue.enqueue(urls.map((u) => ({ url: u })));

  const done: string[] = [];
  const errors: unknown[] = [];
  let hold = true; // workers pause after a third of the jobs until the outage has been seen
  const worker = async ({ node, queue, records }: (typeof daemons)[number]): Promise<void> => {
    let job: PgJob | undefined;
    let stored = false;
    for (;;) {
      try {
        if (!job) {
          [job] = await queue.claim(node, 1, LEASE);
          stored = false;
          if (!job) {
            const c = await queue.counts();
            if (c.queued === 0 && c.running === 0) return;
            await new Promise((r) => setTimeout(r, 20));
            continue;
          }
        }
        if (!stored) {
          await records.upsert(rec(job.url));
          stored = true;
        }
        const ended = await queue.complete(node, job.id, md5Of(job.url));
        if (!ended) {
          // Our COMMIT may have landed with its answer lost in the outage: then it is done, by us.
          const now = await queue.get(job.id);
          if (!(now?.state === 'done' && now.doneBy === node)) {
            job = undefined; // taken over after our lease ran out; the other daemon ends it
            continue;
          }
        }
        done.push(job.id);
        job = undefined;
        while (hold && done.length >= N / 3) await new Promise((r) => setTimeout(r, 10));
      } catch (e) {
        errors.push(e);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  const running = daemons.map(worker);
  await waitFor(() => done.length >= N / 3, { timeoutMs: 30_000, what: 'a third of the jobs' });

  await pg.stop('fast');
  hold = false;
  const t0 = Date.now();
  const err = await daemons[0].records.get(md5Of(urls[0])).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof MediaCacheError, 'a lookup during the outage fails');
  t.match(err, { code: 'E_UNAVAILABLE', retryable: true, message: /database unavailable/ });
  t.ok(Date.now() - t0 < 5000, 'and fails fast');
  await waitFor(() => errors.length >= 4, { what: 'workers meeting the outage' });
  await pg.start();
  await Promise.all(running);

  t.ok(errors.length >= 4);
  const wrong = errors.filter((e) => !(e instanceof MediaCacheError && e.code === 'E_UNAVAILABLE' && e.retryable));
  t.same(wrong.map(String), [], 'every error during the outage is a retryable E_UNAVAILABLE');
  const q = daemons[1].queue;
  t.same(await q.counts(), { queued: 0, running: 0, done: N, failed: 0 });
  t.equal(new Set(done).size, done.length, 'no job ended twice');
  t.equal(new Set(done).size, N, 'no job lost');
  t.equal((await daemons[1].records.stats()).totalFiles, N);
  for (const u of urls) if ((await daemons[1].records.md5ForUrl(u)) !== md5Of(u)) t.fail(`record for ${u}`);
});

t.test('a crash of the server (immediate stop) keeps what was committed', async (t) => {
  const url = await pg.freshDatabase();
  const db = await PgDatabase.open({ database: url, poolSize: 2, connectTimeoutMs: 1000 });
  t.teardown(() => db.close());
  const records = new PgRecords(db);
  const queue = new PgQueue(db);
  await records.put(rec('http://c.test/1'));
  await queue.enqueue([{ url: 'http://c.test/2' }]);
  await pg.stop('immediate');
  await t.rejects(records.stats(), { code: 'E_UNAVAILABLE' });
  await pg.start();
  const stats = await waitFor(() => records.stats(), { what: "reconnect" });
  t.equal(stats.totalFiles, 1);
  t.same(await queue.counts(), { queued: 1, running: 0, done: 0, failed: 0 });
  t.equal((await records.getByUrl('http://c.test/1'))?.md5, md5Of('http://c.test/1'));
});
