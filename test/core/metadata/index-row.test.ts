/** The index keeps the metadata fields (a `meta` column) and still reads indexes written before it. */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { IndexDb, SCHEMA_VERSION } from '../../../src/core/entry-index/index-db.js';
import { COLUMNS, LEGACY_COLUMNS, parseRow, recordProblem, toRow, fromRow } from '../../../src/core/entry-index/record-codec.js';
import type { StoredRecord } from '../../../src/core/types.js';

const base: StoredRecord = {
  md5: 'ab'.padEnd(32, '0'),
  sha256: 'c'.repeat(64),
  fileSize: 10,
  mimeType: 'video/mp4',
  mediaType: 'video',
  extension: '.mp4',
  width: 64,
  height: 96,
  urls: ['http://127.0.0.1/a.mp4'],
  fetchedAt: '2026-01-01T00:00:00.000Z',
  verifiedAt: '2026-01-01T00:00:00.000Z',
};
const withMeta: StoredRecord = { ...base, durationSec: 2.5, videoCodec: 'h264', frameRate: 29.97, bitrate: 1000, metadataVersion: 1 };

t.test('row codec round-trips the metadata fields and rejects bad ones', async (t) => {
  t.same(fromRow(toRow(withMeta)), withMeta);
  t.same(parseRow(toRow(withMeta)), withMeta);
  t.same(parseRow(toRow(base)), base, 'no meta column when there is no metadata');
  t.equal(JSON.parse(toRow(base)).length, 11, 'trailing empty columns dropped');
  const row = JSON.parse(toRow(withMeta)) as unknown[];
  t.equal(row.length, COLUMNS.indexOf('meta') + 1, 'the meta column, nothing after it');
  t.equal(parseRow(JSON.stringify([...row.slice(0, COLUMNS.indexOf('meta')), { durationSec: -1 }])), undefined, 'out of range');
  t.equal(parseRow(JSON.stringify([...row.slice(0, COLUMNS.indexOf('meta')), { evil: 1 }])), undefined, 'unknown field');
  t.equal(parseRow(JSON.stringify([...row.slice(0, COLUMNS.indexOf('meta')), { metadataVersion: 0 }])), undefined, 'bad version');
  t.match(recordProblem({ ...base, pageCount: 1.5 }), /metadata/);
  t.equal(recordProblem(withMeta), undefined);
});

t.test('an index written before the meta column opens with its records', async (t) => {
  const legacyColumns = LEGACY_COLUMNS;
  const old: StoredRecord = { ...base, md5: 'ab'.padEnd(32, '1') };
  const journaled: StoredRecord = { ...base, md5: 'cd'.padEnd(32, '2'), urls: ['http://127.0.0.1/b.mp4'] };
  const rowOf = (r: StoredRecord): string => JSON.stringify(JSON.parse(toRow(r)).slice(0, 13));
  const jHeader = JSON.stringify({ v: 1, journal: true, columns: legacyColumns });
  const body = `${jHeader}\n${rowOf(journaled)}\n`;
  const dir = t.testdir({
    'meta.json': JSON.stringify({ schemaVersion: 2, shardDigits: 2, createdAt: '2026-01-01T00:00:00.000Z' }),
    records: { 'ab.jsonl': `${JSON.stringify({ v: 1, columns: legacyColumns })}\n${rowOf(old)}\n` },
    'journal.jsonl': `${body}{"commit":1,"crc":${crc32(Buffer.from(body))}}\n`,
  });
  let db = await IndexDb.open(dir);
  t.same(db.recovered, [], 'nothing taken for damage');
  t.same(db.get(old.md5), old, 'shard row read');
  t.same(db.get(journaled.md5), journaled, 'journal row read');
  db.put({ ...old, durationSec: 3, metadataVersion: 1 });
  await db.close();
  t.equal(JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8')).schemaVersion, SCHEMA_VERSION, 'marked with the new version');
  db = await IndexDb.open(dir);
  t.match(db.get(old.md5), { durationSec: 3, metadataVersion: 1 }, 'metadata written and read back');
  t.same(db.get(journaled.md5), journaled);
  await db.close();
});
