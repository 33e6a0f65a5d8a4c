/**
 * Credentials never reach what people read: redactUrl/redactText, the
 * error JSON that goes into job records, events and RPC replies, the inbox
 * report, and the daemon's log lines (console and JSON file).
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { redactDeep, redactText, redactUrl } from '../../../src/core/util/redact.js';
import { MediaCacheError } from '../../../src/core/errors.js';
import { formatReport } from '../../../src/daemon/inbox/report.js';
import { createDaemonLogger } from '../../../src/daemon/log.js';

const SECRET = 'https://alice:hunter2@media.example/a.jpg?size=large&token=tok123&X-Amz-Signature=abcd&Key-Pair-Id=K1#access_token=zzz';

t.test('redactUrl', async (t) => {
  t.equal(redactUrl(SECRET), 'https://***@media.example/a.jpg?size=large&token=***&X-Amz-Signature=***&Key-Pair-Id=K1#access_token=***');
  t.equal(redactUrl('https://tokenonly@h/x'), 'https://***@h/x', 'a user name alone is hidden too');
  t.equal(redactUrl('http://a@b@h:8080/p'), 'http://***@h:8080/p', 'the last @ ends the userinfo');
  t.equal(redactUrl('https://h/p?api_key=1&apikey=2&client_secret=3&sig=4&password=5&key=6&monkey=7&keyword=8'), 'https://h/p?api_key=***&apikey=***&client_secret=***&sig=***&password=***&key=***&monkey=7&keyword=8');
  t.equal(redactUrl('https://h/p?token='), 'https://h/p?token=', 'nothing to hide');
  t.equal(redactUrl('https://h/p/x@y?q=1'), 'https://h/p/x@y?q=1', 'an @ in the path is not userinfo');
  t.equal(redactUrl('https://EXAMPLE.org/Path?Q=1'), 'https://EXAMPLE.org/Path?Q=1', 'otherwise unchanged, as written');
  t.equal(redactUrl('not a url'), 'not a url');
});

t.test('redactText and redactDeep find URLs inside text', async (t) => {
  t.equal(redactText(`GET ${SECRET} failed: "https://u:p@h/" (x)`), `GET ${redactUrl(SECRET)} failed: "https://***@h/" (x)`);
  t.same(redactDeep({ url: 'http://u:p@h/', n: 1, list: ['ftp://a:b@c/'], nested: { msg: 'see http://x/?token=t' } }), { url: 'http://***@h/', n: 1, list: ['ftp://***@c/'], nested: { msg: 'see http://x/?token=***' } });
});

t.test('error JSON (job records, events, RPC data) is redacted; the error object keeps the real URL', async (t) => {
  const e = new MediaCacheError('E_HTTP', `HTTP 404 for ${SECRET}`, { url: SECRET, status: 404 });
  const j = e.toJSON();
  t.notMatch(JSON.stringify(j), /hunter2|tok123|abcd|zzz/);
  t.equal(j.url, redactUrl(SECRET));
  t.equal(e.url, SECRET, 'in-process callers still see the URL they asked for');
});

t.test('inbox report rows are redacted', async (t) => {
  const text = formatReport([{ line: 1, url: SECRET, outcome: 'failed', result: 'E_HTTP' }]);
  t.notMatch(text, /hunter2|tok123/);
  t.match(text, /https:\/\/\*\*\*@media\.example\/a\.jpg\?size=large&token=\*\*\*/);
});

t.test('daemon log lines, console and JSON file, are redacted', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-redact-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  let out = '';
  const console = new Writable({
    write(chunk, _enc, cb) {
      out += String(chunk);
      cb();
    },
  });
  const file = path.join(dir, 'd.log');
  const log = createDaemonLogger({ level: 'debug', logFile: file, console, colors: false });
  log.info(`queued ${SECRET}`, { url: SECRET, job: { url: SECRET } });
  log.warn('download failed', { error: new MediaCacheError('E_NETWORK', `connect failed: ${SECRET}`, { url: SECRET }) });
  await log.end();
  const json = fs.readFileSync(file, 'utf8');
  for (const [name, text] of [['console', out], ['file', json]] as const) {
    t.notMatch(text, /hunter2|tok123|abcd|zzz/, `${name}: no secret`);
    t.match(text, /https:\/\/\*\*\*@media\.example/, `${name}: the URL is still recognisable`);
  }
});
