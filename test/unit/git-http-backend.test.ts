/**
 * Git smart HTTP through `git http-backend`, driven by the real git CLI against a small Hono app
 * that authenticates like the platform API does: HTTP Basic with a token as the password.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import { execa } from 'execa';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { InvalidInputError } from '../../src/core/errors.js';
import { gitAccessFor, parseGitPath, serveGit, type GitAccess } from '../../src/platform/api/git/http-backend.js';
import { BareRepositories } from '../../src/platform/api/git/repositories.js';

// ---------------------------------------------------------------------------------------------
// the test server

const WRITE_TOKEN = 'dvo_write_0123456789abcdef';
const READ_TOKEN = 'dvo_read_fedcba9876543210';
const TOKENS: Record<string, { user: string; access: GitAccess }> = {
  [WRITE_TOKEN]: { user: 'alice', access: 'write' },
  [READ_TOKEN]: { user: 'alice', access: 'read' },
};
/** Which user owns each app; "vault" belongs to someone else. */
const OWNERS: Record<string, string> = { shop: 'alice', big: 'alice', vault: 'carol' };

interface LoggedRequest {
  method: string;
  path: string;
  status: number;
  contentEncoding: string | undefined;
  contentLength: string | undefined;
  gitProtocol: string | undefined;
}

function callerOf(authorization: string | undefined): { user: string; access: GitAccess } | undefined {
  const match = /^Basic (.+)$/.exec(authorization ?? '');
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const token = decoded.slice(decoded.indexOf(':') + 1);
  return Object.hasOwn(TOKENS, token) ? TOKENS[token] : undefined;
}

function gitApp(repos: BareRepositories, log: LoggedRequest[], serverErrors: string[]): Hono {
  const app = new Hono();
  app.use('*', async (c, next) => {
    await next();
    log.push({
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      contentEncoding: c.req.header('content-encoding'),
      contentLength: c.req.header('content-length'),
      gitProtocol: c.req.header('git-protocol'),
    });
  });
  app.on(['GET', 'POST'], '/git/*', async (c) => {
    const target = parseGitPath(c.req.path.slice('/git/'.length));
    const requirement = target && gitAccessFor(c.req.method, target.subpath, new URL(c.req.url).searchParams);
    if (!target || !requirement) return c.text('Not found\n', 404);
    const caller = callerOf(c.req.header('authorization'));
    if (!caller) return c.text('Authentication required\n', 401, { 'WWW-Authenticate': 'Basic realm="divio"' });
    // Someone else's app looks exactly like a missing one.
    if (OWNERS[target.slug] !== caller.user || !(await repos.exists(target.slug))) return c.text('Not found\n', 404);
    if (requirement.access === 'write' && caller.access !== 'write') return c.text('Read-only token\n', 403);
    return serveGit(c.req.raw, {
      projectRoot: repos.root,
      slug: target.slug,
      subpath: target.subpath,
      access: caller.access,
      remoteUser: caller.user,
      remoteAddr: getConnInfo(c).remote.address,
      onError: (message) => serverErrors.push(message),
    });
  });
  return app;
}

async function listen(app: Hono): Promise<{ server: Server; base: string }> {
  return new Promise((resolveListen) => {
    const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, (info) => {
      resolveListen({ server: server as Server, base: `http://127.0.0.1:${info.port}` });
    }) as Server;
  });
}

// ---------------------------------------------------------------------------------------------
// the git client

let tmp: string;
let repos: BareRepositories;
let server: Server;
let base: string;
const requestLog: LoggedRequest[] = [];
const serverErrors: string[] = [];

function clientEnv(token: string | undefined): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: join(tmp, 'home'),
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: 'Test Author',
    GIT_AUTHOR_EMAIL: 'author@example.test',
    GIT_COMMITTER_NAME: 'Test Author',
    GIT_COMMITTER_EMAIL: 'author@example.test',
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'init.defaultBranch',
    GIT_CONFIG_VALUE_0: 'main',
  };
  if (token !== undefined) {
    env.GIT_CONFIG_COUNT = '2';
    env.GIT_CONFIG_KEY_1 = 'http.extraHeader';
    env.GIT_CONFIG_VALUE_1 = `Authorization: Basic ${Buffer.from(`x-token:${token}`).toString('base64')}`;
  }
  return env;
}

async function git(args: string[], options: { cwd?: string; token?: string } = {}) {
  return execa('git', args, {
    cwd: options.cwd ?? tmp,
    env: clientEnv(options.token),
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
  });
}

async function gitOk(args: string[], options: { cwd?: string; token?: string } = {}): Promise<string> {
  const result = await git(args, options);
  if (result.exitCode !== 0) throw new Error(`git ${args.join(' ')} failed (${result.exitCode}):\n${result.stderr}`);
  return result.stdout.trim();
}

function urlOf(slug: string): string {
  return `${base}/git/${slug}.git`;
}

async function serverRef(slug: string, ref = 'refs/heads/main'): Promise<string | null> {
  const result = await git(['--git-dir', repos.repositoryPath(slug), 'rev-parse', '--verify', '--quiet', ref]);
  return result.exitCode === 0 ? result.stdout.trim() : null;
}

async function commitFile(cwd: string, name: string, content: string | Buffer, message: string): Promise<string> {
  await writeFile(join(cwd, name), content);
  await gitOk(['add', name], { cwd });
  await gitOk(['commit', '--quiet', '-m', message], { cwd });
  return gitOk(['rev-parse', 'HEAD'], { cwd });
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'divio-git-http-'));
  await mkdir(join(tmp, 'home'));
  repos = new BareRepositories(join(tmp, 'repos'));
  for (const slug of Object.keys(OWNERS)) await repos.create(slug);
  ({ server, base } = await listen(gitApp(repos, requestLog, serverErrors)));
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((done) => (server ? server.close(done) : done(undefined)));
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// the tests

describe('gitAccessFor', () => {
  const q = (query: string) => new URLSearchParams(query);

  it('needs read for the upload-pack advertisement and for fetching', () => {
    expect(gitAccessFor('GET', 'info/refs', q('service=git-upload-pack'))).toEqual({ service: 'git-upload-pack', access: 'read' });
    expect(gitAccessFor('POST', 'git-upload-pack', q(''))).toEqual({ service: 'git-upload-pack', access: 'read' });
  });

  it('needs write for the receive-pack advertisement and for pushing', () => {
    expect(gitAccessFor('GET', 'info/refs', q('service=git-receive-pack'))).toEqual({ service: 'git-receive-pack', access: 'write' });
    expect(gitAccessFor('POST', 'git-receive-pack', q(''))).toEqual({ service: 'git-receive-pack', access: 'write' });
  });

  it('decides POST by the path alone, whatever the query says', () => {
    expect(gitAccessFor('POST', 'git-upload-pack', q('service=git-receive-pack'))).toEqual({ service: 'git-upload-pack', access: 'read' });
    expect(gitAccessFor('POST', 'git-receive-pack', q('service=git-upload-pack'))).toEqual({ service: 'git-receive-pack', access: 'write' });
  });

  it('refuses an advertisement without exactly one known service', () => {
    expect(gitAccessFor('GET', 'info/refs', q(''))).toBeNull();
    expect(gitAccessFor('GET', 'info/refs', q('service=git-upload-archive'))).toBeNull();
    expect(gitAccessFor('GET', 'info/refs', q('service=git-upload-pack&service=git-receive-pack'))).toBeNull();
    expect(gitAccessFor('GET', 'info/refs', q('service=git-receive-pack&service=git-upload-pack'))).toBeNull();
  });

  it('refuses dumb HTTP and wrong methods', () => {
    for (const subpath of ['HEAD', 'objects/info/packs', 'objects/ab/cdef0123', 'info/alternates', 'config', 'git-upload-archive']) {
      expect(gitAccessFor('GET', subpath, q(''))).toBeNull();
      expect(gitAccessFor('POST', subpath, q(''))).toBeNull();
    }
    expect(gitAccessFor('POST', 'info/refs', q('service=git-upload-pack'))).toBeNull();
    expect(gitAccessFor('GET', 'git-upload-pack', q(''))).toBeNull();
    expect(gitAccessFor('HEAD', 'info/refs', q('service=git-upload-pack'))).toBeNull();
    expect(gitAccessFor('PUT', 'git-receive-pack', q(''))).toBeNull();
  });
});

describe('parseGitPath', () => {
  it('splits SLUG.git/SUBPATH for the three smart endpoints', () => {
    expect(parseGitPath('shop.git/info/refs')).toEqual({ slug: 'shop', subpath: 'info/refs' });
    expect(parseGitPath('my-app2.git/git-upload-pack')).toEqual({ slug: 'my-app2', subpath: 'git-upload-pack' });
    expect(parseGitPath('shop.git/git-receive-pack')).toEqual({ slug: 'shop', subpath: 'git-receive-pack' });
  });

  it('rejects traversal, doubled slashes, bad slugs and other paths', () => {
    for (const path of [
      '../shop.git/info/refs',
      'shop.git/../vault.git/info/refs',
      '..git/info/refs',
      '...git/info/refs',
      'a/../shop.git/info/refs',
      'shop.git//info/refs',
      '/shop.git/info/refs',
      'shop.git/info//refs',
      'shop.git/info/refs/',
      'shop/info/refs',
      'shop.git',
      'Shop.git/info/refs',
      'x.git/info/refs',
      '-shop.git/info/refs',
      '.shop.git.1234.creating.git/info/refs',
      'shop.git.git/info/refs',
      'shop.git/HEAD',
      'shop.git/objects/info/packs',
      'shop.git/info/refs\n',
      'shop%2e.git/info/refs',
      '',
    ]) {
      expect(parseGitPath(path), path).toBeNull();
    }
  });
});

describe('BareRepositories', () => {
  it('creates idempotently, reports existence and removes idempotently', async () => {
    const local = new BareRepositories(join(tmp, 'scratch-repos'));
    await local.check();
    expect(await local.exists('blog')).toBe(false);
    await local.create('blog');
    await local.create('blog');
    expect(await local.exists('blog')).toBe(true);
    const head = await readFile(join(local.repositoryPath('blog'), 'HEAD'), 'utf8');
    expect(head.trim()).toBe('ref: refs/heads/main');
    expect(await gitOk(['--git-dir', local.repositoryPath('blog'), 'config', 'core.bare'])).toBe('true');
    expect(await gitOk(['--git-dir', local.repositoryPath('blog'), 'config', 'receive.denyDeletes'])).toBe('false');
    await local.remove('blog');
    await local.remove('blog');
    expect(await local.exists('blog')).toBe(false);
  });

  it('creates concurrently without error, leaving no scratch directories', async () => {
    const local = new BareRepositories(join(tmp, 'race-repos'));
    await Promise.all([local.create('race'), local.create('race'), local.create('race')]);
    expect(await local.exists('race')).toBe(true);
    expect(await readdir(local.root)).toEqual(['race.git']);
  });

  it('refuses anything but a slug as a repository name', async () => {
    for (const slug of ['../escape', 'a/b', '.hidden', 'UPPER', 'x', '', 'shop.git', 'a\0b']) {
      await expect(repos.create(slug), slug).rejects.toBeInstanceOf(InvalidInputError);
      await expect(repos.remove(slug), slug).rejects.toBeInstanceOf(InvalidInputError);
      await expect(repos.exists(slug), slug).rejects.toBeInstanceOf(InvalidInputError);
    }
  });

  it('fails its check when the root cannot be created', async () => {
    await writeFile(join(tmp, 'a-file'), 'not a directory');
    await expect(new BareRepositories(join(tmp, 'a-file', 'repos')).check()).rejects.toThrow(/not writable/);
  });
});

describe('git over smart HTTP', () => {
  let firstCommit: string;
  let secondCommit: string;

  it('clones an empty repository', async () => {
    const result = await git(['clone', urlOf('shop'), 'work'], { token: WRITE_TOKEN });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/empty repository/);
  });

  it('pushes a first commit', async () => {
    const work = join(tmp, 'work');
    firstCommit = await commitFile(work, 'README.md', '# shop\n', 'first');
    await gitOk(['push', '--quiet', 'origin', 'HEAD:main'], { cwd: work, token: WRITE_TOKEN });
    expect(await serverRef('shop')).toBe(firstCommit);
  });

  it('clones back the same commit', async () => {
    await gitOk(['clone', '--quiet', urlOf('shop'), 'copy'], { token: READ_TOKEN });
    expect(await gitOk(['rev-parse', 'HEAD'], { cwd: join(tmp, 'copy') })).toBe(firstCommit);
    expect(await readFile(join(tmp, 'copy', 'README.md'), 'utf8')).toBe('# shop\n');
  });

  it('pushes a second commit', async () => {
    const work = join(tmp, 'work');
    secondCommit = await commitFile(work, 'app.py', 'print("hello")\n', 'second');
    await gitOk(['push', '--quiet', 'origin', 'main'], { cwd: work, token: WRITE_TOKEN });
    expect(await serverRef('shop')).toBe(secondCommit);
  });

  it('fetches with protocol v2', async () => {
    const copy = join(tmp, 'copy');
    const before = requestLog.length;
    await gitOk(['-c', 'protocol.version=2', 'fetch', '--quiet', 'origin'], { cwd: copy, token: READ_TOKEN });
    expect(await gitOk(['rev-parse', 'origin/main'], { cwd: copy })).toBe(secondCommit);
    const fetchRequests = requestLog.slice(before);
    expect(fetchRequests.length).toBeGreaterThan(0);
    expect(fetchRequests.every((r) => r.gitProtocol === 'version=2' && r.status === 200)).toBe(true);
  });

  it('fetches with protocol v0 too', async () => {
    const dir = join(tmp, 'v0');
    await gitOk(['-c', 'protocol.version=0', 'clone', '--quiet', urlOf('shop'), dir], { token: READ_TOKEN });
    expect(await gitOk(['rev-parse', 'HEAD'], { cwd: dir })).toBe(secondCommit);
  });

  it('inflates gzipped upload-pack requests', async () => {
    // Many distinct wants make the client's request big enough (over 1 KiB) to be gzipped.
    const work = join(tmp, 'work');
    for (let i = 0; i < 40; i++) {
      await commitFile(work, 'counter.txt', `${i}\n`, `count ${i}`);
      await gitOk(['tag', `v${i}`], { cwd: work });
    }
    await gitOk(['push', '--quiet', 'origin', 'main', '--tags'], { cwd: work, token: WRITE_TOKEN });
    const before = requestLog.length;
    const dir = join(tmp, 'tags');
    await gitOk(['clone', '--quiet', '--no-checkout', urlOf('shop'), dir], { token: READ_TOKEN });
    expect(await gitOk(['rev-parse', 'v39^{commit}'], { cwd: dir })).toBe(await gitOk(['rev-parse', 'HEAD'], { cwd: work }));
    const gzipped = requestLog.slice(before).filter((r) => r.path.endsWith('/git-upload-pack') && r.contentEncoding === 'gzip');
    expect(gzipped.length).toBeGreaterThan(0);
    expect(gzipped.every((r) => r.status === 200)).toBe(true);
  });

  it('streams a large push and a large clone (20 MB of random data)', async () => {
    const work = join(tmp, 'big-work');
    await gitOk(['init', '--quiet', work]);
    await gitOk(['remote', 'add', 'origin', urlOf('big')], { cwd: work });
    const data = randomBytes(20 * 1024 * 1024);
    const commit = await commitFile(work, 'blob.bin', data, 'big');
    const before = requestLog.length;
    await gitOk(['push', '--quiet', 'origin', 'HEAD:main'], { cwd: work, token: WRITE_TOKEN });
    expect(await serverRef('big')).toBe(commit);
    // Bigger than http.postBuffer: after a 4-byte probe the client sent the pack chunked, with no Content-Length.
    const pushes = requestLog.slice(before).filter((r) => r.path.endsWith('/git-receive-pack'));
    expect(pushes.some((r) => r.status === 200 && r.contentLength === undefined)).toBe(true);

    const copy = join(tmp, 'big-copy');
    await gitOk(['clone', '--quiet', urlOf('big'), copy], { token: READ_TOKEN });
    expect(await gitOk(['rev-parse', 'HEAD'], { cwd: copy })).toBe(commit);
    expect(sha256(await readFile(join(copy, 'blob.bin')))).toBe(sha256(data));
  });

  it('accepts a large push sent in one piece with Content-Length', async () => {
    const work = join(tmp, 'big-work');
    const commit = await commitFile(work, 'blob2.bin', randomBytes(20 * 1024 * 1024), 'bigger');
    const before = requestLog.length;
    await gitOk(['-c', 'http.postBuffer=67108864', 'push', '--quiet', 'origin', 'HEAD:main'], { cwd: work, token: WRITE_TOKEN });
    expect(await serverRef('big')).toBe(commit);
    const push = requestLog.slice(before).find((r) => r.path.endsWith('/git-receive-pack'));
    expect(Number(push?.contentLength)).toBeGreaterThan(20 * 1024 * 1024);
  });

  it('lets a read-only token clone but not push', async () => {
    const dir = join(tmp, 'reader');
    await gitOk(['clone', '--quiet', urlOf('shop'), dir], { token: READ_TOKEN });
    const before = await serverRef('shop');
    await commitFile(dir, 'intruder.txt', 'nope\n', 'not allowed');
    const push = await git(['push', 'origin', 'HEAD:main'], { cwd: dir, token: READ_TOKEN });
    expect(push.exitCode).not.toBe(0);
    expect(push.stderr).toMatch(/403/);
    expect(await serverRef('shop')).toBe(before);
  });

  it('lets the write token delete a branch', async () => {
    const work = join(tmp, 'work');
    await gitOk(['push', '--quiet', 'origin', 'HEAD:refs/heads/feature'], { cwd: work, token: WRITE_TOKEN });
    expect(await serverRef('shop', 'refs/heads/feature')).not.toBeNull();
    await gitOk(['push', '--quiet', 'origin', ':feature'], { cwd: work, token: WRITE_TOKEN });
    expect(await serverRef('shop', 'refs/heads/feature')).toBeNull();
  });

  it('gives nothing to a wrong or missing token', async () => {
    for (const token of ['dvo_wrong_token', undefined]) {
      const result = await git(['ls-remote', urlOf('shop')], { token });
      expect(result.exitCode, String(token)).not.toBe(0);
      expect(result.stdout).toBe('');
    }
    const response = await fetch(`${urlOf('shop')}/info/refs?service=git-upload-pack`);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Basic/);
  });

  it('answers 404 for an unknown repository and for someone else’s', async () => {
    for (const slug of ['nope', 'vault']) {
      const result = await git(['ls-remote', urlOf(slug)], { token: WRITE_TOKEN });
      expect(result.exitCode, slug).not.toBe(0);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(/not found/);
    }
  });

  it('logged no server-side git failures', () => {
    expect(serverErrors).toEqual([]);
  });
});

describe('serveGit on its own', () => {
  const auth = { remoteUser: 'alice' };

  function request(method: string, path: string, init: RequestInit = {}): Request {
    return new Request(`http://127.0.0.1/git/${path}`, { method, ...init });
  }

  it('refuses a write service to a caller granted read, whatever the route checked', async () => {
    const push = request('POST', 'shop.git/git-receive-pack', { headers: { 'content-type': 'application/x-git-receive-pack-request' }, body: '0000' });
    const pushResponse = await serveGit(push, { projectRoot: repos.root, slug: 'shop', subpath: 'git-receive-pack', access: 'read', ...auth });
    expect(pushResponse.status).toBe(403);
    const advert = request('GET', 'shop.git/info/refs?service=git-receive-pack');
    const advertResponse = await serveGit(advert, { projectRoot: repos.root, slug: 'shop', subpath: 'info/refs', access: 'read', ...auth });
    expect(advertResponse.status).toBe(403);
  });

  it('serves the advertisement for the service it was asked for', async () => {
    const advert = request('GET', 'shop.git/info/refs?service=git-upload-pack');
    const response = await serveGit(advert, { projectRoot: repos.root, slug: 'shop', subpath: 'info/refs', access: 'read', ...auth });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/x-git-upload-pack-advertisement');
    expect(await response.text()).toContain('# service=git-upload-pack');
  });

  it('answers 404 for a missing repository, a bad slug or a dumb path', async () => {
    const cases: Array<[string, string, string]> = [
      ['GET', 'nope.git/info/refs?service=git-upload-pack', 'info/refs'],
      ['GET', 'shop.git/HEAD', 'HEAD'],
      ['GET', 'shop.git/objects/info/packs', 'objects/info/packs'],
      ['GET', 'shop.git/info/refs', 'info/refs'],
    ];
    for (const [method, path, subpath] of cases) {
      const slug = path.slice(0, path.indexOf('.git'));
      const response = await serveGit(request(method, path), { projectRoot: repos.root, slug, subpath, access: 'write', ...auth });
      expect(response.status, path).toBe(404);
    }
    const traversal = request('GET', 'x/info/refs?service=git-upload-pack');
    const response = await serveGit(traversal, { projectRoot: repos.root, slug: '../repos/shop', subpath: 'info/refs', access: 'write', ...auth });
    expect(response.status).toBe(404);
  });

  it('stops git when the client goes away', { timeout: 15_000 }, async () => {
    const controller = new AbortController();
    // A push body that never ends: only killing http-backend can end its response.
    const endless = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) });
    const push = request('POST', 'shop.git/git-receive-pack', {
      headers: { 'content-type': 'application/x-git-receive-pack-request' },
      body: endless,
      signal: controller.signal,
      duplex: 'half',
    } as RequestInit);
    const response = await serveGit(push, { projectRoot: repos.root, slug: 'shop', subpath: 'git-receive-pack', access: 'write', ...auth });
    expect(response.status).toBe(200);
    controller.abort();
    const started = Date.now();
    await response.arrayBuffer().catch(() => undefined);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
