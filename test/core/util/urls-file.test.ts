import t from 'tap';
import { firstLines, parseUrlsFile } from '../../../src/core/util/urls-file.js';

t.test('BOM, CRLF, blank lines, comments and trimming', async (t) => {
  const text = '\ufeff# a comment\r\nhttp://a.example/x.png\r\n\r\n   \r\n  https://b.example/y.jpg  \r\n#http://not.taken/\r\n';
  const lines = parseUrlsFile(text);
  t.same(
    lines.map((l) => [l.line, l.raw, l.url]),
    [
      [2, 'http://a.example/x.png', 'http://a.example/x.png'],
      [5, 'https://b.example/y.jpg', 'https://b.example/y.jpg'],
    ],
  );
  t.notOk(lines.some((l) => l.error));
});

t.test('lone CR and missing final newline', async (t) => {
  const lines = parseUrlsFile('http://a.example/1\rhttp://a.example/2');
  t.same(lines.map((l) => [l.line, l.url]), [
    [1, 'http://a.example/1'],
    [2, 'http://a.example/2'],
  ]);
});

t.test('invalid lines carry the error code and their line number', async (t) => {
  const lines = parseUrlsFile(['not a url', 'ftp://h.example/f', 'file:///etc/passwd', 'http://ok.example/a'].join('\n'));
  t.same(
    lines.map((l) => [l.line, l.raw, l.error?.code ?? null, l.url ?? null]),
    [
      [1, 'not a url', 'E_INVALID_URL', null],
      [2, 'ftp://h.example/f', 'E_UNSUPPORTED_SCHEME', null],
      [3, 'file:///etc/passwd', 'E_UNSUPPORTED_SCHEME', null],
      [4, 'http://ok.example/a', null, 'http://ok.example/a'],
    ],
  );
  t.type(lines[0].error?.message, 'string');
});

t.test('duplicates are kept per line; firstLines maps each URL to its first line', async (t) => {
  const lines = parseUrlsFile('http://a.example/x\nhttp://b.example/y\nhttp://a.example/x\nHTTP://A.EXAMPLE/x\n');
  t.equal(lines.length, 4);
  // Normalised: scheme and host case do not make a different URL.
  t.equal(lines[3].url, 'http://a.example/x');
  t.same([...firstLines(lines)], [
    ['http://a.example/x', 1],
    ['http://b.example/y', 2],
  ]);
});

t.test('empty and comment-only files give no lines', async (t) => {
  t.same(parseUrlsFile(''), []);
  t.same(parseUrlsFile('\ufeff\n# only\n\n'), []);
});
