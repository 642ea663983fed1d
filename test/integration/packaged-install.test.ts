/**
 * divio as users install it: `npm pack`, then the tarball installed globally into a prefix of its own
 * (and run through `npx`), far from this clone. `--help`, `project create --local-only` for every
 * boilerplate, and `project up` must work from there as they do from a clone (an installed package
 * lives under a node_modules folder, which once made every scaffold come out empty).
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';

describeWithDocker('divio installed from its packed tarball', () => {
  let scratch: string;
  let prefix: string;
  let tarball: string;
  let home: string;
  const bin = () => join(prefix, 'bin', 'divio');
  const env = () => ({ ...process.env, DIVIO_CONFIG_DIR: join(home, '.config', 'divio'), NO_COLOR: '1', CI: 'true' });

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'divio-packed-'));
    prefix = join(scratch, 'prefix');
    home = join(scratch, 'home');
    const packed = await execa('npm', ['pack', '--silent', '--pack-destination', scratch], { cwd: REPO_ROOT });
    tarball = join(scratch, packed.stdout.trim().split('\n').at(-1)!);
    expect(existsSync(tarball), tarball).toBe(true);
    const installed = await execa('npm', ['install', '--global', '--prefix', prefix, '--no-audit', '--no-fund', tarball], {
      cwd: scratch,
      env: env(),
      reject: false,
    });
    expect(installed.exitCode, installed.stderr).toBe(0);
  }, 600_000);
  afterAll(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('puts `divio` on PATH, and --help and --version answer', async () => {
    expect(existsSync(bin())).toBe(true);
    const help = await execa('divio', ['--help'], { env: { ...env(), PATH: `${join(prefix, 'bin')}:${process.env.PATH}` }, cwd: scratch });
    expect(help.stdout).toMatch(/project/);
    const version = await execa(bin(), ['--version'], { env: env(), cwd: scratch });
    expect(version.stdout).toMatch(/^divio\/0\.\d+\.\d+/);
    // A command's help goes through oclif itself (not the cached pages): the installed manifest works.
    const deployHelp = await execa(bin(), ['project', 'deploy', '--help'], { env: { ...env(), DIVIO_NO_FAST_PATH: '1' }, cwd: scratch });
    expect(deployHelp.stdout).toMatch(/--commit/);
  });

  it('project create --local-only scaffolds every boilerplate completely', async () => {
    for (const boilerplate of await readdir(join(REPO_ROOT, 'boilerplates'))) {
      const slug = `pk-${boilerplate}`;
      const created = await execa(bin(), ['project', 'create', slug, '--local-only', '--boilerplate', boilerplate, '--json'], {
        env: env(),
        cwd: scratch,
        reject: false,
      });
      expect(created.exitCode, created.stderr).toBe(0);
      const files = await readdir(join(scratch, slug));
      for (const expected of ['divio.yaml', 'Dockerfile', 'docker-compose.yml', '.gitignore', '.divio']) expect(files, boilerplate).toContain(expected);
    }
  });

  it('project up runs the created app, and down stops it', async () => {
    const dir = join(scratch, 'pk-express');
    const up = await execa(bin(), ['project', 'up', '--json'], { env: env(), cwd: dir, reject: false, timeout: 600_000 });
    try {
      expect(up.exitCode, up.stderr).toBe(0);
      const { url } = JSON.parse(up.stdout) as { url: string };
      expect(url).toMatch(/^http:\/\/pk-express\.localhost:\d+/);
      const port = new URL(url).port;
      const health = await execa('curl', ['-fsS', '-H', `Host: pk-express.localhost:${port}`, `http://127.0.0.1:${port}/healthz`], { reject: false });
      expect(health.exitCode, health.stderr).toBe(0);
    } finally {
      await execa(bin(), ['project', 'down', '--volumes'], { env: env(), cwd: dir, reject: false, timeout: 120_000 });
    }
  }, 600_000);

  it('runs through npx from the tarball too', async () => {
    const ran = await execa('npx', ['--yes', '--package', tarball, 'divio', 'project', 'create', 'pk-npx', '--local-only', '--json'], {
      env: { ...env(), npm_config_prefix: prefix },
      cwd: scratch,
      reject: false,
      timeout: 600_000,
    });
    expect(ran.exitCode, ran.stderr).toBe(0);
    expect(await readdir(join(scratch, 'pk-npx'))).toContain('divio.yaml');
  }, 600_000);
});
