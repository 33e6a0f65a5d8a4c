/**
 * Hiding credentials in URLs before they reach a log line, an inbox report
 * or an error message. The job store and the index keep the real URL (it is
 * what gets fetched and re-fetched); only what people read is redacted.
 *
 * Redacted: the userinfo (`user:pass@` → `***@`, the user name too: tokens
 * are often passed as one), and the values of query and fragment parameters
 * whose name says they are secret: token, key, secret, password/passwd/pwd,
 * sig/signature, credential, auth/authorization, session/sessionid, apikey,
 * also as the last part of a longer name (access_token, X-Amz-Signature,
 * X-Amz-Credential, X-Goog-Signature, api-key, client_secret). Everything else
 * is left exactly as written (no re-serialisation), so a redacted URL still
 * lines up with the input it came from.
 */

const SECRET_PARAM = /^(?:.*[-_.])?(?:token|key|apikey|secret|password|passwd|pwd|sig|signature|credential|auth|authorization|session|sessionid)$/i;

export const REDACTED = '***';

function redactParams(part: string): string {
  return part.replace(/([^&=;]+)=([^&;]*)/g, (whole, name: string, value: string) => {
    let decoded = name;
    try {
      decoded = decodeURIComponent(name);
    } catch {
      /* keep as written */
    }
    return value !== '' && SECRET_PARAM.test(decoded) ? `${name}=${REDACTED}` : whole;
  });
}

/** `url` with credentials hidden; text that is not a URL is returned unchanged. */
export function redactUrl(url: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/is.exec(url);
  if (!m) return url;
  const scheme = m[1]!;
  let authority = m[2]!;
  const rest = m[3]!;
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = `${REDACTED}@${authority.slice(at + 1)}`;
  const hash = rest.indexOf('#');
  let pathQuery = hash >= 0 ? rest.slice(0, hash) : rest;
  let fragment = hash >= 0 ? rest.slice(hash) : '';
  const q = pathQuery.indexOf('?');
  if (q >= 0) pathQuery = pathQuery.slice(0, q + 1) + redactParams(pathQuery.slice(q + 1));
  if (fragment.includes('=')) fragment = '#' + redactParams(fragment.slice(1));
  return scheme + authority + pathQuery + fragment;
}

/** Every URL inside free text (a log message, an error) redacted. */
export function redactText(text: string): string {
  if (!text.includes('://')) return text;
  return text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi, redactUrl);
}

/** A deep copy of `value` with every string passed through redactText (for log metadata). */
export function redactDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactText(value);
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, depth + 1));
  if (value instanceof Error) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactDeep(v, depth + 1);
  return out;
}
