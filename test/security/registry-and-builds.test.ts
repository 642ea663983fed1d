/**
 * The registry and build boundaries on the shared test platform (issue 12, §3 and §5), each as the
 * attack, the refusal it gets, and a check that nothing of the victim changed:
 * - the registry answers nothing without the platform's account (catalog, manifest, blob push) and
 *   refuses deletes even with it;
 * - a tag pushed over in the registry (as anyone who got the account would) is never deployed: live
 *   runs the digest test's build recorded;
 * - a Dockerfile cannot build FROM another app's image, by registry name or by local image id;
 * - a build's RUN step cannot connect to the router's port through the build network's gateway,
 *   while package downloads still work (the victim's own build ran npm ci on that network).
 * One victim app, deployed once; one attacker app whose deploys fail before or during the build.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { docker } from '../../src/core/docker.js';
import { createUser } from '../helpers/api.js';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';

function viaRouter(port: number, host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false, headers: { host: `${host}:${port}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function followProgress(stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve, reject) =>
    docker().modem.followProgress(stream, (error: Error | null, output: { error?: string }[]) => {
      const failed = error ?? output.find((o) => o.error);
      if (failed) reject(failed instanceof Error ? failed : new Error(String(failed.error)));
      else resolve();
    }),
  );
}

describeWithDocker('registry and builds: tenant boundaries', () => {
  const platform = usePlatform();
  let parent = '';
  let password = '';
  let registryBase = '';
  const victim = { slug: `regv-${Math.random().toString(36).slice(2, 8)}`, dir: '', env: {} as Record<string, string> };
  const attacker = { slug: `rega-${Math.random().toString(36).slice(2, 8)}`, dir: '', env: {} as Record<string, string> };
  /** The victim's test deployment: its recorded image (`ADDRESS/REPO@sha256:…`), commit and repository. */
  let victimImage = '';
  let victimCommit = '';
  let victimRepository = '';

  const cli = (who: typeof victim, args: string[]) => divio(args, { cwd: who.dir, env: who.env, timeout: 900_000 });
  const auth = (user: string, secret: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}` });
  const registry = (path: string, init: RequestInit = {}) => fetch(`${registryBase}${path}`, init);
  const withAccount = () => auth('divio', password);

  async function catalogAndTags(): Promise<{ catalog: string[]; tags: string[] }> {
    const catalog = (await (await registry('/v2/_catalog', { headers: withAccount() })).json()) as { repositories: string[] };
    const tags = (await (await registry(`/v2/${victimRepository}/tags/list`, { headers: withAccount() })).json()) as { tags: string[] };
    return { catalog: [...catalog.repositories].sort(), tags: [...tags.tags].sort() };
  }

  async function victimAnswers(stage: string): Promise<void> {
    const answer = await viaRouter(platform().port, `${stage}-${victim.slug}.localhost`, '/healthz');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ stage });
  }

  async function commitAndPush(who: typeof attacker, files: Record<string, string>): Promise<void> {
    for (const [name, content] of Object.entries(files)) await writeFile(join(who.dir, name), content);
    await execa('git', ['add', '-A'], { cwd: who.dir });
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@x', 'commit', '-qm', 'attack'], { cwd: who.dir });
    const pushed = await execa('git', ['push', '-q', 'origin', 'main'], { cwd: who.dir, env: { ...process.env, ...who.env }, reject: false });
    expect(pushed.exitCode, pushed.stderr).toBe(0);
  }

  beforeAll(async () => {
    const settings = JSON.parse(await readFile(join(platform().dataDir, 'platform.json'), 'utf8')) as { secrets: { registryPassword: string } };
    password = settings.secrets.registryPassword;
    registryBase = platform().endpoint;
    parent = await mkdtemp(join(tmpdir(), 'divio-registry-security-'));
    for (const who of [victim, attacker]) {
      const user = await createUser(platform().endpoint, await operatorToken(), who === victim ? 'victim' : 'attacker');
      who.env = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token };
      who.dir = join(parent, who.slug);
      const created = await divio(['project', 'create', who.slug], { cwd: parent, env: who.env });
      expect(created.exitCode, created.stderr).toBe(0);
    }
    const deployed = await cli(victim, ['project', 'deploy', 'test', '--json']);
    expect(deployed.exitCode, deployed.stderr).toBe(0);
    const deployment = json(deployed);
    victimImage = deployment.image;
    victimCommit = deployment.commit;
    const match = new RegExp(`^127\\.0\\.0\\.1:${platform().port}/(${victim.slug}\\.\\d+)@sha256:[0-9a-f]{64}$`).exec(victimImage);
    expect(match, `the recorded image ${victimImage} is a digest in the app's own repository`).toBeTruthy();
    victimRepository = match![1]!;
  }, 900_000);

  afterAll(async () => {
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it('answers 401 to a catalog, manifest or blob request without the account or with a wrong one, and stores nothing', async () => {
    const before = await catalogAndTags();
    expect(before.catalog).toContain(victimRepository);
    expect(before.tags).toContain(victimCommit);
    const wrong = [{}, auth('divio', `${password}x`), auth('someone', password), auth('divio', '')];
    const blob = Buffer.from(`planted by an attacker ${Math.random()}`);
    const blobDigest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    for (const headers of wrong) {
      expect((await registry('/v2/_catalog', { headers })).status).toBe(401);
      expect((await registry('/v2/', { headers })).status).toBe(401);
      const manifest = await registry(`/v2/${victimRepository}/manifests/${victimCommit}`, {
        headers: { ...headers, accept: 'application/vnd.docker.distribution.manifest.v2+json' },
      });
      expect(manifest.status).toBe(401);
      expect(await manifest.text()).not.toContain('layers');
      // A monolithic blob upload, then the start of a chunked one.
      const monolithic = await registry(`/v2/${victimRepository}/blobs/uploads/?digest=${blobDigest}`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/octet-stream' },
        body: blob,
      });
      expect(monolithic.status).toBe(401);
      expect((await registry(`/v2/${victim.slug}-planted/blobs/uploads/`, { method: 'POST', headers })).status).toBe(401);
    }
    expect((await registry(`/v2/${victimRepository}/blobs/${blobDigest}`, { method: 'HEAD', headers: withAccount() })).status).toBe(404);
    expect(await catalogAndTags()).toEqual(before);
  });

  it('refuses deletes even with the account: the recorded digest stays pullable', async () => {
    const digest = victimImage.split('@')[1]!;
    const deleted = await registry(`/v2/${victimRepository}/manifests/${digest}`, { method: 'DELETE', headers: withAccount() });
    expect(deleted.status).toBe(403);
    const still = await registry(`/v2/${victimRepository}/manifests/${digest}`, {
      method: 'HEAD',
      headers: { ...withAccount(), accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    expect(still.status).toBe(200);
  });

  it('a tag pushed over in the registry is never deployed: live runs the digest test recorded', async () => {
    // As anyone who got the account would: another image under the victim's REPO:COMMIT.
    const tag = `127.0.0.1:${platform().port}/${victimRepository}:${victimCommit}`;
    await execa('docker', ['tag', 'debian:bookworm-slim', tag]);
    try {
      await followProgress(await docker().getImage(tag).push({ authconfig: { username: 'divio', password, serveraddress: `127.0.0.1:${platform().port}` } }));
    } finally {
      // Tag and digest off the base image at once: it must not carry the victim's name for later builds.
      await execa('docker', ['rmi', tag], { reject: false });
    }
    const head = await registry(`/v2/${victimRepository}/manifests/${victimCommit}`, {
      method: 'HEAD',
      headers: { ...withAccount(), accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    const overwritten = head.headers.get('docker-content-digest');
    await execa('docker', ['rmi', `127.0.0.1:${platform().port}/${victimRepository}@${overwritten}`], { reject: false });
    expect(overwritten).toMatch(/^sha256:/);
    expect(overwritten).not.toBe(victimImage.split('@')[1]);

    const result = await cli(victim, ['project', 'deploy', 'live', '--yes', '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/already built; reusing it/);
    expect(json(result)).toMatchObject({ state: 'succeeded', image: victimImage, commit: victimCommit });
    const service = await execa('docker', ['service', 'inspect', '--format', '{{.Spec.TaskTemplate.ContainerSpec.Image}}', `${platform().name}-app-${victim.slug}-live`]);
    expect(service.stdout.trim()).toBe(victimImage);
    await victimAnswers('live');
  });

  it("refuses a Dockerfile FROM another app's image, by registry name and by local image id; the victim's image and registry entries are unchanged", async () => {
    const before = await catalogAndTags();
    const victimId = (await docker().getImage(victimImage).inspect()).Id;
    const attempts = [
      { reference: victimImage, dockerfile: `FROM ${victimImage}\nRUN cat /app/server.js\n` },
      { reference: victimId, dockerfile: `FROM ${victimId}\nRUN cat /app/server.js\n` },
      { reference: victimId.slice(7, 19), dockerfile: `FROM node:20-bookworm-slim\nCOPY --from=${victimId.slice(7, 19)} /app /stolen\n` },
    ];
    for (const { reference, dockerfile } of attempts) {
      await commitAndPush(attacker, { Dockerfile: dockerfile });
      const result = await cli(attacker, ['project', 'deploy', 'test']);
      expect(result.exitCode).not.toBe(0);
      expect(result.stderr).toContain(`the Dockerfile may not build from "${reference}"`);
      expect(result.stdout).not.toMatch(/^Step 1\//m);
    }
    expect((await docker().getImage(victimImage).inspect()).Id).toBe(victimId);
    expect(await catalogAndTags()).toEqual(before);
    await victimAnswers('test');
  });

  it("a build's RUN step cannot connect to the router's port through the build network's gateway", async () => {
    const port = platform().port;
    // The gateway from the routing table (the image has no ip tool); each outcome printed on one line.
    const probe = [
      "const net=require('net');",
      "const hex=require('fs').readFileSync('/proc/net/route','utf8').split('\\n').slice(1).map(l=>l.split('\\t')).find(f=>f[1]==='00000000')[2];",
      "const gw=hex.match(/../g).reverse().map(h=>parseInt(h,16)).join('.');",
      `const s=net.connect(${port},gw);s.setTimeout(8000);`,
      "s.on('connect',()=>{console.log('probe: CONNECTED to '+gw);process.exit(0)});",
      "s.on('error',e=>{console.log('probe: refused '+e.code+' at '+gw);process.exit(0)});",
      "s.on('timeout',()=>{console.log('probe: timed out at '+gw);process.exit(0)});",
    ].join('');
    await commitAndPush(attacker, {
      // A nonce in the step: the engine's build cache would otherwise answer with an earlier run's output.
      Dockerfile: `FROM node:20-bookworm-slim\nRUN echo probe-${Math.random().toString(36).slice(2)} && node -e "${probe.replace(/"/g, '\\"')}"\nRUN echo probe done && exit 3\n`,
    });
    const result = await cli(attacker, ['project', 'deploy', 'test']);
    expect(result.exitCode).not.toBe(0);
    expect(result.stdout).toContain('probe done');
    // The log shows the step's source too: only an outcome line has an address after its words.
    expect(result.stdout).not.toMatch(/probe: CONNECTED to \d/);
    expect(result.stdout).toMatch(/probe: (refused E[A-Z]+|timed out) at \d+\.\d+\.\d+\.\d+/);
    await victimAnswers('test');
  });
});
