/**
 * Test helpers for the service files in systemd/: a systemd unit-file reader,
 * a small XML property-list parser (for machines without `plutil`), the
 * command-line splitter systemd uses for ExecStart=, and `systemd-analyze`
 * discovery. No dependencies: the formats are simple and the tests must run
 * where only Node is installed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO_ROOT } from './build.js';

export const SYSTEMD_DIR = path.join(REPO_ROOT, 'systemd');

/** section → key → every assignment in order (systemd keys may repeat). */
export type UnitFile = Map<string, Map<string, string[]>>;

/**
 * Parse a unit file the way systemd.syntax(7) describes: `[Section]`,
 * `Key=Value`, `#`/`;` comments, a trailing backslash continues a line.
 */
export function parseUnit(text: string): UnitFile {
  const unit: UnitFile = new Map();
  let section: Map<string, string[]> | undefined;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i].trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) {
      line = line.slice(0, -1) + ' ' + lines[++i].trim();
    }
    const sec = /^\[([^\]]+)\]$/.exec(line);
    if (sec) {
      section = unit.get(sec[1]) ?? new Map();
      unit.set(sec[1], section);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0 || !section) throw new Error(`unit line ${i + 1} is not Key=Value inside a section: ${line}`);
    const key = line.slice(0, eq).trim();
    const list = section.get(key) ?? [];
    list.push(line.slice(eq + 1).trim());
    section.set(key, list);
  }
  return unit;
}

export function readUnit(name: string): { text: string; unit: UnitFile } {
  const text = fs.readFileSync(path.join(SYSTEMD_DIR, name), 'utf8');
  return { text, unit: parseUnit(text) };
}

/** The last assignment of a key (what systemd uses for single-valued keys). */
export function last(unit: UnitFile, section: string, key: string): string | undefined {
  const v = unit.get(section)?.get(key);
  return v?.[v.length - 1];
}

/**
 * Split an ExecStart= value into argv (systemd.service(5) "Command lines"):
 * whitespace-separated words, double/single quotes, leading `-@:+!` prefixes
 * dropped. Specifiers (%h …) and $VAR are not expanded — callers check for
 * them.
 */
export function splitExec(value: string): string[] {
  const v = value.replace(/^[-@:+!]+/, '');
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(v))) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] ?? m[3]));
  return out;
}

/** Replace the ExecStart= line(s) of a unit text, keeping everything else. */
export function withExecStart(text: string, argv: string[]): string {
  const quoted = argv.map((a) => (/[\s"'\\]/.test(a) ? `"${a.replace(/(["\\])/g, '\\$1')}"` : a)).join(' ');
  return text.replace(/^ExecStart=.*$/m, `ExecStart=${quoted}`);
}

let analyze: string | null | undefined;
/** Absolute path of systemd-analyze, or null where it does not exist. */
export function systemdAnalyze(): string | null {
  if (analyze !== undefined) return analyze;
  analyze = null;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).concat(['/usr/bin', '/bin'])) {
    const p = path.join(dir, 'systemd-analyze');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      analyze = p;
      break;
    } catch {
      /* keep looking */
    }
  }
  return analyze;
}

export function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: env ?? process.env, timeout: 60_000 });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/**
 * The syscalls a SystemCallFilter= list allows, expanded through
 * `systemd-analyze syscall-filter` (groups nest: @system-service contains
 * @default …). Allow-list entries add, `~` entries subtract, in order.
 */
export function effectiveSyscalls(filters: string[]): Set<string> {
  const bin = systemdAnalyze();
  if (!bin) throw new Error('systemd-analyze not found');
  const cache = new Map<string, string[]>();
  const expand = (name: string, seen = new Set<string>()): string[] => {
    if (!name.startsWith('@')) return [name];
    if (seen.has(name)) return [];
    seen.add(name);
    let members = cache.get(name);
    if (!members) {
      const r = run(bin, ['syscall-filter', name]);
      if (r.status !== 0) throw new Error(`systemd-analyze syscall-filter ${name}: ${r.out}`);
      members = r.out
        .split('\n')
        .slice(1)
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#'));
      cache.set(name, members);
    }
    return members.flatMap((m) => expand(m, seen));
  };
  const allowed = new Set<string>();
  for (const f of filters) {
    const deny = f.startsWith('~');
    for (const word of (deny ? f.slice(1) : f).split(/\s+/).filter(Boolean)) {
      for (const s of expand(word)) {
        if (deny) allowed.delete(s);
        else allowed.add(s);
      }
    }
  }
  return allowed;
}

// ---------------------------------------------------------------- plist

export type PlistValue = string | number | boolean | PlistValue[] | { [k: string]: PlistValue };

/**
 * Parse a property list with Python's `plistlib` (the reference parser on
 * every Debian machine; launchd's own refuses what it refuses, e.g. `--`
 * inside an XML comment). Dates and data come back as strings.
 */
export function loadPlist(file: string): PlistValue {
  const code = 'import plistlib,json,sys\nwith open(sys.argv[1],"rb") as f: v=plistlib.load(f)\nprint(json.dumps(v, default=str))';
  const r = spawnSync('python3', ['-c', code, file], { encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`plistlib refused ${file}: ${r.stderr.trim().split('\n').pop()}`);
  return JSON.parse(r.stdout) as PlistValue;
}
