/**
 * Usage errors as one line, the way git says them: what is wrong, a "did you
 * mean" when a known command or option is close, and where the help is.
 * yargs' own messages ("Unknown argument: wiat", "Not enough non-option
 * arguments: got 0, need at least 1") are translated here; the full help is
 * never printed for a mistake (`mcctl help CMD` shows it).
 */
import { COMMAND_FLAGS, COMMAND_NAMES, GLOBAL_FLAGS, type CommandName } from './args.js';

/** Commands people can type besides the ones that reach the daemon. */
export const EXTRA_COMMANDS = ['help', 'completion'] as const;

/** What each command's positional argument is, for "X needs …" messages. */
const NEEDS: Partial<Record<CommandName, string>> = {
  find: 'an md5, md5 prefix or URL',
  remove: 'an md5 (at least 8 hex digits, or all 32)',
  cancel: 'a job id or a URL',
  retry: 'a job id, or --failed',
};

/** Optimal string alignment distance (a swap of two neighbours counts as one edit). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The closest candidates when close enough to be a typo (or a unique prefix); several on a tie. */
export function closestAll(word: string, candidates: readonly string[]): string[] {
  const w = word.toLowerCase();
  const prefixed = candidates.filter((c) => w.length >= 2 && c.startsWith(w));
  if (prefixed.length === 1) return prefixed;
  let best: string[] = [];
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = editDistance(w, c);
    if (dist < bestD) {
      bestD = dist;
      best = [c];
    } else if (dist === bestD) best.push(c);
  }
  const allowed = Math.max(1, Math.floor(w.length / 3));
  return bestD <= allowed ? best : [];
}

export function closest(word: string, candidates: readonly string[]): string | undefined {
  return closestAll(word, candidates)[0];
}

/** ' or '-joined, each quoted by `q`. */
function either(words: readonly string[], q: (w: string) => string): string {
  return words.map(q).join(' or ');
}

export function allCommands(): string[] {
  return [...COMMAND_NAMES, ...EXTRA_COMMANDS];
}

/** Long options a command accepts (its own, the globals, --help). */
export function optionsOf(cmd: string | undefined): string[] {
  const own = cmd && (COMMAND_NAMES as readonly string[]).includes(cmd) ? Object.keys(COMMAND_FLAGS[cmd as CommandName]) : [];
  return [...own, ...Object.keys(GLOBAL_FLAGS), '--help', '--version'].filter((o) => o.startsWith('--'));
}

/** The command named in argv (first word that is a known command), if any. */
export function commandIn(argv: readonly string[]): string | undefined {
  return argv.find((a) => (allCommands() as readonly string[]).includes(a));
}

function helpHint(cmd: string | undefined): string {
  return cmd ? `see mcctl help ${cmd}` : 'mcctl help lists the commands';
}

/** "unknown command "stauts"; did you mean "status"? (mcctl help lists the commands)" */
export function unknownCommand(word: string): string {
  const s = closestAll(word, allCommands());
  return `unknown command "${word}"${s.length ? `; did you mean ${either(s, (w) => `"${w}"`)}?` : ''} (${helpHint(undefined)})`;
}

/**
 * One line for a yargs failure message. `argv` is what was parsed (after the
 * URL shorthand), used to tell options from stray words and to name the command.
 */
export function usageLine(msg: string, argv: readonly string[]): string {
  const cmd = commandIn(argv);
  const hint = ` (${helpHint(cmd)})`;
  const first = argv.find((a) => !a.startsWith('-'));

  if (/^Did you mean/.test(msg) || (/^Unknown argument/.test(msg) && !cmd && first !== undefined && !first.startsWith('-'))) {
    return unknownCommand(first ?? '');
  }
  const unknown = /^Unknown arguments?: (.*)$/.exec(msg);
  if (unknown) {
    const names = unknown[1].split(/,\s*/);
    const parts = names.map((n) => {
      const asOption = argv.find((a) => a === `--${n}` || a.startsWith(`--${n}=`) || a === `-${n}` || a === `--no-${n}`);
      if (asOption !== undefined) {
        const flag = asOption.split('=')[0];
        const s = closestAll(flag.replace(/^-+/, ''), optionsOf(cmd).map((o) => o.slice(2)));
        return `unknown option ${flag}${cmd ? ` for ${cmd}` : ''}${s.length ? `; did you mean ${either(s, (w) => `--${w}`)}?` : ''}`;
      }
      return `unexpected argument "${n}"${cmd ? ` for ${cmd}` : ''}`;
    });
    return parts.join('; ') + hint;
  }
  if (/^Not enough non-option arguments/.test(msg) && cmd) {
    return `${cmd} needs ${NEEDS[cmd as CommandName] ?? 'an argument'}${hint}`;
  }
  const notEnough = /^Not enough arguments following: (\S+)/.exec(msg);
  if (notEnough) return `--${notEnough[1]} needs a value${hint}`;
  const invalid = /Argument: (\S+), Given: ("[^"]*"|\S+), Choices: (.*)$/.exec(msg.replace(/\s*\n\s*/g, ' '));
  if (invalid) {
    const choices = invalid[3].split(/,\s*/).map((c) => c.replace(/"/g, ''));
    const s = closest(invalid[2].replace(/"/g, ''), choices);
    return `--${invalid[1]} must be one of ${choices.join(', ')}, got ${invalid[2]}${s ? `; did you mean ${s}?` : ''}${hint}`;
  }
  const tooMany = /^Too many non-option arguments: got (\d+), maximum of (\d+)/.exec(msg);
  if (tooMany && cmd) return `${cmd} takes ${tooMany[2] === '0' ? 'no' : `at most ${tooMany[2]}`} argument${tooMany[2] === '1' ? '' : 's'}${hint}`;
  if (/^Name a command/.test(msg)) return `name a command (${helpHint(undefined)})`;
  return `${msg.replace(/\s*\n\s*/g, ' ').trim()}${hint}`;
}
