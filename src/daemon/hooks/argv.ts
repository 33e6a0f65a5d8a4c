/**
 * Hook commands are argv lists, never shell text: nothing is expanded,
 * globbed or substituted, so a URL or file name cannot inject a command.
 *
 * Accepted forms: a JSON array of strings (config file, or a flag/env value
 * starting with "["), or a string split into words like a POSIX shell would
 * split them, without any expansion: blanks separate words; '...' keeps
 * everything literally; "..." keeps everything but \" and \\; a backslash
 * outside quotes keeps the next character. No variables, globs, pipes.
 */

/** Split `s` into words (see module comment); throws Error with a message for the user. */
export function splitCommand(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) throw new Error('unterminated single quote');
      cur += s.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= s.length) throw new Error('unterminated double quote');
        const d = s[i]!;
        if (d === '"') break;
        if (d === '\\' && (s[i + 1] === '"' || s[i + 1] === '\\')) {
          cur += s[i + 1];
          i += 2;
        } else {
          cur += d;
          i++;
        }
      }
      inWord = true;
      i++;
    } else if (c === '\\') {
      if (i + 1 >= s.length) throw new Error('trailing backslash');
      cur += s[i + 1];
      inWord = true;
      i += 2;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
      i++;
    } else {
      cur += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

/**
 * A hook command from a flag, env value or config value: a JSON array of
 * non-empty strings, or a string (JSON array text, or words as above).
 * Throws Error with a message saying what is wrong.
 */
export function parseCommand(raw: unknown): string[] {
  let v = raw;
  if (typeof v === 'string' && v.trim().startsWith('[')) {
    try {
      v = JSON.parse(v) as unknown;
    } catch (e) {
      throw new Error(`looks like a JSON array but does not parse: ${(e as Error).message}`, { cause: e });
    }
  }
  let argv: string[];
  if (Array.isArray(v)) {
    if (!v.every((x) => typeof x === 'string')) throw new Error('must be a list of strings');
    argv = v as string[];
  } else if (typeof v === 'string') {
    argv = splitCommand(v);
  } else {
    throw new Error(`must be a command line or a JSON list of strings, got ${JSON.stringify(v)}`);
  }
  if (argv.length === 0 || argv[0] === '') throw new Error('names no program');
  if (argv.some((a) => a.includes('\0'))) throw new Error('contains a NUL character');
  return argv;
}
