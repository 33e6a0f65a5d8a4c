/** The audio parser thread: killed at its time limit, started afresh for the next file, ended when idle. */
import t from 'tap';
import { extractMetadata } from '../../../src/core/metadata/index.js';
import { audioProbe } from '../../../src/core/metadata/audio.js';
import { SNIFF_TYPES } from '../../../src/core/content/sniff.js';
import { waitFor } from '../../helpers/wait.js';
import { CASES, pathOf } from './fixtures.js';

const mp3 = CASES.find((c) => c.file === 'tone.mp3')!;

t.test('a file over its time limit: the thread is killed, the next file still read', async (t) => {
  // 1 ms is less than a thread start plus a parse: the limit fires first.
  const r1 = await extractMetadata(pathOf(mp3), SNIFF_TYPES.mp3, { timeoutMs: 1 });
  t.match(r1, { error: /time limit/, transient: true });
  t.notOk(audioProbe().alive, 'the thread was terminated');
  const r2 = await extractMetadata(pathOf(mp3), SNIFF_TYPES.mp3, { timeoutMs: 10_000 });
  t.same(r2, { metadata: mp3.want }, 'a new thread answers');
  t.ok(audioProbe().alive);
  // Several at once queue on the one thread; an aborted one leaves the others alone.
  const ac = new AbortController();
  const all = Promise.all([
    extractMetadata(pathOf(mp3), SNIFF_TYPES.mp3),
    extractMetadata(pathOf(mp3), SNIFF_TYPES.mp3, { signal: ac.signal }),
    extractMetadata(pathOf(mp3), SNIFF_TYPES.mp3),
  ]);
  ac.abort(new Error('caller gave up'));
  const [a, b, c] = await all;
  t.same(a, { metadata: mp3.want });
  t.match(b, { error: /caller gave up/, transient: true });
  t.same(c, { metadata: mp3.want });
});

t.test('the thread ends after a few idle seconds', async (t) => {
  await extractMetadata(pathOf(mp3), SNIFF_TYPES.mp3);
  t.ok(audioProbe().alive);
  await waitFor(() => !audioProbe().alive, { timeoutMs: 15_000 });
  t.notOk(audioProbe().alive, 'no isolate kept alive for nothing');
});
