#!/usr/bin/env node
/**
 * A mediacache webhook receiver that writes finished downloads into a
 * PostgreSQL media table (schema in docs/hooks.md).
 *
 *   npm install pg
 *   PGHOST=... PGDATABASE=... MEDIACACHE_WEBHOOK_SECRET=... node webhook-receiver-pg.mjs
 *   mediacached --webhook http://127.0.0.1:8787/mediacache --webhook-secret-file /etc/mediacache/webhook.secret
 *
 * It checks the signature and the timestamp (refusing replays older than
 * five minutes), and records each delivery id in the same transaction as the
 * row, so a delivery repeated after a retry or a crash changes nothing.
 * Answer 2xx only once the row is committed: anything else makes the daemon
 * deliver again later.
 */
import http from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import pg from 'pg';

const SECRET = process.env.MEDIACACHE_WEBHOOK_SECRET ?? '';
const PORT = Number(process.env.PORT ?? 8787);
const TOLERANCE_SEC = 300;
const pool = new pg.Pool(); // PGHOST, PGUSER, PGDATABASE, ... from the environment

function verify(headers, body) {
  const ts = headers['x-mediacache-timestamp'];
  const sig = headers['x-mediacache-signature'];
  if (!ts || !sig || !/^\d+$/.test(ts) || !/^sha256=[0-9a-f]{64}$/.test(sig)) return 'missing or malformed signature';
  if (Math.abs(Date.now() / 1000 - Number(ts)) > TOLERANCE_SEC) return 'stale timestamp';
  const want = createHmac('sha256', SECRET).update(`${ts}.`).update(body).digest();
  if (!timingSafeEqual(want, Buffer.from(sig.slice(7), 'hex'))) return 'bad signature';
  return undefined;
}

async function handle(event) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // Seen before (a repeat): nothing to do, but still answer 2xx.
    const first = await client.query('INSERT INTO mediacache_deliveries (delivery_id, event) VALUES ($1, $2) ON CONFLICT DO NOTHING', [event.id, event.type]);
    if (first.rowCount === 1) {
      if (event.type === 'job.done') {
        const r = event.data.record;
        await client.query(
          `INSERT INTO media (source_url, md5, sha256, local_path, media_type, mime_type, file_size, width, height, fetched_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (source_url, md5) DO NOTHING`,
          [event.data.url, r.md5, r.sha256, r.localPath, r.mediaType, r.mimeType, r.fileSize, r.width ?? null, r.height ?? null, r.fetchedAt],
        );
      } else if (event.type === 'job.failed') {
        await client.query(
          `INSERT INTO media_failures (source_url, code, message, http_status) VALUES ($1, $2, $3, $4)
           ON CONFLICT (source_url) DO UPDATE SET code = EXCLUDED.code, message = EXCLUDED.message, http_status = EXCLUDED.http_status, failed_at = now()`,
          [event.data.url, event.data.code, event.data.message, event.data.status ?? null],
        );
      } else if (event.type === 'upstream.changed') {
        await client.query('UPDATE media SET stale = true WHERE source_url = $1 AND md5 = $2', [event.data.url, event.data.oldMd5]);
      }
      // sweep.done: the report is in event.data.report; this example only logs it.
    }
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}

http
  .createServer((req, res) => {
    if (req.method !== 'POST') return void res.writeHead(405).end();
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 16 * 1024 * 1024) req.destroy(); // sweep reports can be large, not this large
      else chunks.push(c);
    });
    req.on('end', async () => {
      const body = Buffer.concat(chunks); // verify the raw bytes, never re-serialized JSON
      const bad = verify(req.headers, body);
      if (bad) return void res.writeHead(401, { 'content-type': 'text/plain' }).end(bad);
      try {
        await handle(JSON.parse(body.toString('utf8')));
        res.writeHead(204).end();
      } catch (e) {
        console.error('cannot store delivery', req.headers['x-mediacache-delivery'], e);
        res.writeHead(503).end(); // the daemon retries
      }
    });
  })
  .listen(PORT, '127.0.0.1', () => console.error(`listening on http://127.0.0.1:${PORT}/`));
