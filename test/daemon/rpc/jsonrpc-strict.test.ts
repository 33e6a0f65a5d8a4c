/**
 * JSON-RPC 2.0 conformance at the edges the spec names: an empty batch, ids
 * that are not a string, a safe integer or null, batches mixing valid and
 * invalid members, and a handler fault reported as E_INTERNAL.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { RpcServer, type RpcHandler } from '../../../src/daemon/rpc/server.js';
import { silentLogger } from '../../../src/core/util/logger.js';
import { RPC_ERRORS } from '../../../src/core/protocol/rpc.js';
import { makeRoot, RpcClient, type RpcMessage } from '../../helpers/daemon.js';
import { waitFor } from '../../helpers/wait.js';

const handlers: Record<string, RpcHandler> = {
  echo: async (p) => p,
  boom: async () => {
    throw new TypeError('undefined is not a function');
  },
};

async function setup(t: Test): Promise<RpcClient> {
  const root = makeRoot();
  const srv = new RpcServer({ socketPath: path.join(root, 'd.sock'), handlers, logger: silentLogger });
  await srv.listen();
  const c = await RpcClient.connect(path.join(root, 'd.sock'));
  t.teardown(async () => {
    c.destroy();
    await srv.close();
    fs.rmSync(root, { recursive: true, force: true });
  });
  return c;
}

/** Send one raw line and wait for the next message (in order). */
async function roundTrip(c: RpcClient, line: string): Promise<RpcMessage> {
  const before = c.messages.length;
  await c.sendRaw(line + '\n');
  await waitFor(() => c.messages.length > before, { what: `a reply to ${line}` });
  return c.messages[before]!;
}

t.test('an empty batch is an invalid request', async (t) => {
  const c = await setup(t);
  const m = await roundTrip(c, '[]');
  t.notOk(Array.isArray(m), 'a single error object, not an array');
  t.equal(m.id, null);
  t.equal(m.error?.code, RPC_ERRORS.INVALID_REQUEST);
  t.equal(m.error?.data?.code, 'E_BAD_REQUEST');
});

t.test('ids must be a string, a safe integer or null', async (t) => {
  const c = await setup(t);
  for (const id of ['{"a":1}', '[1]', 'true', '1e400', '1.5', '9007199254740993']) {
    const m = await roundTrip(c, `{"jsonrpc":"2.0","id":${id},"method":"echo","params":[1]}`);
    t.equal(m.error?.code, RPC_ERRORS.INVALID_REQUEST, `id ${id} refused`);
    t.equal(m.id, null, `id ${id} answered with id null`);
    t.equal(m.result, undefined, `id ${id}: the method did not run`);
  }
  for (const [id, want] of [['"s"', 's'], ['-3', -3], ['0', 0], ['9007199254740991', 9007199254740991]] as const) {
    const m = await roundTrip(c, `{"jsonrpc":"2.0","id":${id},"method":"echo","params":[2]}`);
    t.same(m, { jsonrpc: '2.0', id: want, result: [2] }, `id ${id} accepted`);
  }
  const nullId = await roundTrip(c, '{"jsonrpc":"2.0","id":null,"method":"echo","params":[3]}');
  t.same(nullId.result, [3], 'id null is answered (with id null)');
});

t.test('a request that is not JSON-RPC 2.0 echoes its valid id in the error', async (t) => {
  const c = await setup(t);
  const v = await roundTrip(c, '{"jsonrpc":"1.0","id":10,"method":"echo"}');
  t.equal(v.error?.code, RPC_ERRORS.INVALID_REQUEST, 'jsonrpc must be "2.0"');
  t.equal(v.id, 10);
  const r = await roundTrip(c, '{"jsonrpc":"2.0","id":11,"result":1}');
  t.equal(r.error?.code, RPC_ERRORS.INVALID_REQUEST, 'a response is not a request');
  t.equal(r.id, 11);
});

t.test('a batch answers each member; invalid members get their own error', async (t) => {
  const c = await setup(t);
  const m = await roundTrip(c, JSON.stringify([
    { jsonrpc: '2.0', id: 'a', method: 'echo', params: { x: 1 } },
    { jsonrpc: '2.0', id: { bad: true }, method: 'echo' },
    1,
    { jsonrpc: '2.0', method: 'echo', params: [] }, // notification: no answer
  ]));
  t.ok(Array.isArray(m), 'answered with an array');
  const arr = m as unknown as RpcMessage[];
  t.equal(arr.length, 3, 'two errors and one result; the notification is not answered');
  t.same(arr.find((r) => r.id === 'a')?.result, { x: 1 });
  t.equal(arr.filter((r) => r.id === null && r.error?.code === RPC_ERRORS.INVALID_REQUEST).length, 2);
  // A batch of notifications only gets no reply at all; the next request proves the line was consumed.
  const before = c.messages.length;
  await c.sendRaw(JSON.stringify([{ jsonrpc: '2.0', method: 'echo' }]) + '\n');
  t.same(await c.call('echo', 'after'), 'after');
  t.equal(c.messages.length, before + 1, 'nothing sent for an all-notification batch');
});

t.test('a fault in a handler is E_INTERNAL, not E_UNAVAILABLE', async (t) => {
  const c = await setup(t);
  const m = await roundTrip(c, '{"jsonrpc":"2.0","id":1,"method":"boom"}');
  t.equal(m.error?.code, RPC_ERRORS.INTERNAL);
  t.equal(m.error?.data?.code, 'E_INTERNAL');
});
