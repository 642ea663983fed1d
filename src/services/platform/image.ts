/**
 * The platform's image (API and media store), built from a staged context — the Dockerfile,
 * package.json, package-lock.json and dist/ of this package — and tagged by a digest of that
 * context, so a build only happens when the code changed.
 */
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { PACKAGE_ROOT, templatePath } from '../../core/assets.js';
import { docker } from '../../core/docker.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import { pathExists } from '../../core/fs-util.js';
import type { IO } from '../../core/io.js';

export const PLATFORM_IMAGE_REPOSITORY = 'divio-platform';
/** Files the services start; without them the image is useless. */
const REQUIRED_FILES = ['dist/platform/api/main.js', 'dist/platform/media/s3-server.js'];

export interface ContextFile {
  /** Path inside the build context (always with "/"). */
  path: string;
  source: string;
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listTree(full)));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

/** The files of the build context, sorted. Help text and source maps are the CLI's, not the platform's. */
export async function platformContextFiles(root = PACKAGE_ROOT): Promise<ContextFile[]> {
  const files: ContextFile[] = [
    { path: 'Dockerfile', source: templatePath('platform/Dockerfile') },
    { path: 'package.json', source: join(root, 'package.json') },
    { path: 'package-lock.json', source: join(root, 'package-lock.json') },
  ];
  const dist = join(root, 'dist');
  if (!(await pathExists(dist))) {
    throw new DivioError(`the platform's code is not built (${dist} is missing)`, {
      exitCode: ExitCode.environment,
      hint: 'Run `npm run build` in the divio package, then `divio platform start` again.',
    });
  }
  for (const required of REQUIRED_FILES) {
    if (!(await pathExists(join(root, required)))) {
      throw new DivioError(`the platform's code is incomplete: ${required} is missing`, {
        exitCode: ExitCode.environment,
        hint: 'Rebuild the divio package (`npm run build`), then run `divio platform start` again.',
      });
    }
  }
  for (const file of await listTree(dist)) {
    const path = relative(root, file).split(sep).join('/');
    if (path.startsWith('dist/help/') || path.endsWith('.map')) continue;
    files.push({ path, source: file });
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export async function contextDigest(files: ContextFile[]): Promise<string> {
  const hash = createHash('sha256');
  for (const file of files) {
    const content = await readFile(file.source);
    hash.update(`${file.path}\0${content.length}\0`);
    hash.update(content);
  }
  return hash.digest('hex');
}

export async function imageExists(reference: string): Promise<boolean> {
  try {
    await docker().getImage(reference).inspect();
    return true;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return false;
    throw error;
  }
}

/**
 * The image's ID (sha256:…). Services reference images by ID: the engine then uses the local image
 * without trying to pull it from a registry first.
 */
export async function localImageId(reference: string): Promise<string> {
  try {
    return (await docker().getImage(reference).inspect()).Id;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) {
      throw new DivioError(`the image ${reference} is not on this Docker engine`, {
        exitCode: ExitCode.environment,
        hint: `The platform runs from local images: \`docker pull ${reference}\` (or \`docker load\` it), then start again.`,
      });
    }
    throw error;
  }
}

export interface PlatformImage {
  tag: string;
  id: string;
  built: boolean;
}

export async function ensurePlatformImage(io: IO, root = PACKAGE_ROOT): Promise<PlatformImage> {
  const files = await platformContextFiles(root);
  const tag = `${PLATFORM_IMAGE_REPOSITORY}:${(await contextDigest(files)).slice(0, 12)}`;
  if (await imageExists(tag)) return { tag, id: await localImageId(tag), built: false };

  const context = await mkdtemp(join(tmpdir(), 'divio-platform-image-'));
  try {
    for (const file of files) {
      const target = join(context, ...file.path.split('/'));
      await mkdir(dirname(target), { recursive: true });
      await copyFile(file.source, target);
    }
    await io.task(`Building the platform image ${tag}`, async () => {
      const result = await execa('docker', ['build', '--tag', tag, '--label', 'divio.platform-image=1', context], {
        all: true,
        reject: false,
        stdin: 'ignore',
      });
      if (result.exitCode !== 0) {
        const lines = String(result.all ?? '').split('\n').filter((l) => l.trim() !== '');
        for (const line of lines.slice(-80)) io.stderr.write(`  ${line}\n`);
        throw new DivioError(`building the platform image failed (exit code ${result.exitCode ?? 'none'})`, {
          exitCode: ExitCode.childFailed,
          hint: 'Read the build output above. The build needs Debian\'s package mirror and the npm registry.',
        });
      }
    });
  } finally {
    await rm(context, { recursive: true, force: true });
  }
  return { tag, id: await localImageId(tag), built: true };
}

/**
 * Remove earlier builds of the platform image, best effort: an image any container still uses
 * (another platform, a task kept in Swarm's history) is refused by the engine and stays.
 */
export async function pruneOldPlatformImages(keepTag: string): Promise<void> {
  const images = await docker().listImages({ filters: { label: ['divio.platform-image=1'] } });
  for (const image of images) {
    const tags = image.RepoTags ?? [];
    if (tags.includes(keepTag)) continue;
    if (!tags.some((t) => t.startsWith(`${PLATFORM_IMAGE_REPOSITORY}:`))) continue;
    await docker()
      .getImage(image.Id)
      .remove()
      .catch(() => {});
  }
}
