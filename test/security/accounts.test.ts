/**
 * Accounts against the shared test platform: a disabled user is refused (API and git) and keeps
 * everything; revoking a user's tokens kills every one of them; an expired token is refused with a
 * message that says so; and a non-operator can do none of this to anyone.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';
import { createApp, createUser, request, type TestUser } from '../helpers/api.js';

const scratch = mkdtempSync(join(tmpdir(), 'divio-accounts-'));

function git(args: string[], cwd: string, token?: string) {
  return execa('git', args, {
    cwd,
    reject: false,
    env: {
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_NOSYSTEM: '1',
      HOME: scratch,
      ...(token
        ? { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.extraHeader', GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x:${token}`).toString('base64')}` }
        : {}),
    },
  });
}

/** The git advertisement as git asks for it first; its status is what decides a clone. */
function gitProbe(gitUrl: string, token: string) {
  return fetch(`${gitUrl}/info/refs?service=git-upload-pack`, { headers: { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` } });
}

describeWithDocker('accounts', () => {
  const platform = usePlatform();
  let endpoint: string;
  let operator: string;
  const configDir = mkdtempSync(join(tmpdir(), 'divio-accounts-config-'));
  const cli = (args: string[], token: string) =>
    divio(args, { env: { DIVIO_CONFIG_DIR: configDir, DIVIO_ENDPOINT: endpoint, DIVIO_TOKEN: token } });

  beforeAll(async () => {
    endpoint = platform().endpoint;
    operator = await operatorToken();
  });
  afterAll(() => {
    rmSync(scratch, { recursive: true, force: true });
    rmSync(configDir, { recursive: true, force: true });
  });

  const users = async () => (await request(endpoint, '/v1/users', { token: operator })).body.users as { name: string; disabledAt: string | null; liveTokens: number }[];

  it("a disabled user's API calls and git clone and push get 401 saying so; nothing of theirs changes; enabled again they work", async () => {
    const carol = await createUser(endpoint, operator, 'carol');
    const slug = await createApp(endpoint, carol.token, 'carol-app');
    const before = (await request(endpoint, `/v1/apps/${slug}`, { token: carol.token })).body;
    const work = join(scratch, 'carol-work');
    expect((await git(['clone', before.gitUrl, work], scratch, carol.token)).exitCode).toBe(0);
    writeFileSync(join(work, 'README.md'), 'carol\n');
    await git(['add', '.'], work);
    expect((await git(['-c', 'user.name=c', '-c', 'user.email=c@x', 'commit', '-m', 'first'], work)).exitCode).toBe(0);
    expect((await git(['push', 'origin', 'HEAD:main'], work, carol.token)).exitCode).toBe(0);
    const head = (await git(['rev-parse', 'HEAD'], work)).stdout.trim();

    const disabled = await cli(['platform', 'users', 'disable', carol.name, '--json'], operator);
    expect(disabled.exitCode, disabled.stderr).toBe(0);
    expect(json(disabled).disabledAt).toMatch(/^\d{4}-/);
    expect((await users()).find((u) => u.name === carol.name)?.disabledAt).toBeTruthy();

    // The very next request, read or write, is refused, with the reason.
    for (const [method, path] of [['GET', '/v1/apps'], ['GET', `/v1/apps/${slug}`], ['DELETE', `/v1/apps/${slug}`], ['POST', '/v1/tokens']] as const) {
      const res = await request(endpoint, path, { method, token: carol.token, body: method === 'POST' ? {} : undefined });
      expect(res.status, `${method} ${path}`).toBe(401);
      expect(res.body.error.code).toBe('account_disabled');
      expect(res.body.error.message).toContain(`"${carol.name}" is disabled`);
      expect(res.body.error.hint).toContain(`divio platform users enable ${carol.name}`);
    }
    const probe = await gitProbe(before.gitUrl, carol.token);
    expect(probe.status).toBe(401);
    expect(await probe.text()).toContain('is disabled');
    const cloned = await git(['clone', before.gitUrl, join(scratch, 'carol-refused')], scratch, carol.token);
    expect(cloned.exitCode).not.toBe(0);
    writeFileSync(join(work, 'README.md'), 'while disabled\n');
    await git(['-c', 'user.name=c', '-c', 'user.email=c@x', 'commit', '-am', 'second'], work);
    const pushed = await git(['push', 'origin', 'HEAD:main'], work, carol.token);
    expect(pushed.exitCode).not.toBe(0);
    const whoami = await cli(['whoami'], carol.token);
    expect(whoami.exitCode).not.toBe(0);
    expect(whoami.stderr).toContain('is disabled');
    expect(whoami.stderr).toContain('divio platform users enable');

    const enabled = await cli(['platform', 'users', 'enable', carol.name, '--json'], operator);
    expect(enabled.exitCode, enabled.stderr).toBe(0);
    expect(json(enabled).disabledAt).toBeNull();
    // Everything is as it was: the app, its environments, the repository's head (the push never landed).
    const after = await request(endpoint, `/v1/apps/${slug}`, { token: carol.token });
    expect(after.status).toBe(200);
    expect(after.body).toEqual(before);
    const again = join(scratch, 'carol-again');
    expect((await git(['clone', before.gitUrl, again], scratch, carol.token)).exitCode).toBe(0);
    expect((await git(['rev-parse', 'HEAD'], again)).stdout.trim()).toBe(head);
  });

  it('revoke-tokens makes every token of the user answer 401 at once, git included; a token issued after works', async () => {
    const dave = await createUser(endpoint, operator, 'dave');
    const slug = await createApp(endpoint, dave.token, 'dave-app');
    const read = (await request(endpoint, '/v1/tokens', { method: 'POST', token: dave.token, body: { scope: 'read' } })).body.token as string;
    const expiring = (await request(endpoint, '/v1/tokens', { method: 'POST', token: dave.token, body: { expiresIn: '30d' } })).body.token as string;
    const tokens = [dave.token, read, expiring];
    for (const token of tokens) expect((await request(endpoint, '/v1/me', { token })).status).toBe(200);

    const revoked = await cli(['platform', 'users', 'revoke-tokens', dave.name, '--json'], operator);
    expect(revoked.exitCode, revoked.stderr).toBe(0);
    expect(json(revoked)).toEqual({ user: dave.name, revoked: 3 });
    const gitUrl = `${endpoint}/git/${slug}.git`;
    for (const token of tokens) {
      const res = await request(endpoint, `/v1/apps/${slug}`, { token });
      expect(res.status).toBe(401);
      expect(res.body.error.message).toMatch(/revoked/);
      expect((await gitProbe(gitUrl, token)).status).toBe(401);
    }
    expect((await users()).find((u) => u.name === dave.name)?.liveTokens).toBe(0);

    // The operator hands out a new one; dave's app was never touched.
    const issued = await cli(['platform', 'users', 'issue-token', dave.name, '--scope', 'read', '--expires-in', '1h', '--json'], operator);
    expect(issued.exitCode, issued.stderr).toBe(0);
    const fresh = json(issued);
    expect(fresh.info.scope).toBe('read');
    expect(Date.parse(fresh.info.expiresAt) - Date.now()).toBeGreaterThan(3500_000);
    const app = await request(endpoint, `/v1/apps/${slug}`, { token: fresh.token });
    expect(app.status).toBe(200);
    expect(app.body.environments.map((e: { name: string }) => e.name)).toEqual(['test', 'live']);
    // Still read-only as issued.
    expect((await request(endpoint, `/v1/apps/${slug}`, { method: 'DELETE', token: fresh.token })).status).toBe(403);
  });

  it('an expired token answers 401 saying it expired and how to get a new one; login and whoami show the expiry', async () => {
    const erin = await createUser(endpoint, operator, 'erin');
    const short = await request(endpoint, '/v1/tokens', { method: 'POST', token: erin.token, body: { expiresIn: 6 } });
    expect(short.status).toBe(201);
    const token = short.body.token as string;
    const expiresAt = Date.parse(short.body.info.expiresAt);
    expect(expiresAt - Date.now()).toBeGreaterThan(0);
    expect(expiresAt - Date.now()).toBeLessThanOrEqual(6500);
    const me = await cli(['whoami', '--json'], token);
    expect(me.exitCode, me.stderr).toBe(0);
    expect(json(me).token.expiresAt).toBe(short.body.info.expiresAt);

    // Log in with a lifetime: a new token of the same scope is stored, the one given is untouched.
    const loggedIn = await divio(['login', '--token', erin.token, '--endpoint', endpoint, '--expires-in', '8s', '--json'], {
      env: { DIVIO_CONFIG_DIR: configDir },
    });
    expect(loggedIn.exitCode, loggedIn.stderr).toBe(0);
    expect(json(loggedIn)).toMatchObject({ user: erin.name, scope: 'write' });
    const loginExpiresAt = Date.parse(json(loggedIn).expiresAt);
    expect(loginExpiresAt - Date.now()).toBeLessThanOrEqual(8500);
    const stored = await divio(['whoami', '--json'], { env: { DIVIO_CONFIG_DIR: configDir } });
    expect(stored.exitCode, stored.stderr).toBe(0);
    expect(json(stored).token.expiresAt).toBe(json(loggedIn).expiresAt);
    expect(json(stored).token.id).not.toBe((await request(endpoint, '/v1/me', { token: erin.token })).body.token.id);

    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now(), loginExpiresAt - Date.now()) + 1500));
    const refused = await request(endpoint, '/v1/me', { token });
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('token_expired');
    expect(refused.body.error.message).toContain(`expired at ${short.body.info.expiresAt}`);
    expect(refused.body.error.message).toContain('divio login --token');
    expect((await request(endpoint, '/v1/tokens', { method: 'POST', token, body: {} })).status).toBe(401);
    const app = await createApp(endpoint, erin.token, 'erin-app');
    const probe = await gitProbe(`${endpoint}/git/${app}.git`, token);
    expect(probe.status).toBe(401);
    expect(await probe.text()).toContain('expired');
    const expiredLogin = await divio(['whoami'], { env: { DIVIO_CONFIG_DIR: configDir } });
    expect(expiredLogin.exitCode).not.toBe(0);
    expect(expiredLogin.stderr).toContain('expired');
    // The token that made them is unaffected.
    expect((await request(endpoint, '/v1/me', { token: erin.token })).status).toBe(200);

    // Lifetimes that cannot be: refused naming the field, nothing issued.
    const count = async () => (await request(endpoint, '/v1/tokens', { token: erin.token })).body.tokens.length as number;
    const tokensBefore = await count();
    for (const body of [
      { expiresIn: 0 },
      { expiresIn: '0s' },
      { expiresIn: '11y' },
      { expiresIn: 1.5 },
      { expiresAt: new Date(Date.now() - 1000).toISOString() },
      { expiresAt: '9999-01-01T00:00:00Z' },
      { expiresIn: '1h', expiresAt: new Date(Date.now() + 3600_000).toISOString() },
    ]) {
      const res = await request(endpoint, '/v1/tokens', { method: 'POST', token: erin.token, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.field, JSON.stringify(body)).toMatch(/^body\.expires(In|At)$/);
    }
    expect(await count()).toBe(tokensBefore);
    const badFlag = await cli(['platform', 'users', 'issue-token', erin.name, '--expires-in', 'soon'], operator);
    expect(badFlag.exitCode).toBe(4);
    expect(badFlag.stderr).toContain('not a token lifetime');
  });

  it('a non-operator calling the user admin routes gets 403 and changes nothing; operators cannot lock themselves out', async () => {
    const mallory = await createUser(endpoint, operator, 'mallory');
    const victim: TestUser = await createUser(endpoint, operator, 'victim');
    const victimTokens = async () => (await request(endpoint, '/v1/tokens', { token: victim.token })).body.tokens.map((t: { id: string }) => t.id).sort();
    const tokensBefore = await victimTokens();
    const attempts = [
      ['POST', `/v1/users/${victim.name}/disable`, undefined],
      ['POST', `/v1/users/${victim.name}/enable`, undefined],
      ['DELETE', `/v1/users/${victim.name}/tokens`, undefined],
      ['POST', `/v1/users/${victim.name}/tokens`, {}],
      ['POST', `/v1/users/${mallory.name}/tokens`, {}],
      ['GET', '/v1/users', undefined],
    ] as const;
    for (const [method, path, body] of attempts) {
      const res = await request(endpoint, path, { method, token: mallory.token, body });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.body.error.message).toBe('Only the platform operator may do this');
    }
    for (const [args, label] of [
      [['platform', 'users', 'disable', victim.name], 'disable'],
      [['platform', 'users', 'revoke-tokens', victim.name], 'revoke-tokens'],
      [['platform', 'users', 'issue-token', victim.name], 'issue-token'],
      [['platform', 'users', 'list'], 'list'],
    ] as const) {
      const res = await cli([...args], mallory.token);
      expect(res.exitCode, label).toBe(3);
      expect(res.stderr, label).toContain('Only the platform operator may do this');
    }
    // The victim works as before, with exactly the tokens it had.
    expect((await request(endpoint, '/v1/me', { token: victim.token })).status).toBe(200);
    expect(await victimTokens()).toEqual(tokensBefore);
    const listed = (await users()).find((u) => u.name === victim.name);
    expect(listed).toMatchObject({ disabledAt: null, liveTokens: 1 });

    // An operator's read-only token may do none of it either.
    const ro = (await request(endpoint, '/v1/tokens', { method: 'POST', token: operator, body: { scope: 'read', expiresIn: '5m' } })).body.token;
    expect((await request(endpoint, '/v1/users', { token: ro })).status).toBe(403);
    expect((await request(endpoint, `/v1/users/${victim.name}/disable`, { method: 'POST', token: ro })).status).toBe(403);

    // An operator cannot disable themselves or revoke all of their own tokens.
    const me = (await request(endpoint, '/v1/me', { token: operator })).body.user.name;
    const self = await request(endpoint, `/v1/users/${me}/disable`, { method: 'POST', token: operator });
    expect(self.status).toBe(409);
    expect(self.body.error.message).toMatch(/your own account/);
    expect((await request(endpoint, `/v1/users/${me}/tokens`, { method: 'DELETE', token: operator })).status).toBe(409);
    expect((await request(endpoint, '/v1/me', { token: operator })).status).toBe(200);
    // Unknown users: 404, not a silent success.
    const missing = await request(endpoint, '/v1/users/nobody-here/disable', { method: 'POST', token: operator });
    expect(missing.status).toBe(404);
    expect(missing.body.error.message).toBe('User "nobody-here" not found');

    const list = await cli(['platform', 'users', 'list', '--json'], operator);
    expect(list.exitCode, list.stderr).toBe(0);
    expect(json(list).users.map((u: { name: string }) => u.name)).toEqual(expect.arrayContaining([mallory.name, victim.name]));
  });
});
