import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import {
  storePath,
  ensureCacheLayout,
  commitTmp,
  renameWithRetry,
  removeQuietly,
  tmpDirOf,
  CACHEDIR_TAG,
} from '../../../src/core/content/store.js';
import { MediaCacheError } from '../../../src/core/errors.js';

const MD5 = '9e107d9d372bb6826bd81d3542a419d6';

t.test('storePath: {type}/{md5}{ext}, nothing else', async (t) => {
  t.equal(storePath('/c', { md5: MD5, mediaType: 'image', extension: '.jpg' }), path.join('/c', 'images', `${MD5}.jpg`));
  t.equal(storePath('/c', { md5: MD5, mediaType: 'video', extension: '.webm' }), path.join('/c', 'videos', `${MD5}.webm`));
  t.equal(storePath('/c', { md5: MD5, mediaType: 'audio', extension: '.opus' }), path.join('/c', 'audio', `${MD5}.opus`));
  t.equal(storePath('/c', { md5: MD5, mediaType: 'document', extension: '.pdf' }), path.join('/c', 'documents', `${MD5}.pdf`));
  for (const bad of [
    { md5: '../../etc/passwd', mediaType: 'image', extension: '.jpg' },
    { md5: MD5.toUpperCase(), mediaType: 'image', extension: '.jpg' },
    { md5: MD5, mediaType: 'image', extension: '/../x' },
    { md5: MD5, mediaType: 'image', extension: 'jpg' },
    { md5: MD5, mediaType: 'nope', extension: '.jpg' },
  ] as const) {
    t.throws(() => storePath('/c', bad as Parameters<typeof storePath>[1]), { code: 'E_BAD_REQUEST' }, JSON.stringify(bad));
  }
});

t.test('ensureCacheLayout creates folders and a valid CACHEDIR.TAG, idempotently', async (t) => {
  const dir = path.join(t.testdir({}), 'cache');
  const tmp = await ensureCacheLayout(dir);
  t.equal(tmp, tmpDirOf(dir));
  for (const d of ['images', 'videos', 'audio', 'documents', '.tmp']) t.ok(fs.statSync(path.join(dir, d)).isDirectory(), d);
  const tag = fs.readFileSync(path.join(dir, 'CACHEDIR.TAG'), 'utf8');
  t.ok(tag.startsWith('Signature: 8a477f597d28d172789f06886806bc55'), 'standard signature first');
  t.equal(tag, CACHEDIR_TAG);
  // A user-edited tag is left alone; a second call is harmless.
  fs.writeFileSync(path.join(dir, 'CACHEDIR.TAG'), `${CACHEDIR_TAG}# mine\n`);
  await ensureCacheLayout(dir);
  t.match(fs.readFileSync(path.join(dir, 'CACHEDIR.TAG'), 'utf8'), /# mine/);
});

t.test('ensureCacheLayout on a path that is a file is a MediaCacheError', async (t) => {
  const root = t.testdir({ 'a-file': 'x' });
  await t.rejects(ensureCacheLayout(path.join(root, 'a-file')), MediaCacheError);
});

t.test('commitTmp moves a complete file into place, creating folders', async (t) => {
  const root = t.testdir({ '.tmp': { 'abc.part': 'content' } });
  const tmp = path.join(root, '.tmp', 'abc.part');
  const final = storePath(root, { md5: MD5, mediaType: 'image', extension: '.png' });
  await commitTmp(tmp, final);
  t.equal(fs.readFileSync(final, 'utf8'), 'content');
  t.notOk(fs.existsSync(tmp), 'tmp gone');
});

t.test('commitTmp over an existing identical file succeeds (dedup)', async (t) => {
  const root = t.testdir({ '.tmp': { 'a.part': 'same' }, images: { [`${MD5}.png`]: 'same' } });
  const final = path.join(root, 'images', `${MD5}.png`);
  await commitTmp(path.join(root, '.tmp', 'a.part'), final);
  t.equal(fs.readFileSync(final, 'utf8'), 'same');
  t.same(fs.readdirSync(path.join(root, '.tmp')), []);
});

t.test('commitTmp: a rename that keeps failing with an existing same-size target still succeeds', async (t) => {
  const root = t.testdir({ '.tmp': { 'a.part': 'same' }, images: { [`${MD5}.png`]: 'same' } });
  const final = path.join(root, 'images', `${MD5}.png`);
  const locked = async (): Promise<void> => {
    throw Object.assign(new Error('EPERM: operation not permitted, rename'), { code: 'EPERM' });
  };
  await commitTmp(path.join(root, '.tmp', 'a.part'), final, { platform: 'win32', rename: locked, attempts: 2, delayMs: 1 });
  t.same(fs.readdirSync(path.join(root, '.tmp')), [], 'tmp copy dropped');
  t.equal(fs.readFileSync(final, 'utf8'), 'same');
});

t.test('commitTmp of a missing tmp file fails with a MediaCacheError', async (t) => {
  const root = t.testdir({});
  await t.rejects(commitTmp(path.join(root, 'nope.part'), path.join(root, 'images', `${MD5}.png`)), MediaCacheError);
});

t.test('renameWithRetry retries EPERM/EBUSY/EACCES on Windows only', async (t) => {
  const root = t.testdir({ src: 'x' });
  const from = path.join(root, 'src');
  const to = path.join(root, 'dst');
  let calls = 0;
  const flaky = async (a: string, b: string): Promise<void> => {
    calls++;
    if (calls <= 2) throw Object.assign(new Error('busy'), { code: calls === 1 ? 'EBUSY' : 'EACCES' });
    await fs.promises.rename(a, b);
  };
  await renameWithRetry(from, to, { platform: 'win32', rename: flaky, delayMs: 1 });
  t.equal(calls, 3);
  t.equal(fs.readFileSync(to, 'utf8'), 'x');

  calls = 0;
  const alwaysBusy = async (): Promise<void> => {
    calls++;
    throw Object.assign(new Error('EPERM'), { code: 'EPERM' });
  };
  await t.rejects(renameWithRetry(to, from, { platform: 'win32', rename: alwaysBusy, attempts: 4, delayMs: 1 }), { code: 'EPERM' });
  t.equal(calls, 4, 'gave up after the configured attempts');

  calls = 0;
  await t.rejects(renameWithRetry(to, from, { platform: 'linux', rename: alwaysBusy, delayMs: 1 }), { code: 'EPERM' });
  t.equal(calls, 1, 'no retry off Windows: EPERM is real there');

  calls = 0;
  const enoent = async (): Promise<void> => {
    calls++;
    throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
  };
  await t.rejects(renameWithRetry(to, from, { platform: 'win32', rename: enoent, delayMs: 1 }), { code: 'ENOENT' });
  t.equal(calls, 1, 'other errors are not retried');
});

t.test('removeQuietly removes files and folders and ignores what is not there', async (t) => {
  const root = t.testdir({ f: 'x', d: { g: 'y' } });
  await removeQuietly(path.join(root, 'f'));
  await removeQuietly(path.join(root, 'd'));
  await removeQuietly(path.join(root, 'missing'));
  t.same(fs.readdirSync(root), []);
});

t.test('removeDeadTmp removes partial downloads of dead processes only', async (t) => {
  const { removeDeadTmp, tmpFileName } = await import('../../../src/core/content/store.js');
  const { spawnSync } = await import('node:child_process');
  const dir = t.testdir({});
  // A pid that certainly existed and has exited.
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  const deadName = tmpFileName(dead);
  const ownName = tmpFileName();
  const liveName = tmpFileName(1); // pid 1 is always alive
  const foreign = 'legacy-name.part';
  for (const n of [deadName, ownName, liveName, foreign]) fs.writeFileSync(path.join(dir, n), 'x');
  t.match(ownName, new RegExp(`^${process.pid}-[0-9a-f-]{36}\\.part$`), 'name carries the owner pid');
  t.equal(await removeDeadTmp(dir), 1, 'one removed');
  t.same(fs.readdirSync(dir).sort(), [ownName, liveName, foreign].sort(), 'only the dead process’s file is gone');
  t.equal(await removeDeadTmp(path.join(dir, 'missing')), 0, 'a missing .tmp/ is fine');
});
