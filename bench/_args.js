// Shared by the benches: `--key value`, `--key=value` and bare `--flag`.
// Unknown flags are ignored: bench/run.js forwards the same args to every bench.
export function parseArgs(argv = process.argv.slice(2)) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const [k, inline] = a.slice(2).split('=', 2);
    if (inline !== undefined) out[k] = inline;
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out[k] = argv[++i];
    else out[k] = true;
  }
  return out;
}

/** A numeric option with a default. */
export function numberArg(args, key, dflt) {
  return args[key] === undefined ? dflt : Number(args[key]);
}
