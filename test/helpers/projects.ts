/** Projects for tests: copied from fixtures or scaffolded, in temporary directories, torn down after. */
import { cp, mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { divio, REPO_ROOT, uniqueSlug } from './cli.js';

export interface TestProject {
  slug: string;
  dir: string;
  env: Record<string, string>;
  destroy(): Promise<void>;
}

/** The minimal fixture app (no npm install in its image: builds in a second). */
export async function minimalProject(prefix: string, env: Record<string, string> = {}): Promise<TestProject> {
  const slug = uniqueSlug(prefix);
  const parent = await mkdtemp(join(tmpdir(), 'divio-it-'));
  const dir = join(parent, slug);
  await cp(join(REPO_ROOT, 'test/fixtures/projects/minimal'), dir, { recursive: true });
  await writeFile(join(dir, '.divio/config.json'), JSON.stringify({ app: slug }) + '\n');
  return { slug, dir, env, destroy: () => destroyProject(slug, parent) };
}

export async function destroyProject(slug: string, parent: string): Promise<void> {
  // Remove containers, networks, volumes and the image whatever state the test left them in.
  const ids = (await execa('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${slug}`], { reject: false })).stdout.split('\n').filter(Boolean);
  if (ids.length) await execa('docker', ['rm', '-f', '-v', ...ids], { reject: false });
  const volumes = (await execa('docker', ['volume', 'ls', '-q', '--filter', `label=com.docker.compose.project=${slug}`], { reject: false })).stdout.split('\n').filter(Boolean);
  if (volumes.length) await execa('docker', ['volume', 'rm', '-f', ...volumes], { reject: false });
  const networks = (await execa('docker', ['network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${slug}`], { reject: false })).stdout.split('\n').filter(Boolean);
  if (networks.length) await execa('docker', ['network', 'rm', ...networks], { reject: false });
  await execa('docker', ['image', 'rm', '-f', `${slug}-web`, `${slug}_web`], { reject: false });
  await rm(parent, { recursive: true, force: true });
}

export async function readJsonFile<T = any>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

export { divio };
