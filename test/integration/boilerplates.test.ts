/**
 * Each boilerplate, created with `divio project create` on the shared test platform (registered,
 * first commit pushed) and run with `divio project up`: /healthz
 * says stage local, the page renders, the release command created the table, and an uploaded file
 * comes back byte-identical from data/media.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { parseManifest } from '../../src/shared/manifest-parse.js';
import { divio, json, uniqueSlug } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { destroyProject } from '../helpers/projects.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';
import { createUser, request as api } from '../helpers/api.js';
import { execa } from 'execa';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** HTTP to 127.0.0.1 with the app's Host header (Node cannot resolve .localhost names). */
function http(url: string, path: string, options: { method?: string; headers?: Record<string, string>; body?: Buffer } = {}): Promise<Reply> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: Number(port), path, method: options.method ?? 'GET', headers: { host: `${hostname}:${port}`, ...options.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

function multipart(fields: Record<string, string>, file: { field: string; name: string; data: Buffer }) {
  const boundary = `----divio${randomBytes(8).toString('hex')}`;
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${file.field}"; filename="${file.name}"\r\nContent-Type: application/octet-stream\r\n\r\n`), file.data, Buffer.from(`\r\n--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

for (const boilerplate of ['express', 'django']) {
  describeWithDocker(`boilerplate ${boilerplate}`, () => {
    const slug = uniqueSlug(`bp-${boilerplate}`);
    let parent: string;
    let dir: string;
    let url: string;
    const platform = usePlatform();
    let owner: { DIVIO_ENDPOINT: string; DIVIO_TOKEN: string };
    beforeAll(async () => {
      parent = await mkdtemp(join(tmpdir(), 'divio-bp-'));
      dir = join(parent, slug);
      const user = await createUser(platform().endpoint, await operatorToken(), `bp-${boilerplate}`);
      owner = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token };
    });
    afterAll(async () => {
      if (parent) await destroyProject(slug, parent);
    });

    it('creates a complete project, registered on the platform with its first commit pushed', async () => {
      const created = await divio(['project', 'create', slug, '--boilerplate', boilerplate, '--json'], { cwd: parent, env: owner });
      expect(created.exitCode, String(created.stderr)).toBe(0);
      const result = json(created);
      expect(result).toMatchObject({ app: slug, boilerplate, directory: dir, registered: true, endpoint: owner.DIVIO_ENDPOINT });
      expect(result.environments.map((e: { name: string }) => e.name)).toEqual(['test', 'live']);
      for (const f of ['Dockerfile', 'divio.yaml', 'docker-compose.yml', '.divio/config.json', '.gitignore', '.env.local', 'data/media']) {
        expect(existsSync(join(dir, f)), f).toBe(true);
      }
      expect(existsSync(join(dir, 'gitignore'))).toBe(false);
      expect(JSON.parse(await readFile(join(dir, '.divio/config.json'), 'utf8'))).toEqual({ app: slug, endpoint: owner.DIVIO_ENDPOINT });
      const app = (await api(owner.DIVIO_ENDPOINT, `/v1/apps/${slug}`, { token: owner.DIVIO_TOKEN })).body;
      expect(app.boilerplate).toBe(boilerplate);
      const [test, live] = app.environments;
      expect(test.database.name).not.toBe(live.database.name);
      expect(test.media.bucket).not.toBe(live.media.bucket);
      // Exactly one commit, and the platform's main is that commit; nothing uncommitted is left.
      const log = await execa('git', ['log', '--format=%H'], { cwd: dir });
      expect(log.stdout.trim().split('\n')).toHaveLength(1);
      expect(result.commit).toBe(log.stdout.trim());
      expect((await execa('git', ['status', '--porcelain'], { cwd: dir })).stdout).toBe('');
      // A later plain `git` talks to the platform through divio's credential helper.
      const remote = await execa('git', ['ls-remote', 'origin', 'refs/heads/main'], { cwd: dir, env: { ...owner, DIVIO_CONFIG_DIR: process.env.DIVIO_CONFIG_DIR }, reject: false });
      expect(remote.stdout.split('\t')[0], remote.stderr).toBe(result.commit);
      const listed = json(await divio(['project', 'list', '--json'], { env: owner }));
      expect(listed.apps.map((a: { slug: string }) => a.slug)).toContain(slug);
      const manifest = parseManifest(await readFile(join(dir, 'divio.yaml'), 'utf8'));
      expect(manifest.boilerplate).toBe(boilerplate);
      expect(manifest.release?.command).toBeTruthy();
      expect(await readFile(join(dir, '.gitignore'), 'utf8')).toMatch(/^data\/$/m);
      // No half-made staging directories are left beside it.
      expect((await readdir(parent)).filter((n) => n !== slug)).toEqual([]);
    });

    it('refuses to scaffold over a non-empty directory or with a bad slug', async () => {
      const again = await divio(['project', 'create', slug, '--boilerplate', boilerplate], { cwd: parent, env: owner });
      expect(again.exitCode).not.toBe(0);
      expect(again.stderr).toMatch(/already exists and is not empty/);
      const bad = await divio(['project', 'create', 'Bad_Slug'], { cwd: parent });
      expect(bad.stderr).toMatch(/not a valid app slug/);
      const unknown = await divio(['project', 'create', 'fine-slug', '--boilerplate', 'rails'], { cwd: parent });
      expect(unknown.stderr).toMatch(/no boilerplate "rails".*\n.*express/);
    });

    it('runs with `project up`: /healthz answers with stage local', async () => {
      const up = await divio(['project', 'up', '--json', '--timeout', '300'], { cwd: dir, timeout: 900_000 });
      expect(up.exitCode, String(up.stderr)).toBe(0);
      const result = json(up);
      url = result.url;
      expect(result.health).toMatchObject({ stage: 'local' });
      const health = await http(url, '/healthz');
      expect(health.status).toBe(200);
      expect(JSON.parse(health.body.toString())).toMatchObject({ stage: 'local' });
    });

    it('renders its page and stores an upload through DEFAULT_STORAGE_DSN', async () => {
      const page = await http(url, '/');
      expect(page.status).toBe(200);
      expect(page.body.toString()).toMatch(/<form[^>]+multipart\/form-data/i);
      const data = randomBytes(150_000);
      const name = `upload-${randomBytes(3).toString('hex')}.bin`;
      const fields: Record<string, string> = {};
      const headers: Record<string, string> = {};
      if (boilerplate === 'django') {
        const cookie = String(page.headers['set-cookie'] ?? '').match(/csrftoken=([^;]+)/)?.[1];
        const token = page.body.toString().match(/name="csrfmiddlewaretoken" value="([^"]+)"/)?.[1];
        expect(cookie && token).toBeTruthy();
        fields.csrfmiddlewaretoken = token!;
        headers.cookie = `csrftoken=${cookie}`;
        headers.referer = url + '/';
      }
      const form = multipart(fields, { field: 'file', name, data });
      const action = page.body.toString().match(/<form[^>]+action="([^"]+)"/i)?.[1] ?? '/upload';
      const posted = await http(url, action, { method: 'POST', body: form.body, headers: { ...headers, 'content-type': form.contentType } });
      expect([200, 201, 302, 303]).toContain(posted.status);
      const after = (await http(url, '/')).body.toString();
      const link = after.match(new RegExp(`href="([^"]*${name.replace('.', '\\.')}[^"]*)"`))?.[1];
      expect(link, 'the page links the uploaded file').toBeTruthy();
      const back = await http(url, new URL(link!, url).pathname);
      expect(back.status).toBe(200);
      expect(back.body.equals(data)).toBe(true);
      // Stored in the local media directory, mounted from the project's data/media.
      const stored = await readdir(join(dir, 'data', 'media'), { recursive: true });
      expect(stored.some((f) => String(f).endsWith(name.slice(-10)))).toBe(true);
    });

    it('runs with --live-config (production server, DEBUG off)', async () => {
      const up = await divio(['project', 'up', '--live-config', '--json', '--timeout', '300'], { cwd: dir, timeout: 900_000 });
      expect(up.exitCode, String(up.stderr)).toBe(0);
      expect(json(up).health).toMatchObject({ stage: 'local' });
      expect((await http(json(up).url, '/')).status).toBe(200);
      expect((await divio(['project', 'down', '--volumes'], { cwd: dir })).exitCode).toBe(0);
      await rm(join(dir, 'data'), { recursive: true, force: true });
    });
  });
}
