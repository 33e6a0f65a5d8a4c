/**
 * The security and resource-limit settings' value kinds for config.ts (URL
 * policy, umask, connection limits) and how they combine into the final
 * config. Pure; errors come back as text the caller turns into a ConfigError.
 */
import type { DaemonConfig, PolicyListKey } from './config.js';
import { URL_POLICY_PRESETS, UrlPolicy, type UrlPolicyOptions, type UrlPolicyPreset } from '../core/fetch/url-policy.js';
import { isMediaCacheError } from '../core/errors.js';

export type SecurityKind = 'words' | 'umask' | 'preset';

/** The umask the daemon runs with when none is configured: state is its own (0700 folders, 0600 files). */
export const DEFAULT_UMASK = 0o077;

export function convertSecuritySetting(kind: SecurityKind, raw: unknown): { value: unknown } | { error: string } {
  switch (kind) {
    case 'words': {
      // Repeated flags give an array; env and a plain config string are split on spaces and commas.
      const list = Array.isArray(raw) ? raw : [raw];
      const out: string[] = [];
      for (const v of list) {
        if (typeof v !== 'string' && typeof v !== 'number') return { error: `must be a string or a list of strings, got ${JSON.stringify(v)}` };
        out.push(...String(v).split(/[\s,]+/).filter((w) => w !== ''));
      }
      return { value: Object.freeze(out) };
    }
    case 'umask': {
      const s = typeof raw === 'string' ? raw.trim() : '';
      if (!/^0?[0-7]{3}$/.test(s)) return { error: `must be an octal umask like 077 or 0027 (as a string), got ${JSON.stringify(raw)}` };
      return { value: parseInt(s, 8) };
    }
    case 'preset': {
      const s = typeof raw === 'string' ? raw.trim().toLowerCase() : '';
      if (!(URL_POLICY_PRESETS as readonly string[]).includes(s)) return { error: `must be one of ${URL_POLICY_PRESETS.join(', ')}, got ${JSON.stringify(raw)}` };
      return { value: s };
    }
  }
}

type Resolved = Partial<Record<keyof DaemonConfig | PolicyListKey, unknown>>;

/** The URL policy, umask and connection fields of the final config. Throws Error with a message for the user. */
export function resolveSecuritySettings(out: Resolved): Pick<DaemonConfig, 'urlPolicy' | 'umask'> {
  const list = (k: PolicyListKey): string[] => [...((out[k] as string[] | undefined) ?? [])];
  const urlPolicy: UrlPolicyOptions = {
    preset: (out.urlPolicy as UrlPolicyPreset | undefined) ?? 'open',
    allowHosts: list('allowHosts'),
    denyHosts: list('denyHosts'),
    allowCidrs: list('allowCidrs'),
    denyCidrs: list('denyCidrs'),
    allowPorts: list('allowPorts'),
  };
  try {
    new UrlPolicy(urlPolicy); // validate every entry now, at start, with the flag named below
  } catch (e) {
    const msg = isMediaCacheError(e) ? e.message.replace(/^urlPolicy: /, '') : String(e);
    throw new Error(`URL policy (--url-policy, --allow-host, --deny-host, --allow-cidr, --deny-cidr, --allow-port): ${msg}.`, { cause: e });
  }
  return { urlPolicy: Object.freeze(urlPolicy), umask: (out.umask as number | undefined) ?? DEFAULT_UMASK };
}

/** Apply the configured umask (called first thing at start, before any file is created). Returns the previous one. */
export function applyUmask(mask: number): number {
  return process.umask(mask);
}
