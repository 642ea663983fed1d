import { describe, expect, it, beforeEach } from 'vitest';
import { mkdtemp, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { parse } from 'yaml';
import { isUnedited, renderComposeFile, renderTemplate, syncComposeFile } from '../../src/services/project/compose-file.js';
import { loadProject } from '../../src/core/project.js';

async function makeProject(manifest: string, slug = 'shop') {
  const root = await mkdtemp(join(tmpdir(), 'divio-compose-'));
  await mkdir(join(root, '.divio'));
  await writeFile(join(root, '.divio/config.json'), JSON.stringify({ app: slug }));
  await writeFile(join(root, 'divio.yaml'), manifest);
  return loadProject(root);
}

const manifest = `web:
  port: 8080
  command: gunicorn --bind 0.0.0.0:$PORT app.wsgi
  local_command: python3 manage.py runserver 0.0.0.0:$PORT
database:
  version: 14
media:
  url: /files/
`;

describe('docker-compose.yml generation', () => {
  let project: Awaited<ReturnType<typeof makeProject>>;
  beforeEach(async () => {
    project = await makeProject(manifest);
  });

  it('renders the local column of the variables contract', async () => {
    const doc = parse(await renderComposeFile(project));
    const web = doc.services.web;
    expect(web.command).toEqual(['sh', '-c', 'python3 manage.py runserver 0.0.0.0:$$PORT']);
    expect(web.init).toBe(true);
    expect(web.ports).toEqual(['127.0.0.1:${DIVIO_WEB_PORT:-8000}:8080']);
    expect(web.environment).toMatchObject({
      STAGE: 'local',
      DEBUG: 'true',
      PORT: '8080',
      DEFAULT_STORAGE_DSN: 'file:///data/media/?url=/files/',
      DOMAIN: 'shop.localhost',
      SITE_URL: 'http://shop.localhost:${DIVIO_WEB_PORT:-8000}',
    });
    expect(web.environment.DATABASE_URL).toMatch(/^postgres:\/\/postgres:[^@]+@db:5432\/app$/);
    expect(web.environment.SECRET_KEY.length).toBeGreaterThanOrEqual(40);
    expect(web.volumes).toEqual(['./data/media:/data/media']);
    expect(web.env_file).toBe('.env.local');
    expect(doc.services.db.image).toBe('postgres:14');
    expect(doc.services.db.healthcheck.test).toEqual(['CMD', 'pg_isready', '-h', '127.0.0.1', '-U', 'postgres', '-d', 'app']);
    expect(doc.volumes).toHaveProperty('db-data');
  });

  it('leaves out the database when divio.yaml has none', async () => {
    const noDb = await makeProject('web:\n  command: ./serve\n');
    const doc = parse(await renderComposeFile(noDb));
    expect(Object.keys(doc.services)).toEqual(['web']);
    expect(doc.services.web.environment.DATABASE_URL).toBeUndefined();
    expect(doc.volumes).toBeUndefined();
  });

  it('generates secrets once and keeps them across regenerations', async () => {
    const first = await syncComposeFile(project);
    expect(first.status).toBe('created');
    const text = await readFile(first.path, 'utf8');
    expect(isUnedited(text)).toBe(true);
    expect((await syncComposeFile(project)).status).toBe('unchanged');
    await writeFile(join(project.root, 'divio.yaml'), manifest.replace('8080', '9090'));
    const changed = await loadProject(project.root);
    expect((await syncComposeFile(changed)).status).toBe('updated');
    const before = parse(text).services.web.environment;
    const after = parse(await readFile(first.path, 'utf8')).services.web.environment;
    expect(after.SECRET_KEY).toBe(before.SECRET_KEY);
    expect(after.DATABASE_URL).toBe(before.DATABASE_URL);
    expect(after.PORT).toBe('9090');
  });

  it('never overwrites a file the user edited; writes the generated version beside it', async () => {
    const first = await syncComposeFile(project);
    const edited = (await readFile(first.path, 'utf8')).replace('STAGE: local', 'STAGE: local\n      MY_SETTING: "1"');
    await writeFile(first.path, edited);
    expect(isUnedited(edited)).toBe(false);
    await writeFile(join(project.root, 'divio.yaml'), manifest.replace('8080', '9090'));
    const result = await syncComposeFile(await loadProject(project.root));
    expect(result.status).toBe('kept-user-edits');
    expect(await readFile(first.path, 'utf8')).toBe(edited);
    expect(parse(await readFile(result.generatedCopy!, 'utf8')).services.web.environment.PORT).toBe('9090');
  });

  it('creates .env.local and data/media for compose', async () => {
    await syncComposeFile(project);
    expect(await readFile(join(project.root, '.env.local'), 'utf8')).toMatch(/KEY=value/);
  });

  it('renders sections and refuses missing values', () => {
    expect(renderTemplate('a\n{{#x}}\nb {{v}}\n{{/x}}\nc\n', { v: '1' }, { x: true })).toBe('a\nb 1\nc\n');
    expect(renderTemplate('a\n{{#x}}\nb\n{{/x}}\nc\n', {}, { x: false })).toBe('a\nc\n');
    expect(() => renderTemplate('{{nope}}', {}, {})).toThrow(/nope/);
  });
});
