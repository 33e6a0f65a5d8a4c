/**
 * Two spawned daemons on one PostgreSQL database and one content root
 * (--database, shared --cache-dir): records and files are shared, each
 * daemon is a member of the cluster under a stable id, status shows both.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fixture, startOrigin } from '../helpers/origin.js';
import { startDaemon, makeRoot } from '../helpers/daemon.js';
import { pgServer } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const pg = await pgServer(t);

t.test('two daemons share records and files; status shows the cluster; a restarted daemon rejoins as itself', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const body = fixture('sample.jpg');
  origin.route('/a.jpg', { body });
  origin.route('/a-again.jpg', { body });
  const url = await pg.freshDatabase();
  const shared = makeRoot();
  t.teardown(() => fs.rmSync(shared, { recursive: true, force: true }));
  const cacheDir = path.join(shared, 'content');
  const args = ['--database', url];
  const a = await startDaemon(t, { cacheDir, args });
  const rootB = makeRoot();
  t.teardown(() => fs.rmSync(rootB, { recursive: true, force: true }));
  let b = await startDaemon(t, { root: rootB, cacheDir, args });

  const [done] = (await a.rpc('add', { urls: [origin.url('/a.jpg')], wait: true })).items;
  t.equal(done.state, 'done');
  const md5 = done.record!.md5;
  t.equal((await b.rpc('find', { url: origin.url('/a.jpg') })).md5, md5, 'b finds what a stored');
  const [hit] = (await b.rpc('add', { urls: [origin.url('/a.jpg')], wait: true })).items;
  t.equal(hit.cached, true, 'answered from the shared index');
  const [dup] = (await b.rpc('add', { urls: [origin.url('/a-again.jpg')], wait: true })).items;
  t.equal(dup.record?.md5, md5, 'same content under another URL');
  t.equal(origin.hits('/a.jpg'), 1, 'fetched once for the cluster');
  t.same(fs.readdirSync(path.join(cacheDir, 'images')), [`${md5}.jpg`], 'one file for the content');
  t.same((await a.rpc('find', { md5 })).urls.sort(), [origin.url('/a.jpg'), origin.url('/a-again.jpg')].sort(), 'both URLs on the record');
  t.equal((await a.rpc('stats', {})).totalFiles, 1);
  t.notOk(fs.existsSync(path.join(cacheDir, '.lock')), 'no one-writer lock on the shared root');
  t.equal(fs.readdirSync(path.join(cacheDir, '.nodes')).length, 2, 'one state dir per daemon');

  const st = await a.rpc('status', {});
  t.ok(st.cluster, 'status has the cluster');
  t.equal(st.cluster!.nodes.filter((n) => n.alive).length, 2, 'both daemons alive');
  t.notMatch(JSON.stringify(st), /postgres(ql)?:\/\//, 'no connection string in status');
  const idB = (await b.rpc('status', {})).cluster!.nodeId;
  t.not(idB, st.cluster!.nodeId);
  t.notMatch(a.stderr() + b.stderr(), /postgres(ql)?:\/\//, 'no connection string in the log');

  b.kill('SIGKILL');
  await b.exited;
  b = await startDaemon(t, { root: rootB, cacheDir, args });
  const again = (await b.rpc('status', {})).cluster!;
  t.equal(again.nodeId, idB, 'rejoined under the same node id');
  await waitFor(async () => (await a.rpc('status', {})).cluster!.nodes.filter((n) => n.alive).length === 2, { what: 'two alive again' });
  t.equal((await b.rpc('find', { md5 })).md5, md5);
});
