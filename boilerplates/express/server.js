// The web server. Production: `node server.js`; local development: `node --watch server.js`.
import express from 'express';
import multer from 'multer';
import { fileURLToPath } from 'node:url';
import { config } from './lib/config.js';
import { pool, ping, query } from './lib/db.js';
import { createStorage, isSafeName, newFileName } from './lib/storage.js';
import { errorPage, indexPage } from './lib/page.js';

const storage = createStorage(config.storageDsn);
const app = express();
app.disable('x-powered-by');
// The platform's router (and any proxy in front of it) sets X-Forwarded-*.
app.set('trust proxy', 'loopback, linklocal, uniquelocal');

// --- health ---------------------------------------------------------------------------------------
// 200 once the database answers; does not need the migrations to have run.
app.get('/healthz', async (req, res) => {
  const body = { status: 'ok', stage: config.stage, database: 'ok' };
  try {
    await ping();
  } catch (error) {
    body.status = 'unavailable';
    body.database = config.databaseUrl ? 'unavailable' : 'not configured';
    if (config.debug) body.error = error.message;
    res.set('Cache-Control', 'no-store').status(503).json(body);
    return;
  }
  res.set('Cache-Control', 'no-store').json(body);
});

// --- static files and media -----------------------------------------------------------------------
app.use('/static', express.static(fileURLToPath(new URL('./public/', import.meta.url)), { maxAge: '1h' }));

// Media is served by the app itself for file storage (also with DEBUG off) and proxied from S3 when
// the DSN gives no public URL. Uploaded files run no script in the browser (CSP sandbox).
app.use(storage.mediaPath, async (req, res, next) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') return next();
  let name;
  try {
    name = decodeURIComponent(req.path.replace(/^\/+/, ''));
  } catch {
    return next();
  }
  if (!isSafeName(name)) return next();
  const file = await storage.open(name);
  if (!file) return next();
  res.set({
    'Content-Type': file.contentType || contentTypeFor(name),
    'Content-Security-Policy': 'sandbox',
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'public, max-age=3600',
  });
  if (file.size !== undefined) res.set('Content-Length', String(file.size));
  if (file.lastModified) res.set('Last-Modified', new Date(file.lastModified).toUTCString());
  if (file.etag) res.set('ETag', file.etag);
  if (req.method === 'HEAD') {
    file.stream.destroy?.();
    return res.end();
  }
  file.stream.on('error', (error) => {
    console.error(`media: reading ${name} failed: ${error.message}`);
    res.destroy(error);
  });
  file.stream.pipe(res);
});

// --- pages ----------------------------------------------------------------------------------------
app.get('/', async (req, res) => {
  let uploads = null;
  let notice = req.query.error ? String(req.query.error) : null;
  try {
    const result = await query('SELECT name, original_name, content_type, size, created_at FROM uploads ORDER BY created_at DESC, id DESC LIMIT 100');
    uploads = result.rows;
  } catch (error) {
    // 42P01: the table does not exist yet.
    notice = error.code === '42P01' ? 'The uploads table does not exist yet: run the release command (node migrate.js).' : `The database is not available: ${error.message}`;
  }
  res.type('html').send(indexPage({ config, storage, uploads, notice, maxUploadBytes: config.maxUploadBytes }));
});

const upload = multer({
  storage: multer.memoryStorage(),
  limits: { fileSize: config.maxUploadBytes, files: 1, fields: 10 },
  // Browsers send file names as raw UTF-8.
  defParamCharset: 'utf8',
});

app.post('/upload', (req, res, next) => {
  upload.single('file')(req, res, async (error) => {
    try {
      if (error) {
        const status = error.code === 'LIMIT_FILE_SIZE' ? 413 : 400;
        res.status(status).type('html').send(errorPage(status, `The upload was refused: ${error.message}.`));
        return;
      }
      if (!req.file) {
        res.status(400).type('html').send(errorPage(400, 'Choose a file to upload.'));
        return;
      }
      const name = newFileName(req.file.originalname);
      const contentType = req.file.mimetype || 'application/octet-stream';
      await storage.save(name, req.file.buffer, contentType);
      try {
        await query('INSERT INTO uploads (name, original_name, content_type, size) VALUES ($1, $2, $3, $4)', [
          name,
          req.file.originalname.slice(0, 255) || 'file',
          contentType.slice(0, 255),
          req.file.size,
        ]);
      } catch (dbError) {
        await storage.delete(name).catch(() => {});
        throw dbError;
      }
      console.log(`upload: stored ${name} (${req.file.size} bytes)`);
      if (req.accepts(['html', 'json']) === 'json') {
        res.status(201).json({ name, url: storage.url(name), size: req.file.size });
      } else {
        res.redirect(303, '/');
      }
    } catch (err) {
      next(err);
    }
  });
});

// --- errors ---------------------------------------------------------------------------------------
app.use((req, res) => {
  res.status(404).type('html').send(errorPage(404, 'Not found.'));
});

app.use((error, req, res, _next) => {
  console.error(error);
  if (res.headersSent) return res.destroy();
  res.status(500).type('html').send(errorPage(500, 'Something went wrong.', config.debug ? error.stack : null));
});

const TYPES = { '.txt': 'text/plain; charset=utf-8', '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.svg': 'image/svg+xml', '.webp': 'image/webp', '.pdf': 'application/pdf', '.json': 'application/json', '.html': 'text/html; charset=utf-8', '.css': 'text/css', '.csv': 'text/csv', '.mp4': 'video/mp4', '.zip': 'application/zip' };
function contentTypeFor(name) {
  const dot = name.lastIndexOf('.');
  return (dot >= 0 && TYPES[name.slice(dot).toLowerCase()]) || 'application/octet-stream';
}

// --- start and stop -------------------------------------------------------------------------------
const server = app.listen(config.port, '0.0.0.0', () => {
  console.log(`${config.appName}: listening on 0.0.0.0:${config.port} (stage ${config.stage}, debug ${config.debug}, media: ${storage.description})`);
});
server.on('error', (error) => {
  console.error(`cannot listen on port ${config.port}: ${error.message}`);
  process.exit(1);
});

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: shutting down`);
  // Give in-flight requests a moment, then drop whatever is left.
  const force = setTimeout(() => {
    console.error('shutdown: timed out, exiting');
    process.exit(1);
  }, 10000);
  force.unref();
  setTimeout(() => server.closeAllConnections(), 3000).unref();
  server.close(async () => {
    await pool?.end().catch(() => {});
    process.exit(0);
  });
  server.closeIdleConnections();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
