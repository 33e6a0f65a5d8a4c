import t from 'tap';
import { enableYoungGc, noteReceived, YOUNG_GC_EVERY } from '../../../src/core/util/young-gc.js';

t.test('off until enabled; then one minor collection per YOUNG_GC_EVERY bytes received', async (t) => {
  noteReceived(10 * YOUNG_GC_EVERY); // not enabled: nothing to call, nothing counted
  let calls = 0;
  t.equal(enableYoungGc(() => calls++), true);
  for (let i = 0; i < 3 * (YOUNG_GC_EVERY / 65536) - 1; i++) noteReceived(65536);
  t.equal(calls, 2, 'two full steps seen');
  noteReceived(65536);
  t.equal(calls, 3);
});

t.test("V8's own minor collection can be enabled at run time", async (t) => {
  t.equal(enableYoungGc(), true);
  noteReceived(YOUNG_GC_EVERY); // runs a real scavenge; must not throw
});
