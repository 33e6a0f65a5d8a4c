import t from 'tap';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Low } from 'lowdb';
import {
  DurableDataFile,
  DurableFileParseError,
  DurableJSONFile,
  isDurableFileParseError,
  writeFileDurable,
} from '../../../src/core/util/durable-file.js';

t.test('read: missing file is null, garbage is a DurableFileParseError', async (t) => {
  const dir = t.testdir({ 'bad.json': '{"a":', 'empty.json': '' });
  t.equal(await new DurableJSONFile(join(dir, 'missing.json')).read(), null);
  for (const name of ['bad.json', 'empty.json']) {
    const err = await new DurableJSONFile(join(dir, name)).read().then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof DurableFileParseError, `${name}: parse error`);
    t.ok(isDurableFileParseError(err));
    t.equal((err as DurableFileParseError).code, 'EJSONPARSE');
    t.equal((err as DurableFileParseError).path, join(dir, name));
  }
  // An I/O error is not a parse error: reading a directory fails with EISDIR.
  mkdirSync(join(dir, 'adir'));
  await t.rejects(new DurableJSONFile(join(dir, 'adir')).read(), { code: 'EISDIR' });
});

t.test('write: compact JSON, atomic replace, no temp files left', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'data.json');
  const adapter = new DurableJSONFile<{ n: number; list: string[] }>(file);
  await adapter.write({ n: 1, list: ['a'] });
  t.equal(readFileSync(file, 'utf8'), '{"n":1,"list":["a"]}');
  const data = { n: 2, list: ['b'] };
  const pending = adapter.write(data);
  data.n = 99; // a change after write() was called is not in this write
  await pending;
  t.same(await adapter.read(), { n: 2, list: ['b'] });
  t.same(readdirSync(dir), ['data.json'], 'temp files renamed away');
});

t.test('concurrent writes each land whole; the file is one of them', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'c.json');
  const adapter = new DurableJSONFile<{ i: number; pad: string }>(file);
  const writes = Array.from({ length: 20 }, (_, i) => adapter.write({ i, pad: 'x'.repeat(10_000 + i) }));
  await Promise.all(writes);
  const got = (await adapter.read())!;
  t.ok(got.i >= 0 && got.i < 20);
  t.equal(got.pad.length, 10_000 + got.i, 'content belongs to one write');
  t.same(readdirSync(dir), ['c.json']);
});

t.test('a failed write leaves the old file and no temp file', async (t) => {
  const dir = t.testdir({ 'keep.json': '{"old":true}' });
  await t.rejects(writeFileDurable(join(dir, 'no-such-dir', 'x.json'), '{}'), { code: 'ENOENT' });
  // Unserializable data fails before anything touches the disk.
  const adapter = new DurableJSONFile<unknown>(join(dir, 'keep.json'));
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  await t.rejects(adapter.write(cyclic), TypeError);
  t.same(await adapter.read(), { old: true });
  t.same(readdirSync(dir), ['keep.json']);
});

t.test('DurableDataFile takes any text format; works under lowdb Low', async (t) => {
  const dir = t.testdir();
  const lines = {
    parse: (text: string): string[] => {
      if (!text.endsWith('\n')) throw new Error('truncated');
      return text.slice(0, -1).split('\n');
    },
    stringify: (data: string[]): string => data.join('\n') + '\n',
  };
  const file = join(dir, 'l.txt');
  const db = new Low<string[]>(new DurableDataFile(file, lines), []);
  await db.read();
  t.same(db.data, [], 'missing file keeps default data');
  db.data.push('one', 'two');
  await db.write();
  t.equal(readFileSync(file, 'utf8'), 'one\ntwo\n');
  const again = new Low<string[]>(new DurableDataFile(file, lines), []);
  await again.read();
  t.same(again.data, ['one', 'two']);
  writeFileSync(file, 'one\ntw');
  await t.rejects(again.read(), DurableFileParseError, 'format errors become parse errors');
});
