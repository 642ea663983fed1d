/**
 * The builder against a real engine and a real registry:2 of its own (with an htpasswd account, as
 * the platform's): an app's commit is built from its archive (never the working tree), pushed with
 * the account, returned by digest, and reused only by the digest recorded for it; a Dockerfile
 * naming another app's image is refused; builds stop at their time and memory limits; failures say why.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import Docker from 'dockerode';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { findFreePort } from '../../src/core/ports.js';
import { BuildError, buildAppImage, type BuildOptions } from '../../src/platform/api/deploy/builder.js';
import { manifestDigest, manifestExists, type RegistryAccess } from '../../src/platform/api/deploy/registry.js';
import { BareRepositories } from '../../src/platform/api/git/repositories.js';
import { describeWithDocker } from '../helpers/docker.js';

const GIT_IDENTITY = {
  GIT_AUTHOR_NAME: 'Builder Test',
  GIT_AUTHOR_EMAIL: 'builder@example.invalid',
  GIT_COMMITTER_NAME: 'Builder Test',
  GIT_COMMITTER_EMAIL: 'builder@example.invalid',
};

/** Unique per run, so no step is served from an earlier run's build cache and the output shows. */
const RUN_ID = randomBytes(4).toString('hex');

async function waitForRegistry(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      // 401: it answers, and wants the account.
      if ((await fetch(`${url}/v2/`)).status === 401) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`registry at ${url} did not start`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describeWithDocker('builder: commit archive → image in the registry', () => {
  const docker = new Docker();
  const slug = `builder-${RUN_ID}`;
  const appId = String(100_000 + Math.floor(Math.random() * 800_000));
  const repository = `${slug}.${appId}`;
  const password = randomBytes(18).toString('base64url');
  const registryName = `divio-builder-test-${RUN_ID}`;
  const builtImages = new Set<string>();
  /** Layers a failed build left behind: untagged, so only their ids from the log find them. */
  const leftoverLayers = new Set<string>();
  let registryAddress = '';
  let registry: RegistryAccess;
  let scratch = '';
  let bare = '';
  let work = '';

  const git = async (args: string[]) => (await execa('git', args, { cwd: work, env: GIT_IDENTITY, stdin: 'ignore' })).stdout.trim();

  /** Writes the files, commits them, pushes to the bare repository and returns the commit id. */
  async function commitAndPush(files: Record<string, string | null>): Promise<string> {
    for (const [name, content] of Object.entries(files)) {
      if (content === null) await git(['rm', '--quiet', name]);
      else {
        await writeFile(join(work, name), content);
        await git(['add', name]);
      }
    }
    await git(['commit', '--quiet', '-m', Object.keys(files).join(', ')]);
    await git(['push', '--quiet', bare, 'HEAD:main']);
    return git(['rev-parse', 'HEAD']);
  }

  function build(commit: string, overrides: Partial<BuildOptions> = {}) {
    const lines: string[] = [];
    const promise = buildAppImage({
      repositoryPath: bare,
      commit,
      slug,
      appId,
      registry,
      docker,
      log: (line) => lines.push(line),
      ...overrides,
    });
    return { lines, promise };
  }

  async function buildFailure(commit: string, overrides: Partial<BuildOptions> = {}) {
    const { lines, promise } = build(commit, overrides);
    const error = await promise.then(
      () => expect.fail('the build should have failed'),
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(BuildError);
    for (const line of lines) {
      const layer = /^ ---> ([0-9a-f]{12})$/.exec(line)?.[1];
      if (layer) leftoverLayers.add(layer);
    }
    return { error: error as BuildError, lines };
  }

  beforeAll(async () => {
    const port = await findFreePort({ range: [18900, 18999] });
    scratch = await mkdtemp(join(tmpdir(), 'divio-builder-'));
    await writeFile(join(scratch, 'htpasswd'), `divio:${bcrypt.hashSync(password, 10)}\n`);
    await execa('docker', [
      'run', '-d', '--name', registryName, '--label', 'divio.test=builder', '-p', `127.0.0.1:${port}:5000`,
      '-e', 'REGISTRY_AUTH=htpasswd', '-e', 'REGISTRY_AUTH_HTPASSWD_REALM=builder-test', '-e', 'REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd',
      '-v', `${join(scratch, 'htpasswd')}:/auth/htpasswd:ro`, 'registry:2',
    ]);
    registryAddress = `127.0.0.1:${port}`;
    registry = { address: registryAddress, url: `http://127.0.0.1:${port}`, username: 'divio', password };
    const repositories = new BareRepositories(join(scratch, 'repositories'));
    await repositories.create(slug);
    bare = repositories.repositoryPath(slug);
    work = join(scratch, 'work');
    await mkdir(work);
    await git(['init', '--quiet', '--initial-branch=main']);
    await waitForRegistry(registry.url);
  });

  afterAll(async () => {
    // By label too: an image whose test failed before it was recorded is still this suite's.
    const labelled = (await execa('docker', ['images', '-q', '--filter', `label=divio.app=${slug}`], { reject: false })).stdout.split('\n');
    const images = [...builtImages, ...labelled].filter(Boolean);
    if (images.length) await execa('docker', ['rmi', '-f', ...new Set(images)], { reject: false });
    // Never the base image: its id appears in the log after FROM, and other tags share it.
    const base = (await execa('docker', ['image', 'inspect', '--format', '{{.Id}}', 'debian:bookworm-slim'], { reject: false })).stdout;
    const layers = [...leftoverLayers].filter((id) => !base.includes(`sha256:${id}`));
    if (layers.length) await execa('docker', ['rmi', ...layers], { reject: false });
    await execa('docker', ['rm', '-f', '-v', registryName], { reject: false });
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  let firstCommit = '';
  let firstImage = '';

  it('builds the commit from its archive, streams the build log, pushes, and leaves untracked files out', async () => {
    firstCommit = await commitAndPush({
      'Dockerfile': ['FROM debian:bookworm-slim', 'COPY . /app', `RUN echo built-marker-${RUN_ID}`, ''].join('\n'),
      'tracked.txt': 'in the commit\n',
    });
    await writeFile(join(work, 'untracked.txt'), 'only in the working clone\n');

    const { lines, promise } = build(firstCommit);
    const result = await promise;
    builtImages.add(result.image);

    expect(result.built).toBe(true);
    expect(result.image).toMatch(new RegExp(`^${registryAddress.replace(/\./g, '\\.')}/${repository.replace(/\./g, '\\.')}@sha256:[0-9a-f]{64}$`));
    firstImage = result.image;
    // The tag it was pushed under names the same manifest, for now.
    expect(await manifestDigest(registry, repository, firstCommit)).toBe(result.image.split('@')[1]);
    // The classic builder adds the labels as steps of their own: only the step's text is certain.
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^Step 3/\\d+ : RUN echo built-marker-${RUN_ID}$`)));
    expect(lines).toContain(`built-marker-${RUN_ID}`);
    expect(lines.every((line) => !line.endsWith('\n') && !line.includes('\r'))).toBe(true);
    // Push progress: one line per state of each layer, not one per chunk of bytes.
    const layerLines = lines.filter((line) => /^[0-9a-f]{12}: /.test(line));
    expect(layerLines.some((line) => /: Pushed$/.test(line))).toBe(true);
    expect(new Set(layerLines).size).toBe(layerLines.length);
    expect(await manifestExists(registry, repository, firstCommit)).toBe(true);

    const labels = (await docker.getImage(result.image).inspect()).Config.Labels;
    expect(labels).toMatchObject({ 'divio.app': slug, 'divio.app-id': appId, 'divio.commit': firstCommit });
    const listing = (await execa('docker', ['run', '--rm', result.image, 'ls', '/app'])).stdout.split('\n');
    expect(listing).toEqual(expect.arrayContaining(['Dockerfile', 'tracked.txt']));
    expect(listing).not.toContain('untracked.txt');

    // What the runtime will do on any node: pull the image back from the registry, by digest, with the account.
    await execa('docker', ['rmi', result.image]);
    const pull = await docker.pull(result.image, { authconfig: { username: 'divio', password, serveraddress: registryAddress } });
    await new Promise((resolve, reject) => docker.modem.followProgress(pull, (error) => (error ? reject(error) : resolve(undefined))));
    expect((await docker.getImage(result.image).inspect()).RepoDigests).toContain(result.image);
  });

  it('answers nothing without the account, and the wrong one gets 401 too', async () => {
    expect((await fetch(`${registry.url}/v2/_catalog`)).status).toBe(401);
    const wrong = Buffer.from(`divio:${password}x`).toString('base64');
    expect((await fetch(`${registry.url}/v2/_catalog`, { headers: { authorization: `Basic ${wrong}` } })).status).toBe(401);
    await expect(manifestExists({ ...registry, password: 'wrong-password-entirely' }, repository, firstCommit)).rejects.toThrow(/refused the platform's credentials/);
  });

  it('reuses the recorded digest of a commit built before, even after its tag was pushed over', async () => {
    expect(firstCommit).not.toBe('');
    // Anyone holding the account pushes another image under the app's REPO:COMMIT.
    const tag = `${registryAddress}/${repository}:${firstCommit}`;
    await execa('docker', ['tag', 'debian:bookworm-slim', tag]);
    builtImages.add(tag);
    const push = await docker.getImage(tag).push({ authconfig: { username: 'divio', password, serveraddress: registryAddress } });
    await new Promise((resolve, reject) => docker.modem.followProgress(push, (error) => (error ? reject(error) : resolve(undefined))));
    const overwritten = await manifestDigest(registry, repository, firstCommit);
    // Untagged at once (tag and digest): debian:bookworm-slim must not carry this app's name for later builds.
    await execa('docker', ['rmi', tag]);
    await execa('docker', ['rmi', `${registryAddress}/${repository}@${overwritten}`], { reject: false });
    builtImages.delete(tag);
    expect(overwritten).not.toBe(firstImage.split('@')[1]);

    const { lines, promise } = build(firstCommit, { recorded: firstImage });
    const result = await promise;
    expect(result).toMatchObject({ image: firstImage, built: false });
    expect(result.seconds).toBeLessThan(5);
    expect(lines).toEqual([`Image for ${firstCommit} already built; reusing it`]);
  });

  it('never reuses by tag: without a recorded digest (or with one of another repository) the commit is built again', async () => {
    const other = firstImage.replace(`/${repository}@`, `/someone-else.1@`);
    const { promise } = build(firstCommit, { recorded: other });
    const result = await promise;
    builtImages.add(result.image);
    expect(result.built).toBe(true);
    expect(result.image).toBe(firstImage);
  });

  it("refuses a Dockerfile that builds FROM another app's image: by registry name, through an ARG, by local image id, or COPY --from", async () => {
    const victimId = (await docker.getImage(firstImage).inspect()).Id;
    const attacker = { appId: String(Number(appId) + 1) };
    const cases = [
      { dockerfile: `FROM ${registryAddress}/${repository}:${firstCommit}\n`, reference: `${registryAddress}/${repository}:${firstCommit}` },
      { dockerfile: `ARG BASE=${registryAddress}/${repository}@${firstImage.split('@')[1]}\nFROM \${BASE}\n`, reference: firstImage },
      { dockerfile: `FROM ${victimId}\n`, reference: victimId },
      { dockerfile: `FROM ${victimId.slice(7, 19)} AS stolen\nFROM debian:bookworm-slim\n`, reference: victimId.slice(7, 19) },
      { dockerfile: `FROM debian:bookworm-slim\nCOPY --from=${victimId.slice(7, 19)} /app /stolen\n`, reference: victimId.slice(7, 19) },
    ];
    for (const { dockerfile, reference } of cases) {
      const commit = await commitAndPush({ Dockerfile: dockerfile });
      const { error, lines } = await buildFailure(commit, attacker);
      expect(error.reason).toContain(`may not build from "${reference}"`);
      expect(lines.some((line) => line.startsWith('Step '))).toBe(false);
    }
    // The app itself may build from its own image.
    const own = await commitAndPush({ Dockerfile: `FROM ${firstImage}\nRUN echo own-base-${RUN_ID}\n` });
    const result = await build(own).promise;
    builtImages.add(result.image);
    expect(result.built).toBe(true);
  });

  it('stops a build at its time limit, and says so', async () => {
    const commit = await commitAndPush({ Dockerfile: ['FROM debian:bookworm-slim', `RUN echo slow-${RUN_ID} && sleep 60`, ''].join('\n') });
    const started = Date.now();
    const { error } = await buildFailure(commit, { limits: { timeoutMs: 4000 } });
    expect(error.reason).toBe("the build took longer than the platform's limit of 4 s and was stopped");
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('kills a RUN step that goes past the memory limit', async () => {
    const commit = await commitAndPush({
      // tail holds a line whole in memory: 300 MiB without a newline.
      Dockerfile: ['FROM debian:bookworm-slim', `RUN echo hungry-${RUN_ID} && head -c 300m /dev/zero | tail -n 1 > /dev/null`, ''].join('\n'),
    });
    const { error } = await buildFailure(commit, { limits: { memoryBytes: 64 * 1024 * 1024 } });
    expect(error.reason).toMatch(/non-zero code: 137 \(killed: it may have used up the build's 64 MiB of memory\)/);
  });

  it('fails on a Dockerfile error with the failing step as the reason, after streaming its log', async () => {
    const commit = await commitAndPush({
      Dockerfile: ['FROM debian:bookworm-slim', `RUN echo about-to-fail-${RUN_ID}`, 'RUN exit 3', ''].join('\n'),
    });
    const { error, lines } = await buildFailure(commit);
    expect(error.reason).toContain('RUN exit 3');
    expect(error.reason).toContain('non-zero code: 3');
    expect(error.reason).not.toContain('\n');
    expect(lines).toContain(`about-to-fail-${RUN_ID}`);
    expect(error.logTail).toContainEqual(expect.stringMatching(/^Step 3\/\d+ : RUN exit 3$/));
    expect(error.logTail.length).toBeLessThanOrEqual(20);
    expect(await manifestExists(registry, repository, commit)).toBe(false);
  });

  it('refuses a commit without a Dockerfile before asking the engine anything', async () => {
    const commit = await commitAndPush({ Dockerfile: null });
    // An engine that cannot be reached: had the builder called it, the error would be a connection failure.
    const unreachable = new Docker({ socketPath: join(scratch, 'no-engine.sock') });
    const { error } = await buildFailure(commit, { docker: unreachable });
    expect(error.reason).toContain(`no Dockerfile at ${commit}`);
  });

  it('refuses a commit the repository does not have', async () => {
    const unknown = randomBytes(20).toString('hex');
    const { error, lines } = await buildFailure(unknown);
    expect(error.reason).toContain(`commit ${unknown} is not in the app's repository`);
    expect(lines).toEqual([]);
  });

  it('stops the build when aborted', async () => {
    const commit = await commitAndPush({
      Dockerfile: ['FROM debian:bookworm-slim', `RUN echo sleeping-${RUN_ID} && sleep 60`, ''].join('\n'),
    });
    const controller = new AbortController();
    const started = Date.now();
    const { error } = await buildFailure(commit, {
      signal: controller.signal,
      log: (line) => {
        if (line === `sleeping-${RUN_ID}`) controller.abort();
      },
    });
    expect(error.reason).toBe('the build was cancelled');
    expect(error.logTail).toContain(`sleeping-${RUN_ID}`);
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});
