// Static loopback origin for benchmarks, run as its own process so it does not
// share an event loop (or CPU accounting) with the client under test.
// Usage: node bench/origin.js <dir>  → prints {"port":N} on stdout, serves <dir>/<name>.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(process.argv[2] ?? '.');
const server = http.createServer((req, res) => {
  const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
  if (name.includes('..') || name.includes('/')) {
    res.writeHead(400).end();
    return;
  }
  const file = path.join(root, name);
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-length': st.size, 'content-type': 'application/octet-stream' });
    if (req.method === 'HEAD') return void res.end();
    fs.createReadStream(file, { highWaterMark: 256 * 1024 }).pipe(res);
  });
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
// Exit at once: idle keep-alive connections would hold server.close() for keepAliveTimeout.
process.on('SIGTERM', () => process.exit(0));
process.on('disconnect', () => process.exit(0));
