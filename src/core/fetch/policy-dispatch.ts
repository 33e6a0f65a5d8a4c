/**
 * Enforcing a UrlPolicy inside undici, on every hop and on the address
 * actually connected to:
 * - `policyInterceptor` sits under the redirect interceptor, so each hop's
 *   dispatch (the first and every redirect) is checked on its URL before
 *   anything is sent: port, host lists, IP literals. A refusal fails the
 *   request through its handler with E_FORBIDDEN.
 * - `policyConnector` is the agent's connect function: it checks IP
 *   literals again and gives net.connect a `lookup` that drops every
 *   resolved address the policy refuses (and fails when none is left), so
 *   the address judged is the one the socket connects to: the lookup is
 *   the connection's own, not a second one DNS could answer differently.
 */
import dns from 'node:dns';
import net from 'node:net';
import type { buildConnector as BuildConnector, Dispatcher } from 'undici';
import { buildConnector } from './undici-parts.js';
import { forbidden, type UrlPolicy } from './url-policy.js';

export type LookupFn = typeof dns.lookup;
type LookupAddress = dns.LookupAddress;

function defaultPort(protocol: string): number {
  return protocol === 'https:' ? 443 : 80;
}

/** Dispatch interceptor checking each hop's target before it is sent. */
export function policyInterceptor(policy: UrlPolicy): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    let origin: URL;
    try {
      origin = new URL(String(opts.origin));
    } catch {
      return dispatch(opts, handler); // undici reports the bad origin itself
    }
    try {
      const port = origin.port ? Number(origin.port) : defaultPort(origin.protocol);
      policy.checkTarget(origin.hostname, port, new URL(String(opts.path ?? '/'), origin).href);
    } catch (e) {
      // As undici does for a request it cannot start: fail it through its handler.
      const h = handler as Dispatcher.DispatchHandler & { onError?: (err: Error) => void };
      queueMicrotask(() => (h.onResponseError ? h.onResponseError(undefined as unknown as Dispatcher.DispatchController, e as Error) : h.onError?.(e as Error)));
      return false;
    }
    return dispatch(opts, handler);
  };
}

/** A lookup that answers only with addresses the policy allows for `hostname`. */
function policyLookup(policy: UrlPolicy, base: LookupFn): LookupFn {
  const wrapped = (hostname: string, options: dns.LookupOptions | number | undefined, callback: (...args: unknown[]) => void): void => {
    const opts: dns.LookupOptions = typeof options === 'number' ? { family: options } : { ...(options ?? {}) };
    const wantAll = opts.all === true;
    base(hostname, { ...opts, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err);
      if (policy.hostAllowed(hostname)) return wantAll ? callback(null, addresses) : callback(null, addresses[0]?.address, addresses[0]?.family);
      const refused: string[] = [];
      const ok = addresses.filter((a) => {
        const why = policy.addressRefusal(a.address);
        if (why) refused.push(`${a.address} ${why}`);
        return !why;
      });
      if (!ok.length) {
        const e = forbidden(`${hostname} resolves only to refused addresses (${refused.join('; ')})`);
        return callback(e);
      }
      if (wantAll) return callback(null, ok);
      callback(null, ok[0]!.address, ok[0]!.family);
    });
  };
  return wrapped as unknown as LookupFn;
}

export interface PolicyConnectorOptions {
  timeoutMs: number;
  policy: UrlPolicy;
  /** Name resolution (default dns.lookup); tests inject names no DNS knows. */
  lookup?: LookupFn;
}

/** The agent's connect function: refuses literals, resolves names through the policy's lookup. */
export function policyConnector(o: PolicyConnectorOptions): BuildConnector.connector {
  const base = buildConnector({ timeout: o.timeoutMs, lookup: policyLookup(o.policy, o.lookup ?? dns.lookup) } as BuildConnector.BuildOptions);
  return (opts, callback) => {
    const host = opts.hostname;
    if (net.isIP(host) && !o.policy.hostAllowed(host)) {
      const why = o.policy.addressRefusal(host);
      if (why) {
        queueMicrotask(() => callback(forbidden(`address ${host} ${why}`), null));
        return;
      }
    }
    return base(opts, callback);
  };
}
