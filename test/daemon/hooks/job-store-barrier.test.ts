/**
 * The ordering at-least-once rests on: the job store writes a job's end only
 * after the hooks' outbox holds the deliveries that end set off.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JobStore, jobIdOf, type JobRecord } from '../../../src/daemon/jobs/job-store.js';

t.test('beforeWrite is awaited before the shard snapshot is taken', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-barrier-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  let release: () => void = () => undefined;
  let calls = 0;
  const store = await JobStore.open(dir, {
    flushDelayMs: 10_000,
    beforeWrite: () => {
      calls++;
      return new Promise<void>((r) => (release = r));
    },
  });
  const seq = store.nextSeq();
  const now = new Date().toISOString();
  const j: JobRecord = { id: jobIdOf(seq), seq, url: 'http://h.example/1', state: 'queued', priority: 0, attempts: 0, createdAt: now, updatedAt: now, source: 'rpc' };
  store.put(j);
  const flushed = store.flush();
  await new Promise((r) => setTimeout(r, 50));
  t.equal(calls, 1, 'the write waits on the barrier');
  t.same(fs.readdirSync(dir).filter((n) => n.startsWith('jobs-')), [], 'no shard written while it waits');
  // A change made while waiting is in the snapshot taken after it.
  j.state = 'done';
  store.put(j, 'queued');
  release();
  await flushed;
  const shard = fs.readdirSync(dir).find((n) => n.startsWith('jobs-'))!;
  t.equal((JSON.parse(fs.readFileSync(path.join(dir, shard), 'utf8')) as { jobs: JobRecord[] }).jobs[0].state, 'done');
  const closing = store.close();
  release();
  await closing;
});
