import t from 'tap';
import { parseMediaUrl } from '../../../src/core/fetch/url.js';
import { MediaCacheError } from '../../../src/core/errors.js';

function code(input: string): string | undefined {
  try {
    parseMediaUrl(input);
    return undefined;
  } catch (e) {
    return e instanceof MediaCacheError ? e.code : `not a MediaCacheError: ${String(e)}`;
  }
}

t.test('accepts http and https, trimmed', async (t) => {
  t.equal(parseMediaUrl('https://example.com/a.jpg').href, 'https://example.com/a.jpg');
  t.equal(parseMediaUrl('  http://example.com/x.php?id=1 \r\n').href, 'http://example.com/x.php?id=1');
  t.equal(parseMediaUrl('\ufeffhttp://example.com/a').href, 'http://example.com/a', 'BOM is whitespace to trim()');
  t.equal(parseMediaUrl('HTTP://EXAMPLE.com/A.JPG').href, 'http://example.com/A.JPG', 'scheme and host normalised, path kept');
  t.equal(parseMediaUrl('http://127.0.0.1:8080/a').port, '8080');
  t.equal(parseMediaUrl('http://[::1]:9/a').hostname, '[::1]');
  t.equal(parseMediaUrl('https://user:pw@example.com/').username, 'user');
  t.ok(parseMediaUrl('https://example.com') instanceof URL);
});

t.test('garbage is E_INVALID_URL', async (t) => {
  for (const s of [
    '',
    '   ',
    'not a url',
    'example.com/a.jpg',
    'localhost:8080/a.jpg',
    '/relative/path.jpg',
    'http://',
    'https://:80/x',
    'http://exa mple.com/',
    'http://a.com/x\nhttp://b.com/y',
    'http://a.com/\tx',
    'http://h:99999/',
    'http://' + 'a'.repeat(9000) + '.com/',
  ]) {
    t.equal(code(s), 'E_INVALID_URL', JSON.stringify(s.slice(0, 40)));
  }
  t.equal(code(undefined as unknown as string), 'E_INVALID_URL', 'non-string');
});

t.test('other schemes are E_UNSUPPORTED_SCHEME', async (t) => {
  for (const s of [
    'file:///etc/passwd',
    'ftp://example.com/a.jpg',
    'data:image/png;base64,iVBORw0KGgo=',
    'javascript:alert(1)',
    'mailto:a@b.c',
    'ws://example.com/',
    'blob:https://example.com/uuid',
    'gopher://example.com/',
  ]) {
    t.equal(code(s), 'E_UNSUPPORTED_SCHEME', s);
  }
});

t.test('error carries a readable message', async (t) => {
  try {
    parseMediaUrl('ftp://example.com/a');
    t.fail('should throw');
  } catch (e) {
    t.match((e as Error).message, /ftp.*only http and https/);
  }
  try {
    parseMediaUrl('example.com/a.jpg');
    t.fail('should throw');
  } catch (e) {
    t.match((e as Error).message, /missing http/);
  }
});
