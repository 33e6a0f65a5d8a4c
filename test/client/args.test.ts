import t from 'tap';
import { expandUrlShorthand, fastParse, type Invocation } from '../../src/client/args.js';
import { parseWithYargs } from '../../src/client/cli-yargs.js';

async function viaYargs(argv: string[]): Promise<Invocation> {
  const r = await parseWithYargs(expandUrlShorthand(argv));
  if (r.kind !== 'run') throw new Error(`yargs refused ${argv.join(' ')}: ${r.stderr}`);
  return r.invocation;
}

const ACCEPTED: Array<[string[], Invocation]> = [
  [['stats'], { globals: { json: false }, command: { name: 'stats' } }],
  [['stats', '--json'], { globals: { json: true }, command: { name: 'stats' } }],
  [['--json', 'stats'], { globals: { json: true }, command: { name: 'stats' } }],
  [['stats', '--socket', '/x/s.sock'], { globals: { json: false, socket: '/x/s.sock' }, command: { name: 'stats' } }],
  [['--socket=/x/s.sock', 'status'], { globals: { json: false, socket: '/x/s.sock' }, command: { name: 'status' } }],
  [['stats', '--timeout', '500'], { globals: { json: false, timeoutMs: 500 }, command: { name: 'stats' } }],
  [['stats', '--timeout=0'], { globals: { json: false, timeoutMs: 0 }, command: { name: 'stats' } }],
  [['verify', 'a1b2c3d4e5f6'], { globals: { json: false }, command: { name: 'verify', md5: 'a1b2c3d4e5f6', all: false } }],
  [['verify', '--all'], { globals: { json: false }, command: { name: 'verify', all: true } }],
  [['find', 'http://x/a.jpg'], { globals: { json: false }, command: { name: 'find', query: 'http://x/a.jpg' } }],
  [['find', '9e10', '--json'], { globals: { json: true }, command: { name: 'find', query: '9e10' } }],
  [['jobs'], { globals: { json: false }, command: { name: 'jobs' } }],
  [['jobs', '--state', 'failed', '--limit', '10'], { globals: { json: false }, command: { name: 'jobs', state: 'failed', limit: 10 } }],
  [['jobs', '--limit=3'], { globals: { json: false }, command: { name: 'jobs', limit: 3 } }],
  [['sweep'], { globals: { json: false }, command: { name: 'sweep', wait: false } }],
  [['sweep', '--wait'], { globals: { json: false }, command: { name: 'sweep', wait: true } }],
  [['remove', 'abc12345'], { globals: { json: false }, command: { name: 'remove', md5: 'abc12345', yes: false } }],
  [['remove', 'abc12345', '--yes'], { globals: { json: false }, command: { name: 'remove', md5: 'abc12345', yes: true } }],
  [['remove', '-y', 'abc12345'], { globals: { json: false }, command: { name: 'remove', md5: 'abc12345', yes: true } }],
  [['cancel', 'j12'], { globals: { json: false }, command: { name: 'cancel', target: 'j12' } }],
  [['cancel', 'http://a/x.jpg'], { globals: { json: false }, command: { name: 'cancel', target: 'http://a/x.jpg' } }],
  [['retry', 'j12'], { globals: { json: false }, command: { name: 'retry', id: 'j12', failed: false } }],
  [['retry', '--failed'], { globals: { json: false }, command: { name: 'retry', failed: true } }],
  [['prune', '--older-than', '7d'], { globals: { json: false }, command: { name: 'prune', olderThanMs: 604_800_000 } }],
  [['prune', '--keep', '100', '--older-than=90s'], { globals: { json: false }, command: { name: 'prune', olderThanMs: 90_000, keep: 100 } }],
  [['add', 'http://a/1', '--priority', '3'], { globals: { json: false }, command: { name: 'add', urls: ['http://a/1'], wait: false, force: false, priority: 3 } }],
  [['watch', '--json'], { globals: { json: true }, command: { name: 'watch' } }],
  [
    ['add', 'http://a/1', 'http://a/2', '--wait', '--force'],
    { globals: { json: false }, command: { name: 'add', urls: ['http://a/1', 'http://a/2'], wait: true, force: true } },
  ],
  [['add', '-f', 'list.urls'], { globals: { json: false }, command: { name: 'add', urls: [], file: 'list.urls', wait: false, force: false } }],
  [['add', '-f', '-', '--wait'], { globals: { json: false }, command: { name: 'add', urls: [], file: '-', wait: true, force: false } }],
  [['add', '--file=x.urls', 'http://a/1'], { globals: { json: false }, command: { name: 'add', urls: ['http://a/1'], file: 'x.urls', wait: false, force: false } }],
  // The seed's shorthand: `mcctl <url>` = `mcctl add <url> --wait`.
  [['http://a/x.jpg'], { globals: { json: false }, command: { name: 'add', urls: ['http://a/x.jpg'], wait: true, force: false } }],
  [['--json', 'http://a/x.jpg', 'https://b/y.png'], { globals: { json: true }, command: { name: 'add', urls: ['http://a/x.jpg', 'https://b/y.png'], wait: true, force: false } }],
  [['--socket', '/s', 'http://a/x.jpg'], { globals: { json: false, socket: '/s' }, command: { name: 'add', urls: ['http://a/x.jpg'], wait: true, force: false } }],
];

t.test('the fast parser and yargs agree on every simple form', async (t) => {
  for (const [argv, want] of ACCEPTED) {
    const fast = fastParse(expandUrlShorthand(argv));
    t.same(fast, want, `fast: ${argv.join(' ')}`);
    t.same(await viaYargs(argv), want, `yargs: ${argv.join(' ')}`);
  }
});

const USAGE_ERRORS: Array<[string[], RegExp]> = [
  [[], /^mcctl: name a command \(mcctl help lists the commands\)\n$/],
  [['bogus'], /^mcctl: unknown command "bogus"/],
  [['stauts'], /^mcctl: unknown command "stauts"; did you mean "stats" or "status"\?/],
  [['sweeep'], /^mcctl: unknown command "sweeep"; did you mean "sweep"\?/],
  [['stats', '--bad'], /^mcctl: unknown option --bad for stats \(see mcctl help stats\)\n$/],
  [['add', 'http://a/1', '--wiat'], /^mcctl: unknown option --wiat for add; did you mean --wait\?/],
  [['jobs', '--limt', '3'], /did you mean --limit\?/],
  [['stats', 'extra'], /^mcctl: unexpected argument "extra" for stats/],
  [['verify'], /needs an md5/],
  [['verify', 'abc', '--all'], /not both/],
  [['find'], /^mcctl: find needs an md5, md5 prefix or URL/],
  [['remove'], /^mcctl: remove needs an md5/],
  [['jobs', '--state', 'bogus'], /--state must be one of queued, running, done, failed/],
  [['jobs', '--state', 'faild'], /did you mean failed\?/],
  [['jobs', '--limit', '0'], /positive integer/],
  [['jobs', '--limit', 'x'], /positive integer/],
  [['stats', '--timeout', 'abc'], /--timeout must be/],
  [['stats', '--socket'], /^mcctl: --socket needs a value/],
  [['add'], /at least one URL/],
  [['add', '--wait'], /at least one URL/],
  [['add', 'http://a/1', '--priority', '1.5'], /--priority must be a whole number/],
  [['retry'], /retry needs a job id, or --failed/],
  [['retry', 'j1', '--failed'], /not both/],
  [['prune'], /prune needs --older-than/],
  [['prune', '--older-than', 'soon'], /--older-than must be a duration/],
  [['cancel'], /cancel needs a job id or a URL/],
  [['help', 'wach'], /^mcctl: unknown command "wach"; did you mean "watch"\?/],
  [['help', 'add', 'find'], /help takes one command name/],
  [['completion', '--json'], /^mcctl: completion prints a shell script, not JSON/],
];

t.test('usage errors: the fast parser declines; one line on stderr, a suggestion where one fits, exit 2', async (t) => {
  for (const [argv, msg] of USAGE_ERRORS) {
    const args = expandUrlShorthand(argv);
    t.equal(fastParse(args), undefined, `fast declines: ${argv.join(' ')}`);
    const r = await parseWithYargs(args);
    t.equal(r.kind, 'print', argv.join(' '));
    if (r.kind !== 'print') continue;
    t.equal(r.code, 2, `exit 2: ${argv.join(' ')}`);
    t.equal(r.stdout, '', 'nothing on stdout');
    t.match(r.stderr, msg, argv.join(' '));
    t.equal(r.stderr.split('\n').length, 2, `one line: ${JSON.stringify(r.stderr)}`);
    t.notMatch(r.stderr, /Options:|Examples:/, 'no help dump');
  }
});

t.test('mcctl help CMD is that command\'s help; -V and --version print the version', async (t) => {
  for (const argv of [['help', 'add'], ['--socket', '/x.sock', 'help', 'add'], ['add', '--help']]) {
    const r = await parseWithYargs(argv);
    t.ok(r.kind === 'print' && r.code === 0, argv.join(' '));
    if (r.kind === 'print') {
      t.match(r.stdout, /^mcctl add \[urls\.\.\]/, 'add\'s own help');
      t.match(r.stdout, /--priority/);
      t.notMatch(r.stdout, /mcctl stats/, 'not the list of every command');
    }
  }
  const all = await parseWithYargs(['help']);
  t.ok(all.kind === 'print' && all.code === 0 && /mcctl remove <md5>/.test(all.stdout) && /mcctl cancel/.test(all.stdout), 'help alone lists the commands');
  for (const v of ['-V', '--version']) {
    const r = await parseWithYargs([v]);
    t.ok(r.kind === 'print' && r.code === 0 && /^\d+\.\d+\.\d+\n$/.test(r.stdout), `${v} prints the version`);
  }
});

t.test('forms only yargs handles still run', async (t) => {
  for (const [argv, want] of [
    [['stats', '--no-json'], { globals: { json: false }, command: { name: 'stats' } }],
    [['verify', '--all=true'], { globals: { json: false }, command: { name: 'verify', all: true } }],
    [['jobs', '--state', 'done', '--state', 'failed'], undefined],
    [['add', 'http://a/1', '--priority', '-5'], { globals: { json: false }, command: { name: 'add', urls: ['http://a/1'], wait: false, force: false, priority: -5 } }],
  ] as Array<[string[], Invocation | undefined]>) {
    const args = expandUrlShorthand(argv);
    t.equal(fastParse(args), undefined, `fast declines ${argv.join(' ')}`);
    const r = await parseWithYargs(args);
    if (want) t.same(r.kind === 'run' ? r.invocation : r, want, argv.join(' '));
    else t.equal(r.kind === 'print' ? r.code : 0, 2, `${argv.join(' ')} refused`);
  }
});

t.test('help, version and completion print to stdout with exit 0', async (t) => {
  const help = await parseWithYargs(['--help']);
  t.equal(help.kind, 'print');
  if (help.kind === 'print') {
    t.equal(help.code, 0);
    for (const c of ['add', 'stats', 'verify', 'find', 'jobs', 'sweep', 'status', 'remove', 'watch', 'cancel', 'retry', 'prune', 'completion']) t.match(help.stdout, new RegExp(`mcctl ${c}`));
    t.match(help.stdout, /Exit codes: 0 success/);
  }
  // Each command has an example in its own help.
  for (const c of ['add', 'stats', 'verify', 'find', 'jobs', 'sweep', 'status', 'remove', 'watch', 'cancel', 'retry', 'prune']) {
    const r = await parseWithYargs([c, '--help']);
    t.ok(r.kind === 'print' && r.code === 0 && /Examples:/.test(r.stdout) && new RegExp(`mcctl ${c}|\\| mcctl ${c}`).test(r.stdout), `${c} --help has examples`);
  }
  const v = await parseWithYargs(['--version']);
  t.ok(v.kind === 'print' && /^\d+\.\d+\.\d+/.test(v.stdout), 'version');
  const comp = await parseWithYargs(['completion']);
  t.ok(comp.kind === 'print' && comp.code === 0 && /mcctl/.test(comp.stdout) && /complet/.test(comp.stdout), 'completion script');
  const words = await parseWithYargs(['--get-yargs-completions', 'mcctl', 've']);
  t.ok(words.kind === 'print' && /verify/.test(words.stdout), 'completes command names');
});

t.test('shorthand expansion only applies to the command slot', async (t) => {
  t.same(expandUrlShorthand(['find', 'http://a/b']), ['find', 'http://a/b']);
  t.same(expandUrlShorthand(['http://a/b', '--wait']), ['add', 'http://a/b', '--wait']);
  t.same(expandUrlShorthand(['--timeout', '5', 'http://a/b']), ['--timeout', '5', 'add', 'http://a/b', '--wait']);
  t.same(expandUrlShorthand(['stats']), ['stats']);
  t.same(expandUrlShorthand([]), []);
});
