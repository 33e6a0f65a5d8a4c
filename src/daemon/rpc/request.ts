/**
 * What counts as a JSON-RPC 2.0 request on our socket, decided before the
 * json-rpc-2.0 library sees it (the library accepts object ids, answers an
 * id of 1e400 (Infinity) with null, and takes `[]` for an empty batch of
 * responses, answering nothing).
 *
 * Decisions: an id is a string, an integer within ±(2^53-1), or null;
 * anything else (objects, arrays, booleans, fractions, Infinity, integers
 * past the safe range that JSON.parse would round) is -32600 Invalid Request,
 * answered with id null because the id cannot be echoed faithfully. `params`
 * is left to each method's own validation (-32602). The daemon never sends
 * requests, so a response object arriving from a client is invalid too.
 */
import type { JSONRPCID, JSONRPCRequest } from 'json-rpc-2.0';
import { RPC_ERRORS } from '../../core/protocol/rpc.js';

export interface ErrorReply {
  jsonrpc: '2.0';
  id: JSONRPCID;
  error: { code: number; message: string; data?: unknown };
}

export function errorReply(id: JSONRPCID, code: number, message: string, data: unknown): ErrorReply {
  return { jsonrpc: '2.0', id, error: { code, message, data } };
}

export function isValidId(id: unknown): id is JSONRPCID {
  return id === null || typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id));
}

function invalid(id: JSONRPCID, why: string): ErrorReply {
  return errorReply(id, RPC_ERRORS.INVALID_REQUEST, `Invalid Request: ${why}`, { code: 'E_BAD_REQUEST', message: why });
}

/** A valid request (or notification), or the error reply owed for it. */
export function checkRequest(msg: unknown): { request: JSONRPCRequest } | { reply: ErrorReply } {
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return { reply: invalid(null, 'not a request object') };
  const m = msg as Record<string, unknown>;
  const hasId = Object.prototype.hasOwnProperty.call(m, 'id');
  if (hasId && !isValidId(m.id)) return { reply: invalid(null, 'id must be a string, a safe integer or null') };
  const id = hasId ? (m.id as JSONRPCID) : null;
  if (m.jsonrpc !== '2.0') return { reply: invalid(id, 'jsonrpc must be "2.0"') };
  if (typeof m.method !== 'string') return { reply: invalid(id, 'method must be a string') };
  if ('result' in m || 'error' in m) return { reply: invalid(id, 'a request has no result or error member') };
  return { request: m as unknown as JSONRPCRequest };
}
