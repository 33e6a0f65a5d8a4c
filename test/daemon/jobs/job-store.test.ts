import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { JobStore, SHARD_SIZE, jobIdOf, type JobRecord, type BatchRecord } from '../../../src/daemon/jobs/job-store.js';

function job(store: JobStore, over: Partial<JobRecord> = {}): JobRecord {
  const seq = store.nextSeq();
  const now = new Date().toISOString();
  return { id: jobIdOf(seq), seq, url: `http://h.example/${seq}`, state: 'queued', priority: 10, attempts: 0, createdAt: now, updatedAt: now, source: 'rpc', ...over };
}

t.test('jobs survive a reopen; counts follow state changes', async (t) => {
  const dir = path.join(t.testdir(), 'jobs');
  const s = await JobStore.open(dir, { flushDelayMs: 10_000 });
  const a = job(s);
  const b = job(s);
  s.put(a);
  s.put(b);
  b.state = 'running';
  s.put(b, 'queued');
  t.same(s.counts(), { queued: 1, running: 1, done: 0, failed: 0 });
  await s.flush();
  const s2 = await JobStore.open(dir);
  t.equal(s2.size, 2);
  t.same(s2.get(a.id), a);
  t.equal(s2.get(b.id)?.state, 'running');
  t.same(s2.counts(), { queued: 1, running: 1, done: 0, failed: 0 });
  // Sequence numbers keep growing across reopen.
  t.ok(s2.nextSeq() > b.seq);
  await s.close();
  await s2.close();
});

t.test('a burst of puts is written once, only to dirty shards', async (t) => {
  const dir = path.join(t.testdir(), 'jobs');
  const s = await JobStore.open(dir, { flushDelayMs: 50 });
  const N = Math.floor(2.5 * SHARD_SIZE);
  for (let i = 0; i < N; i++) s.put(job(s));
  await s.flush();
  const files = fs.readdirSync(dir).filter((n) => n.startsWith('jobs-')).sort();
  t.same(files, ['jobs-0.json', 'jobs-1.json', 'jobs-2.json'], 'sharded by sequence');
  const mtimes = Object.fromEntries(files.map((f) => [f, fs.statSync(path.join(dir, f)).mtimeMs]));
  // Touch one job in shard 2 only.
  const last = [...s.values()].at(-1)!;
  last.state = 'done';
  s.put(last, 'queued');
  await new Promise((r) => setTimeout(r, 5)); // mtime resolution
  await s.flush();
  t.equal(fs.statSync(path.join(dir, 'jobs-0.json')).mtimeMs, mtimes['jobs-0.json'], 'clean shard not rewritten');
  t.equal(fs.statSync(path.join(dir, 'jobs-1.json')).mtimeMs, mtimes['jobs-1.json'], 'clean shard not rewritten');
  const s2 = await JobStore.open(dir);
  t.equal(s2.size, N);
  t.equal(s2.get(last.id)?.state, 'done');
  t.equal(Math.floor(last.seq / SHARD_SIZE), 2);
  await s.close();
});

t.test('coalesced background write happens without flush()', async (t) => {
  const dir = path.join(t.testdir(), 'jobs');
  const s = await JobStore.open(dir, { flushDelayMs: 20 });
  s.put(job(s));
  const { waitFor } = await import('../../helpers/wait.js');
  await waitFor(() => fs.existsSync(path.join(dir, 'jobs-0.json')), { what: 'shard write' });
  await s.close();
});

t.test('a corrupt shard is moved aside, the rest loads', async (t) => {
  const dir = path.join(t.testdir(), 'jobs');
  const s = await JobStore.open(dir);
  for (let i = 0; i < SHARD_SIZE + 5; i++) s.put(job(s));
  await s.close();
  fs.writeFileSync(path.join(dir, 'jobs-0.json'), '{"jobs":[{"id":"j1",');
  const s2 = await JobStore.open(dir);
  t.equal(s2.size, 6, 'shard 1 intact');
  t.ok(fs.readdirSync(dir).some((n) => n.startsWith('jobs-0.json.corrupt-')), 'moved aside');
  t.ok(s2.nextSeq() > SHARD_SIZE + 5, 'no id reuse');
  await s2.close();
});

t.test('prune keeps pending-report jobs and a bounded history', async (t) => {
  const dir = path.join(t.testdir(), 'jobs');
  const s = await JobStore.open(dir, { maxEnded: 3 });
  const ended: JobRecord[] = [];
  for (let i = 0; i < 8; i++) {
    const j = job(s, { state: 'done', md5: 'a'.repeat(32) });
    s.put(j);
    ended.push(j);
  }
  const q = job(s);
  s.put(q);
  const batch: BatchRecord = {
    id: 'b1', key: 'k', inbox: '/in', sourcePath: '/in/a.urls', processedPath: '/in/processed/a.urls', state: 'moved',
    createdAt: new Date().toISOString(), lines: [[1, ended[0].url, ended[0].id, null], [2, 'junk', null, 'E_INVALID_URL']],
  };
  await s.saveBatch(batch);
  const dropped = s.prune();
  t.equal(dropped, 5, 'oldest unprotected ended jobs dropped until 3 ended remain');
  t.ok(s.get(ended[0].id), 'job of a pending report kept');
  t.notOk(s.get(ended[1].id));
  t.ok(s.get(ended[6].id) && s.get(ended[7].id), 'newest kept');
  t.notOk(s.get(ended[5].id));
  t.ok(s.get(q.id), 'queued never pruned');
  t.same(s.counts(), { queued: 1, running: 0, done: 3, failed: 0 });
  await s.flush();
  const s2 = await JobStore.open(dir);
  t.equal(s2.size, 4);
  t.same(s2.batch('b1'), batch, 'batch survives reopen');
  t.equal(s2.batchByKey('k')?.id, 'b1');
  await s2.deleteBatch('b1');
  const s3 = await JobStore.open(dir);
  t.equal(s3.batches().length, 0);
  await s.close();
});

t.test('age limit prunes old ended jobs', async (t) => {
  const dir = path.join(t.testdir(), 'jobs');
  let now = Date.parse('2026-01-01T00:00:00Z');
  const s = await JobStore.open(dir, { now: () => now, maxEndedAgeMs: 1000 });
  const old = job(s, { state: 'failed', updatedAt: new Date(now).toISOString() });
  s.put(old);
  now += 5000;
  const fresh = job(s, { state: 'failed', updatedAt: new Date(now).toISOString() });
  s.put(fresh);
  t.equal(s.prune(), 1);
  t.notOk(s.get(old.id));
  t.ok(s.get(fresh.id));
  await s.close();
});

t.test('prune with explicit bounds: keep the newest N by end time, or drop older than a cutoff', async (t) => {
  const dir = path.join(t.testdir(), 'jobs');
  let now = Date.parse('2026-01-01T00:00:00Z');
  const s = await JobStore.open(dir, { now: () => now });
  const at = (ms: number) => new Date(Date.parse('2026-01-01T00:00:00Z') + ms).toISOString();
  // Created in one order, ended in another: "newest" is by end time.
  const a = job(s, { state: 'done', updatedAt: at(3000) });
  const b = job(s, { state: 'failed', updatedAt: at(1000) });
  const c = job(s, { state: 'done', updatedAt: at(2000) });
  const q = job(s);
  for (const j of [a, b, c, q]) s.put(j);
  now += 10_000;
  t.equal(s.prune({ keep: 2 }), 1);
  t.notOk(s.get(b.id), 'the one that ended first goes');
  t.ok(s.get(a.id) && s.get(c.id) && s.get(q.id));
  t.equal(s.prune({ olderThanMs: 7500 }), 1, 'ended 8 s ago: dropped');
  t.notOk(s.get(c.id));
  t.ok(s.get(a.id), 'ended 7 s ago: kept');
  t.equal(s.prune({ keep: 0 }), 1);
  t.same(s.counts(), { queued: 1, running: 0, done: 0, failed: 0 }, 'queued jobs are never pruned');
  await s.close();
  t.equal((await JobStore.open(dir)).size, 1, 'durable');
});

t.test('clean-shutdown mark: a store not closed is seen as recovered from a crash', async (t) => {
  const dir = path.join(t.testdir(), 'jobs');
  const s = await JobStore.open(dir);
  t.equal(s.recoveredFromCrash, false, 'a new store');
  s.put(job(s));
  await s.flush();
  const afterCrash = await JobStore.open(dir);
  t.equal(afterCrash.recoveredFromCrash, true, 'opened without the last run closing it');
  await afterCrash.close();
  const afterStop = await JobStore.open(dir);
  t.equal(afterStop.recoveredFromCrash, false, 'after close()');
  await afterStop.close();
  await s.close();
});

t.test('jobs stored with notBefore load with nextRetryAt', async (t) => {
  const dir = path.join(t.testdir(), 'jobs');
  fs.mkdirSync(dir, { recursive: true });
  const j = { id: 'j1', seq: 1, url: 'http://h.example/1', state: 'queued', priority: 0, attempts: 1, createdAt: 'x', updatedAt: 'x', source: 'rpc', notBefore: '2026-01-01T00:00:05.000Z' };
  fs.writeFileSync(path.join(dir, 'jobs-0.json'), JSON.stringify({ jobs: [j] }));
  const s = await JobStore.open(dir);
  t.equal(s.get('j1')?.nextRetryAt, '2026-01-01T00:00:05.000Z');
  t.equal(s.get('j1')?.notBefore, undefined);
  await s.close();
});

t.test('one garbled byte or a cut-off tail loses only the jobs it touched; the shard is rewritten, the loss counted', async (t) => {
  const dir = path.join(t.testdir(), 'jobs');
  const s = await JobStore.open(dir);
  const jobs: JobRecord[] = [];
  for (let i = 0; i < 2 * SHARD_SIZE; i++) {
    const j = job(s);
    s.put(j);
    jobs.push(j);
  }
  await s.close();
  const f0 = path.join(dir, 'jobs-0.json');
  const f1 = path.join(dir, 'jobs-1.json');
  // A quote of job 100's URL replaced: the whole document no longer parses.
  const text0 = fs.readFileSync(f0, 'utf8');
  const at = text0.indexOf(`"url":"${jobs[100].url}"`) + 6;
  fs.writeFileSync(f0, text0.slice(0, at) + '\u0000' + text0.slice(at + 1));
  // Shard 1 cut in the middle of its job 400.
  const text1 = fs.readFileSync(f1, 'utf8');
  fs.writeFileSync(f1, text1.slice(0, text1.indexOf(`"id":"${jobs[400].id}"`) + 30));

  const s2 = await JobStore.open(dir, { now: () => 1_000 });
  const cut = jobs.filter((j) => Math.floor(j.seq / SHARD_SIZE) === 1 && j.seq >= jobs[400].seq);
  t.equal(s2.size, jobs.length - 1 - cut.length, 'every readable job kept');
  t.notOk(s2.get(jobs[100].id));
  t.same(s2.get(jobs[101].id), jobs[101], 'the job after the damaged one is intact');
  t.same(s2.get(jobs[399].id), jobs[399], 'and every job before the cut');
  t.same(s2.damage, { files: [`${f0}.corrupt-1000`, `${f1}.corrupt-1000`], lostJobs: 2, restoredJobs: 0 });
  for (const f of s2.damage.files) t.ok(fs.existsSync(f), 'copy kept for inspection');
  await s2.close();
  const s3 = await JobStore.open(dir);
  t.same(s3.damage, { files: [], lostJobs: 0, restoredJobs: 0 }, 'rewritten: reported once');
  t.equal(s3.size, s2.size);
  await s3.close();
});

t.test('jobs of an inbox batch whose shard was deleted are re-queued from the batch', async (t) => {
  const dir = path.join(t.testdir(), 'jobs');
  const s = await JobStore.open(dir);
  const queued = Array.from({ length: 3 }, () => job(s, { source: '/in/a.urls:1' }));
  for (const j of queued) s.put(j);
  await s.saveBatch({
    id: 'b1', key: 'k', inbox: '/in', sourcePath: '/in/a.urls', processedPath: '/in/processed/a.urls', state: 'moved', createdAt: '2026-01-01T00:00:00.000Z',
    lines: queued.map((j, k): [number, string, string, null] => [k + 1, ` ${j.url} `, j.id, null]),
  });
  await s.close();
  fs.rmSync(path.join(dir, 'jobs-0.json'));
  const s2 = await JobStore.open(dir);
  t.equal(s2.damage.restoredJobs, 3);
  t.same(s2.counts(), { queued: 3, running: 0, done: 0, failed: 0 });
  for (const [k, j] of queued.entries()) t.match(s2.get(j.id), { url: j.url, state: 'queued', seq: j.seq, source: `/in/a.urls:${k + 1}` });
  await s2.close();
  const s3 = await JobStore.open(dir);
  t.equal(s3.damage.restoredJobs, 0, 'written back at open');
  t.equal(s3.size, 3);
  await s3.close();
});
