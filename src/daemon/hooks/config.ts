/**
 * The hook settings' value kinds for config.ts: commands (argv.ts), webhook
 * URLs, the secret, and the secret file. Pure; errors come back as text the
 * caller turns into a ConfigError.
 */
import type { DaemonConfig } from '../config.js';
import { parseCommand } from './argv.js';

export type HookKind = 'argv' | 'urls' | 'secret';

export function convertHookSetting(kind: HookKind, raw: unknown): { value: unknown } | { error: string } {
  try {
    switch (kind) {
      case 'argv':
        return { value: Object.freeze(parseCommand(raw)) };
      case 'urls': {
        const list = Array.isArray(raw) ? raw : [raw];
        return { value: Object.freeze(list.map(checkWebhookUrl)) };
      }
      case 'secret': {
        if (typeof raw !== 'string' || raw.trim() === '') throw new Error('must be a non-empty string');
        return { value: raw.trim() };
      }
    }
  } catch (e) {
    return { error: (e as Error).message };
  }
}

function checkWebhookUrl(v: unknown): string {
  if (typeof v !== 'string') throw new Error(`must be a URL or a list of URLs, got ${JSON.stringify(v)}`);
  let u: URL;
  try {
    u = new URL(v.trim());
  } catch {
    throw new Error(`must be an http:// or https:// URL, got ${JSON.stringify(v)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`must be an http:// or https:// URL, got ${JSON.stringify(v)}`);
  return u.href;
}

type Resolved = Partial<Record<keyof DaemonConfig, unknown>>;

/**
 * The hook fields of the final config from the converted settings: the
 * secret read from its file (relative paths already resolved), one of the
 * two secret sources at most. Throws Error with a message for the user.
 */
export function resolveHookSettings(out: Resolved, readFile: (file: string) => string | undefined): Partial<DaemonConfig> {
  const r: Partial<DaemonConfig> = {};
  if (out.onDone) r.onDone = out.onDone as string[];
  if (out.onFailed) r.onFailed = out.onFailed as string[];
  if (out.webhooks) r.webhooks = out.webhooks as string[];
  const file = out.webhookSecretFile as string | undefined;
  if (file) {
    if (out.webhookSecret) throw new HookConfigError('give the webhook secret once: --webhook-secret or --webhook-secret-file, not both.');
    let text: string | undefined;
    try {
      text = readFile(file);
    } catch (e) {
      throw new HookConfigError(`cannot read the webhook secret file ${file}: ${(e as Error).message}.`);
    }
    if (text === undefined) throw new HookConfigError(`webhook secret file ${file} does not exist.`);
    const secret = text.replace(/^\uFEFF/, '').trim();
    if (secret === '') throw new HookConfigError(`webhook secret file ${file} is empty.`);
    r.webhookSecretFile = file;
    r.webhookSecret = secret;
  } else if (out.webhookSecret) r.webhookSecret = out.webhookSecret as string;
  return r;
}

/** config.ts rethrows it as its ConfigError (exit 2). */
export class HookConfigError extends Error {}
