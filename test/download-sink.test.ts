import t from 'tap';
import { once } from 'node:events';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pump } from '../src/core/download-sink.js';

const sinkStream = (): Writable => new Writable({ write: (_c, _e, cb) => cb() });

// A body can fail while fetchToTmp is still opening the tmp file; by the time
// pump() attaches its listeners the 'error' and 'close' events are gone. This
// used to hang the download forever (seen as a rare test timeout).
t.test('pump rejects a body that errored before it was called', async (t) => {
  const src = new Readable({ read() {} });
  src.on('error', () => undefined);
  const closed = new Promise((r) => src.once('close', r));
  src.destroy(new Error('socket hang up'));
  await closed;
  await t.rejects(pump(src, sinkStream()), /socket hang up/);
});

t.test('pump rejects a body closed early before it was called', async (t) => {
  const src = new Readable({ read() {} });
  src.destroy();
  await once(src, 'close');
  await t.rejects(pump(src, sinkStream()), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
});

t.test('an abort (deadline) ends a pump whose body never speaks again', async (t) => {
  const src = new PassThrough();
  const ac = new AbortController();
  const p = pump(src, sinkStream(), ac.signal);
  ac.abort(new Error('deadline'));
  await t.rejects(p, /deadline/);
  t.ok(src.destroyed, 'body destroyed');
});

t.test('a normal body resolves, and an already-aborted signal rejects at once', async (t) => {
  const chunks: Buffer[] = [];
  const dst = new Writable({ write: (c: Buffer, _e, cb) => void (chunks.push(c), cb()) });
  await pump(Readable.from([Buffer.from('ab'), Buffer.from('c')]), dst);
  t.equal(Buffer.concat(chunks).toString(), 'abc');
  const ac = new AbortController();
  ac.abort(new Error('gone'));
  await t.rejects(pump(new PassThrough(), sinkStream(), ac.signal), /gone/);
});
