/**
 * The parts of undici the cache uses, loaded from their own modules rather
 * than from the package index: the index also loads fetch, WebSocket,
 * EventSource, the HTTP cache stores and the mock agents, none used here, which
 * cost every daemon about 9 MiB of resident memory. These are the very modules
 * the index re-exports (same files, so the same classes: a dispatcher a library
 * user builds from `undici` is interchangeable), typed by undici's own
 * declarations; the lockfile pins the version and
 * test/core/fetch/undici-parts.test.ts checks each one against the index.
 */
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const require = createRequire(import.meta.url);

// As the index does first: the request/stream/connect methods are mixed into
// Dispatcher.prototype (the proxy agents call connect(), the webhook request()).
const Dispatcher = require('undici/lib/dispatcher/dispatcher.js') as { prototype: object };
Object.assign(Dispatcher.prototype, require('undici/lib/api/index.js') as object);

export const Agent = require('undici/lib/dispatcher/agent.js') as typeof Undici.Agent;
export const EnvHttpProxyAgent = require('undici/lib/dispatcher/env-http-proxy-agent.js') as typeof Undici.EnvHttpProxyAgent;
export const buildConnector = require('undici/lib/core/connect.js') as typeof Undici.buildConnector;
export const redirectInterceptor = require('undici/lib/interceptor/redirect.js') as typeof Undici.interceptors.redirect;
