/**
 * The loop a user runs by habit, on the shared test platform: `project create`, edit, commit, plain
 * `git push` and `git pull` (no arguments: create sets the upstream); `.env.local` never committed;
 * and every platform command pointed at an app this token cannot see fails with one clear error and
 * a non-zero exit, --json included.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';
import { createUser, request, type TestUser } from '../helpers/api.js';

const GIT_IDENTITY = ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid'];

describeWithDocker('the daily loop', () => {
  const platform = usePlatform();
  let parent: string;
  let dir: string;
  let owner: TestUser;
  let stranger: TestUser;
  let ownerEnv: Record<string, string>;
  const slug = `loop-${Math.random().toString(36).slice(2, 8)}`;

  beforeAll(async () => {
    const operator = await operatorToken();
    owner = await createUser(platform().endpoint, operator, 'looper');
    stranger = await createUser(platform().endpoint, operator, 'stranger');
    ownerEnv = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: owner.token };
    parent = await mkdtemp(join(tmpdir(), 'divio-loop-'));
    dir = join(parent, slug);
    const created = await divio(['project', 'create', slug], { cwd: parent, env: ownerEnv });
    expect(created.exitCode, created.stderr).toBe(0);
  });
  afterAll(async () => {
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  const gitIn = (cwd: string, args: string[]) =>
    execa('git', args, { cwd, env: { ...process.env, ...ownerEnv, GIT_TERMINAL_PROMPT: '0' }, reject: false, stdin: 'ignore' });

  it('plain `git push` and `git pull` work in a created project (the upstream is set)', async () => {
    const upstream = await gitIn(dir, ['rev-parse', '--abbrev-ref', '--symbolic-full-name', '@{upstream}']);
    expect(upstream.stdout.trim()).toBe('origin/main');

    await writeFile(join(dir, 'NOTES.md'), 'edited by habit\n');
    expect((await gitIn(dir, ['add', 'NOTES.md'])).exitCode).toBe(0);
    expect((await gitIn(dir, [...GIT_IDENTITY, 'commit', '-qm', 'an edit'])).exitCode).toBe(0);
    const pushed = await gitIn(dir, ['push', '--quiet']);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    const head = (await gitIn(dir, ['rev-parse', 'HEAD'])).stdout.trim();
    const remote = await gitIn(dir, ['ls-remote', 'origin', 'refs/heads/main']);
    expect(remote.stdout.split(/\s/)[0]).toBe(head);

    // A second checkout pushes; the first pulls with no arguments and gets it.
    const other = join(parent, 'second');
    // The credential helper `create` configured, handed to the clone the way `project setup` does.
    const helper = (await gitIn(dir, ['config', '--local', '--get-regexp', '^credential\\.'])).stdout.trim();
    const [helperKey, ...helperValue] = helper.split(' ');
    const url = (await gitIn(dir, ['remote', 'get-url', 'origin'])).stdout.trim();
    const cloned = await gitIn(parent, ['-c', `${helperKey}=${helperValue.join(' ')}`, 'clone', '--quiet', url, other]);
    expect(cloned.exitCode, cloned.stderr).toBe(0);
    await gitIn(other, ['config', helperKey!, helperValue.join(' ')]);
    await writeFile(join(other, 'NOTES.md'), 'edited elsewhere\n');
    await gitIn(other, [...GIT_IDENTITY, 'commit', '-qam', 'from elsewhere']);
    expect((await gitIn(other, ['push', '--quiet'])).exitCode).toBe(0);
    const pulled = await gitIn(dir, [...GIT_IDENTITY, 'pull', '--quiet', '--ff-only']);
    expect(pulled.exitCode, pulled.stderr).toBe(0);
    expect(await readFile(join(dir, 'NOTES.md'), 'utf8')).toBe('edited elsewhere\n');
  });

  it('.env.local is ignored, never committed', async () => {
    const tracked = (await gitIn(dir, ['ls-files'])).stdout.split('\n');
    expect(tracked).toContain('divio.yaml');
    expect(tracked).not.toContain('.env.local');
    await writeFile(join(dir, '.env.local'), 'MY_SECRET=kept-local\n');
    expect((await gitIn(dir, ['check-ignore', '-q', '.env.local'])).exitCode).toBe(0);
    expect((await gitIn(dir, ['status', '--porcelain'])).stdout).not.toContain('.env.local');
  });

  it('push media prints its summary once; --delete from an empty data/media is refused and the bucket keeps its files', async () => {
    const media = join(dir, 'data', 'media');
    await mkdir(media, { recursive: true });
    await writeFile(join(media, 'photo.txt'), 'a photo');
    const pushed = await divio(['project', 'push', 'media', 'test'], { cwd: dir, env: ownerEnv });
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    expect(`${pushed.stdout}\n${pushed.stderr}`.match(/Pushed \d+ file\(s\)/g)).toHaveLength(1);

    await rm(join(media, 'photo.txt'));
    const refused = await divio(['project', 'push', 'media', 'test', '--delete', '--yes'], { cwd: dir, env: ownerEnv });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/refusing --delete: .* is empty, so every one of the 1 file\(s\)/);
    const pulled = json(await divio(['project', 'pull', 'media', 'test', '--json'], { cwd: dir, env: ownerEnv }));
    expect(pulled.transferred.map((file: { key: string }) => file.key)).toEqual(['photo.txt']);
    expect(await readFile(join(media, 'photo.txt'), 'utf8')).toBe('a photo');
  });

  it("commands act only through the project's own platform, and confirmations name it", async () => {
    // A login stored for this platform, with no DIVIO_* variables: what a user has.
    const configDir = await mkdtemp(join(tmpdir(), 'divio-loop-login-'));
    const asUser = { DIVIO_CONFIG_DIR: configDir };
    const login = await divio(['login', '--endpoint', platform().endpoint, '--token', owner.token], { cwd: dir, env: asUser });
    expect(login.exitCode, login.stderr).toBe(0);
    const listed = await divio(['project', 'env-vars', 'list', '-e', 'test', '--json'], { cwd: dir, env: asUser });
    expect(listed.exitCode, listed.stderr).toBe(0);

    const confirm = await divio(['project', 'deploy', 'live'], { cwd: dir, env: asUser });
    expect(confirm.exitCode).toBe(2);
    expect(confirm.stderr).toContain(`Deploying ${slug} to live, on the platform at ${platform().endpoint} needs confirmation`);

    // The project now says it lives elsewhere: nothing is done through this login, or through DIVIO_ENDPOINT.
    const configPath = join(dir, '.divio', 'config.json');
    const original = await readFile(configPath, 'utf8');
    const elsewhere = 'http://127.0.0.1:9';
    await writeFile(configPath, JSON.stringify({ ...JSON.parse(original), endpoint: elsewhere }));
    try {
      for (const env of [asUser, ownerEnv]) {
        const set = await divio(['project', 'env-vars', 'set', '-e', 'test', 'WRONG_PLATFORM=1', '--json'], { cwd: dir, env });
        expect(set.exitCode).not.toBe(0);
        expect(json(set).error.message).toMatch(new RegExp(`This project is on ${elsewhere.replace(/[.:]/g, '\\$&')}, but divio is using ${platform().endpoint.replace(/[.:]/g, '\\$&')}`));
        expect(json(set).error.hint).toMatch(/divio login --endpoint http:\/\/127\.0\.0\.1:9/);
        const push = await divio(['project', 'push', 'db', 'test', '--yes'], { cwd: dir, env });
        expect(push.exitCode).not.toBe(0);
        expect(push.stderr).toMatch(/This project is on/);
      }
      const vars = await request(platform().endpoint, `/v1/apps/${slug}/environments/test/env-vars`, { token: owner.token });
      expect(JSON.stringify(vars.body)).not.toContain('WRONG_PLATFORM');
    } finally {
      await writeFile(configPath, original);
      await rm(configDir, { recursive: true, force: true });
    }
  });

  it('every platform command on an app this token cannot see fails with one clear error, --json included', async () => {
    // The owner's checkout, used with a stranger's token: the app is invisible to it.
    const strangerEnv = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: stranger.token };
    const before = await request(platform().endpoint, `/v1/apps/${slug}`, { token: owner.token });
    expect(before.status).toBe(200);
    // logs streams text and has no --json; every other one answers JSON.
    const withoutJson = new Set(['logs']);
    const commands: string[][] = [
      ['project', 'status'],
      ['project', 'deployments'],
      ['project', 'deploy', 'test'],
      ['project', 'rollback', 'test'],
      ['project', 'env-vars', 'list', '-e', 'test'],
      ['project', 'env-vars', 'set', '-e', 'test', 'PLANTED=1'],
      ['project', 'env-vars', 'unset', '-e', 'test', 'PLANTED'],
      ['project', 'configure', 'test', '--replicas', '2'],
      ['project', 'logs', 'test'],
      ['project', 'open', 'test'],
      ['project', 'backups', 'list', 'test'],
      ['project', 'push', 'media', 'test', '--yes'],
      ['project', 'pull', 'media', 'test'],
    ];
    for (const command of commands) {
      const plain = await divio(command, { cwd: dir, env: strangerEnv, timeout: 120_000 });
      expect(plain.exitCode, `${command.join(' ')}: ${plain.stdout}${plain.stderr}`).not.toBe(0);
      expect(plain.stderr, command.join(' ')).toMatch(new RegExp(`App "${slug}" not found`));
      expect(plain.stdout, command.join(' ')).toBe('');

      if (withoutJson.has(command[1]!)) continue;
      const asJson = await divio([...command, '--json'], { cwd: dir, env: strangerEnv, timeout: 120_000 });
      expect(asJson.exitCode, command.join(' ')).not.toBe(0);
      const answer = json(asJson);
      expect(Object.keys(answer), command.join(' ')).toEqual(['error']);
      expect(answer.error.message, command.join(' ')).toMatch(new RegExp(`App "${slug}" not found`));
      expect(answer.error.hint, command.join(' ')).toMatch(/divio project list/);
    }
    // Nothing of the owner's app changed.
    const vars = await request(platform().endpoint, `/v1/apps/${slug}/environments/test/env-vars`, { token: owner.token });
    expect(vars.status).toBe(200);
    expect(JSON.stringify(vars.body)).not.toContain('PLANTED');
    const after = await request(platform().endpoint, `/v1/apps/${slug}`, { token: owner.token });
    expect(after.body).toEqual(before.body);
  });
});
