// The NDJSON framing shared by the daemon's server and the client.
import t from 'tap';
import { LineSplitter } from '../../../src/core/protocol/ndjson.js';

const collect = (s: LineSplitter, chunks: Buffer[]): string[] => {
  const out: string[] = [];
  for (const c of chunks) t.same(s.push(c, (l) => void out.push(l.toString('utf8'))), { kind: 'ok' });
  return out;
};

t.test('lines split anywhere, even inside a UTF-8 character, come back whole', async (t) => {
  const text = '{"a":"é€😀"}\n{"b":2}\n\n{"c":3}\n';
  const bytes = Buffer.from(text);
  for (let cut = 1; cut < bytes.length; cut++) {
    const got = collect(new LineSplitter(1024), [bytes.subarray(0, cut), bytes.subarray(cut)]);
    t.same(got, ['{"a":"é€😀"}', '{"b":2}', '', '{"c":3}'], `cut at ${cut}`);
  }
  const s = new LineSplitter(1024);
  t.same(collect(s, [Buffer.from('{"x":'), Buffer.from('1')]), []);
  t.equal(s.pendingBytes, 6, 'an unfinished line is held');
  t.same(collect(s, [Buffer.from('}\n')]), ['{"x":1}']);
  t.equal(s.pendingBytes, 0);
});

t.test('a slab reused by later reads does not corrupt a held partial line', async (t) => {
  const s = new LineSplitter(1024);
  const slab = Buffer.from('abc\ndef');
  const out: string[] = [];
  s.push(slab, (l) => void out.push(l.toString()));
  slab.fill(0x78); // the socket reuses its buffer
  s.push(Buffer.from('gh\n'), (l) => void out.push(l.toString()));
  t.same(out, ['abc', 'defgh']);
});

t.test('too long: reported before the end of the line arrives, with or without a newline', async (t) => {
  const s = new LineSplitter(10);
  t.same(s.push(Buffer.from('0123456'), () => undefined), { kind: 'ok' });
  t.same(s.push(Buffer.from('789ab'), () => undefined), { kind: 'too-long' }, 'no newline yet, already over');
  t.equal(s.pendingBytes, 0, 'the partial line is dropped');
  t.same(s.push(Buffer.from('x'.repeat(11) + '\n'), () => undefined), { kind: 'too-long' }, 'a complete line over the limit');
  t.same(collect(s, [Buffer.from('0123456789\n')]), ['0123456789'], 'exactly the limit is fine');
});

t.test('onLine can stop; the rest comes back as a copy to push later', async (t) => {
  const s = new LineSplitter(100);
  const chunk = Buffer.from('one\ntwo\nthr');
  const seen: string[] = [];
  const r = s.push(chunk, (l) => {
    seen.push(l.toString());
    return false;
  });
  t.same(seen, ['one']);
  t.equal(r.kind, 'stopped');
  const rest = r.kind === 'stopped' ? r.rest : undefined;
  t.equal(rest?.toString(), 'two\nthr');
  chunk.fill(0);
  t.equal(rest?.toString(), 'two\nthr', 'a copy, not a view of the chunk');
  t.same(collect(s, [rest!, Buffer.from('ee\n')]), ['two', 'three']);
  const last = s.push(Buffer.from('end\n'), () => false);
  t.same(last, { kind: 'stopped', rest: undefined }, 'nothing after the stopping line');
});
