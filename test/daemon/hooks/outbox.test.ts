import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Outbox, OUTBOX_FILE } from '../../../src/daemon/hooks/outbox.js';
import type { HookEvent } from '../../../src/daemon/hooks/events.js';
import { silentLogger } from '../../../src/core/util/logger.js';

function tmp(t: { teardown(fn: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-outbox-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}
const ev = (id: string): HookEvent => ({ id, type: 'sweep.done', createdAt: '2024-01-01T00:00:00.000Z', data: { report: { id } as never } });
const A = 'http://127.0.0.1:1/a';
const B = 'http://127.0.0.1:1/b';

t.test('adds are durable when resolved, acks remove them, a reopen sees what is pending', async (t) => {
  const dir = tmp(t);
  const ob = await Outbox.open(dir, { logger: silentLogger });
  const r1 = ob.add(ev('e1'), [A, B]);
  t.equal(r1.entries.length, 2, 'one delivery per URL');
  t.equal(ob.add(ev('e1'), [A]).entries.length, 0, 'the same event and URL is kept once');
  const r2 = ob.add(ev('e2'), [A]);
  await Promise.all([r1.durable, r2.durable]);
  // On disk right now, before any close.
  const text = fs.readFileSync(path.join(dir, OUTBOX_FILE), 'utf8');
  t.equal(text.trim().split('\n').length, 3, 'three lines on disk before close');
  ob.ack(`e1 ${A}`);
  await ob.whenDurable();
  await ob.close();
  const again = await Outbox.open(dir, { logger: silentLogger });
  t.same(again.entries().map((e) => e.key).sort(), [`e1 ${B}`, `e2 ${A}`]);
  t.same(again.entries().find((e) => e.key === `e2 ${A}`)?.event, ev('e2'), 'the event comes back whole');
  t.equal(fs.readFileSync(path.join(dir, OUTBOX_FILE), 'utf8').trim().split('\n').length, 2, 'reopen compacted delivered lines away');
  await again.close();
});

t.test('a torn last line (crash mid-append) is cut, whole lines survive', async (t) => {
  const dir = tmp(t);
  const ob = await Outbox.open(dir, { logger: silentLogger });
  await ob.add(ev('e1'), [A]).durable;
  await ob.add(ev('e2'), [A]).durable;
  await ob.close();
  const f = path.join(dir, OUTBOX_FILE);
  const whole = fs.readFileSync(f);
  fs.writeFileSync(f, Buffer.concat([whole, Buffer.from('{"a":{"key":"e3 ' + A + '","target":"' + A + '","ev')]));
  const r = await Outbox.open(dir, { logger: silentLogger });
  t.same(r.entries().map((e) => e.event.id), ['e1', 'e2']);
  t.same(fs.readFileSync(f), whole, 'file rewritten without the torn tail');
  await r.add(ev('e4'), [A]).durable;
  await r.close();
  const r2 = await Outbox.open(dir, { logger: silentLogger });
  t.same(r2.entries().map((e) => e.event.id), ['e1', 'e2', 'e4'], 'new appends land after the cut');
  await r2.close();

  // Garbage in the middle of the last line (zeros from a lost page) likewise.
  fs.writeFileSync(f, Buffer.concat([whole, Buffer.alloc(50, 0), Buffer.from('\n')]));
  const r3 = await Outbox.open(dir, { logger: silentLogger });
  t.same(r3.entries().map((e) => e.event.id), ['e1', 'e2']);
  await r3.close();
});

t.test('compaction: the journal does not grow without bound', async (t) => {
  const dir = tmp(t);
  const ob = await Outbox.open(dir, { logger: silentLogger, compactBytes: 4096 });
  for (let i = 0; i < 300; i++) {
    await ob.add(ev(`e${i}`), [A]).durable;
    if (i !== 7) ob.ack(`e${i} ${A}`);
  }
  await ob.whenDurable();
  const size = fs.statSync(path.join(dir, OUTBOX_FILE)).size;
  t.ok(size < 4096 + 1024, `journal stays small (${size} bytes)`);
  await ob.close();
  const r = await Outbox.open(dir, { logger: silentLogger });
  t.same(r.entries().map((e) => e.event.id), ['e7'], 'only the unacknowledged entry is left');
  await r.close();
});

t.test('a full outbox refuses new entries (logged) instead of growing forever', async (t) => {
  const dir = tmp(t);
  const errors: string[] = [];
  const ob = await Outbox.open(dir, { logger: { ...silentLogger, error: (m: string) => errors.push(m) }, maxPending: 2 });
  ob.add(ev('e1'), [A]);
  ob.add(ev('e2'), [A]);
  t.equal(ob.add(ev('e3'), [A]).entries.length, 0);
  t.equal(ob.size, 2);
  t.same(errors, ['outbox full: delivery not kept']);
  await ob.close();
});
