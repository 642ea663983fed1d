/**
 * `push media` / `pull media` through the platform's router with the API's short-lived credentials,
 * their isolation (read-only for pulls, one bucket per environment), and `project setup`: a
 * newcomer's clone with test's database and media in one command, resuming after an interruption.
 * The sync engine itself is covered in depth against the media store in media-sync.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { Agent } from 'node:http';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { localhostLookup } from '../../src/core/localhost-lookup.js';
import { docker } from '../../src/core/docker.js';
import { BIN, TEST_CONFIG_DIR, divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { createUser, request } from '../helpers/api.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';

async function treeDigests(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) out[relative(root, path)] = createHash('sha256').update(await readFile(path)).digest('hex');
    }
  };
  await walk(root);
  return out;
}

describeWithDocker('media through the platform, and project setup', () => {
  const platform = usePlatform();
  const slug = `stp-${Math.random().toString(36).slice(2, 8)}`;
  let parent: string;
  let dir: string;
  let env: Record<string, string>;
  let token: string;
  const cli = (args: string[], cwd = dir) => divio(args, { cwd, env, timeout: 900_000 });
  const media = () => join(dir, 'data', 'media');
  let expectedMedia: Record<string, string>;

  beforeAll(async () => {
    const user = await createUser(platform().endpoint, await operatorToken(), 'newcomer');
    token = user.token;
    env = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token };
    parent = await mkdtemp(join(tmpdir(), 'divio-setup-'));
    dir = join(parent, slug);
    const created = await divio(['project', 'create', slug], { cwd: parent, env });
    expect(created.exitCode, created.stderr).toBe(0);
    await mkdir(join(media(), 'uploads', '2026', 'nested'), { recursive: true });
    await writeFile(join(media(), 'uploads', '2026', 'nested', 'photo.bin'), randomBytes(300_000));
    await writeFile(join(media(), 'uploads', 'Zoë – résumé.txt'), 'unicode name\n');
    await writeFile(join(media(), 'uploads', '写真.txt'), 'cjk name\n');
    await writeFile(join(media(), 'empty'), '');
    expectedMedia = await treeDigests(media());
  });

  afterAll(async () => {
    for (const checkout of [dir, join(parent ?? '', 'copy'), join(parent ?? '', 'resumed')]) {
      if (checkout) await divio(['project', 'down', '--volumes'], { cwd: checkout, env }).catch(() => undefined);
    }
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it('push media sends the tree; a second push transfers nothing; pull media --json lists digests', async () => {
    const pushed = await cli(['project', 'push', 'media', 'test', '--json']);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    const push = json(pushed);
    expect(push.files).toMatchObject({ transferred: 4, failed: 0 });
    const again = json(await cli(['project', 'push', 'media', 'test', '--json']));
    expect(again.files).toMatchObject({ transferred: 0, skipped: 4 });
    expect(again.tree.sha256).toBe(push.tree.sha256);

    await rm(join(media(), 'uploads'), { recursive: true });
    const pulled = await cli(['project', 'pull', 'media', 'test', '--json']);
    expect(pulled.exitCode, pulled.stderr).toBe(0);
    const pull = json(pulled);
    expect(pull.files.transferred).toBe(3);
    const photo = pull.transferred.find((f: { key: string }) => f.key === 'uploads/2026/nested/photo.bin');
    expect(photo.sha256).toBe(expectedMedia['uploads/2026/nested/photo.bin']);
    expect(await treeDigests(media())).toEqual(expectedMedia);
    expect(pull.tree.sha256).toBe(push.tree.sha256);
  });

  it('push media --delete asks before deleting on test, and deletes only with --yes', async () => {
    await writeFile(join(media(), 'extra.txt'), 'only on test soon\n');
    expect((await cli(['project', 'push', 'media', 'test'])).exitCode).toBe(0);
    await rm(join(media(), 'extra.txt'));
    const refused = await cli(['project', 'push', 'media', 'test', '--delete']);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/deleting 1 file\(s\).*--yes/s);
    const listed = await s3Keys('test', 'read');
    expect(listed).toContain('extra.txt');
    const deleted = await cli(['project', 'push', 'media', 'test', '--delete', '--yes', '--json']);
    expect(deleted.exitCode, deleted.stderr).toBe(0);
    expect(json(deleted).deleted).toEqual(['extra.txt']);
    expect(await s3Keys('test', 'read')).not.toContain('extra.txt');
  });

  it("media credentials reach only their environment's bucket, and read credentials change nothing", async () => {
    const read = await credentials('test', 'read');
    const write = await credentials('test', 'write');
    const live = await credentials('live', 'read');
    expect(read.bucket).not.toBe(live.bucket);
    expect(Date.parse(read.expiresAt) - Date.now()).toBeLessThanOrEqual(3600_000);
    const client = (c: typeof read) =>
      new S3Client({
        endpoint: c.endpoint,
        region: c.region,
        forcePathStyle: true,
        credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey },
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        requestHandler: new NodeHttpHandler({ httpAgent: new Agent({ lookup: localhostLookup }) }),
      });
    const status = (promise: Promise<unknown>) => promise.then(() => 200, (error: { $metadata?: { httpStatusCode?: number } }) => error.$metadata?.httpStatusCode);
    expect(await status(client(read).send(new ListObjectsV2Command({ Bucket: read.bucket })))).toBe(200);
    expect(await status(client(read).send(new ListObjectsV2Command({ Bucket: live.bucket })))).toBe(403);
    expect(await status(client(read).send(new PutObjectCommand({ Bucket: read.bucket, Key: 'x.txt', Body: 'x' })))).toBe(403);
    expect(await status(client(write).send(new PutObjectCommand({ Bucket: write.bucket, Key: 'probe.txt', Body: 'x' })))).toBe(200);
    expect(await status(client(write).send(new PutObjectCommand({ Bucket: live.bucket, Key: 'probe.txt', Body: 'x' })))).toBe(403);
    // Nothing of this reaches another user's view: bob cannot ask for alice's credentials at all.
    const bob = await createUser(platform().endpoint, await operatorToken(), 'bob');
    const foreign = await request(platform().endpoint, `/v1/apps/${slug}/environments/test/media/credentials`, { method: 'POST', token: bob.token, body: { access: 'read' } });
    expect(foreign.status).toBe(404);
    await cli(['project', 'push', 'media', 'test', '--delete', '--yes']);
  });

  it("project setup clones, builds, and pulls test's database and media; the copy is identical", async () => {
    const started = await cli(['project', 'pull', 'db']);
    expect(started.exitCode, started.stderr).toBe(0);
    const [db] = await docker().listContainers({ filters: { label: [`com.docker.compose.project=${slug}`, 'com.docker.compose.service=db'] } });
    await execa('docker', ['exec', '-i', db!.Id, 'psql', '-q', '-U', 'postgres', '-d', 'app'], {
      input: "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 5000) g;",
    });
    expect((await cli(['project', 'push', 'db', 'test', '--yes'])).exitCode).toBe(0);
    // The newcomer is on another machine: here, the local environment (named after the app) goes.
    expect((await cli(['project', 'down', '--volumes'])).exitCode).toBe(0);

    const result = await cli(['project', 'setup', slug, 'copy', '--json'], parent);
    expect(result.exitCode, result.stderr).toBe(0);
    const setup = json(result);
    expect(setup).toMatchObject({ app: slug, environment: 'test', steps: { clone: 'done', files: 'done', build: 'done', database: 'done', media: 'done' } });
    expect(setup.next).toBe('cd copy && divio project up');
    const copy = join(parent, 'copy');
    expect(await treeDigests(join(copy, 'data', 'media'))).toEqual(expectedMedia);
    expect(JSON.parse(await readFile(join(copy, '.divio', 'config.json'), 'utf8'))).toEqual({ app: slug, endpoint: platform().endpoint });
    expect((await stat(join(copy, 'docker-compose.yml'))).isFile()).toBe(true);
    const [copyDb] = await docker().listContainers({ filters: { label: ['com.docker.compose.service=db', `com.docker.compose.project=${slug}`] } });
    const rows = await execa('docker', ['exec', copyDb!.Id, 'psql', '-At', '-U', 'postgres', '-d', 'app', '-c', 'SELECT count(*), sum(id) FROM notes']);
    expect(rows.stdout.trim()).toBe('5000|12502500');
    // git push from the copy works through divio's credential helper.
    const log = await execa('git', ['-C', copy, 'remote', 'get-url', 'origin']);
    expect(log.stdout).toContain(`/git/${slug}.git`);
  });

  it('project setup interrupted mid-way resumes where it stopped when run again', async () => {
    const target = join(parent, 'resumed');
    expect((await cli(['project', 'down', '--volumes'], join(parent, 'copy'))).exitCode).toBe(0);
    const child = execa('node', [BIN, 'project', 'setup', slug, 'resumed'], {
      cwd: parent,
      env: { ...env, DIVIO_CONFIG_DIR: TEST_CONFIG_DIR, CI: 'true', NO_COLOR: '1' },
      reject: false,
    });
    let output = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Building the image')) child.kill('SIGKILL');
    });
    await child;
    expect(output).toContain('Building the image');
    const resumed = await cli(['project', 'setup', slug, 'resumed', '--json'], parent);
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    expect(json(resumed).steps).toMatchObject({ clone: 'already done', build: 'done', database: 'done', media: 'done' });
    expect(await treeDigests(join(target, 'data', 'media'))).toEqual(expectedMedia);
    const again = await cli(['project', 'setup', slug, 'resumed', '--json'], parent);
    expect(json(again).steps).toMatchObject({ clone: 'already done', build: 'already done', database: 'already done', media: 'already done' });
    // A directory that is something else is refused, untouched.
    await mkdir(join(parent, 'other'));
    await writeFile(join(parent, 'other', 'keep.txt'), 'mine');
    const refused = await cli(['project', 'setup', slug, 'other'], parent);
    expect(refused.exitCode).toBe(2);
    expect(await readFile(join(parent, 'other', 'keep.txt'), 'utf8')).toBe('mine');
  });

  async function credentials(environment: string, access: 'read' | 'write') {
    const res = await request(platform().endpoint, `/v1/apps/${slug}/environments/${environment}/media/credentials`, { method: 'POST', token, body: { access } });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body as { endpoint: string; region: string; bucket: string; accessKeyId: string; secretAccessKey: string; expiresAt: string };
  }

  async function s3Keys(environment: string, access: 'read' | 'write'): Promise<string[]> {
    const c = await credentials(environment, access);
    const client = new S3Client({
      endpoint: c.endpoint,
      region: c.region,
      forcePathStyle: true,
      credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey },
      requestHandler: new NodeHttpHandler({ httpAgent: new Agent({ lookup: localhostLookup }) }),
    });
    const listed = await client.send(new ListObjectsV2Command({ Bucket: c.bucket }));
    return (listed.Contents ?? []).map((o) => o.Key ?? '');
  }
});
