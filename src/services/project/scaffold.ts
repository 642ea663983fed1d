/**
 * Scaffolding a project from a boilerplate: copy the boilerplate, write the project files, generate
 * the local compose file. Built in a hidden sibling directory and renamed into place, so a failure
 * never leaves a half-made project behind.
 */
import { cp, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { boilerplatesDir } from '../../core/assets.js';
import { DivioError, ExitCode, InvalidInputError } from '../../core/errors.js';
import { pathExists, writeFileAtomic } from '../../core/fs-util.js';
import { loadProject, rememberCheckout, type Project } from '../../core/project.js';
import { PROJECT_CONFIG_PATH, LOCAL_STATE_PATH, newSlugProblem } from '../../shared/project-config.js';
import { syncComposeFile, ENV_LOCAL_FILE, GENERATED_COPY } from './compose-file.js';
import { LIVE_CONFIG_OVERLAY } from './local-environment.js';

export const DEFAULT_BOILERPLATE = 'express';

/** Lines every project's .gitignore needs, whatever the boilerplate brought. */
const IGNORED = ['data/', ENV_LOCAL_FILE, LOCAL_STATE_PATH, LIVE_CONFIG_OVERLAY, GENERATED_COPY];

/** Build leftovers a boilerplate folder may hold in a clone; matched below the boilerplate only. */
const NOT_COPIED = /(^|[\\/])(node_modules|__pycache__)([\\/]|$)/;

export async function listBoilerplates(): Promise<string[]> {
  const entries = await readdir(boilerplatesDir(), { withFileTypes: true });
  const names: string[] = [];
  for (const e of entries) {
    if (e.isDirectory() && (await pathExists(join(boilerplatesDir(), e.name, 'divio.yaml')))) names.push(e.name);
  }
  return names.sort();
}

export interface ScaffoldOptions {
  slug: string;
  boilerplate?: string;
  /** Where the project goes; default ./SLUG. */
  directory?: string;
  env?: NodeJS.ProcessEnv;
  /** The platform the app is registered on, recorded in .divio/config.json. */
  endpoint?: string;
  /**
   * Last step before the project moves into place (e.g. register and push). It sees the finished
   * project in a staging directory; if it throws, nothing is left behind.
   */
  prepare?: (stagingRoot: string) => Promise<void>;
}

export async function scaffoldProject(options: ScaffoldOptions): Promise<Project> {
  const { slug } = options;
  const boilerplate = options.boilerplate ?? DEFAULT_BOILERPLATE;
  await checkScaffoldInput(slug, boilerplate);
  const target = resolve(options.directory ?? slug);
  if (await pathExists(target)) {
    const info = await stat(target);
    if (!info.isDirectory() || (await readdir(target)).length > 0) {
      throw new DivioError(`${target} already exists and is not empty`, {
        exitCode: ExitCode.usage,
        hint: 'Choose another directory, or remove that one first.',
      });
    }
  }
  await mkdir(dirname(target), { recursive: true });
  const staging = join(dirname(target), `.${basename(target)}.divio-${randomBytes(4).toString('hex')}`);
  try {
    const source = join(boilerplatesDir(), boilerplate);
    await cp(source, staging, {
      recursive: true,
      // Relative to the boilerplate: an installed divio itself lives under a node_modules folder.
      filter: (src) => !NOT_COPIED.test(relative(source, src)),
    });
    // Shipped as "gitignore": npm leaves .gitignore files out of published packages.
    if (await pathExists(join(staging, 'gitignore'))) await rename(join(staging, 'gitignore'), join(staging, '.gitignore'));
    const config = options.endpoint ? { app: slug, endpoint: options.endpoint } : { app: slug };
    await writeFileAtomic(join(staging, PROJECT_CONFIG_PATH), JSON.stringify(config, null, 2) + '\n');
    await ensureGitignore(staging);
    const project = await loadProject(staging);
    await syncComposeFile(project);
    await options.prepare?.(staging);
    if (await pathExists(target)) await rm(target, { recursive: true });
    await rename(staging, target);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
  await rememberCheckout(slug, target, options.env);
  return loadProject(target);
}

/** Refuse a bad slug or an unknown boilerplate before anything is made. */
export async function checkScaffoldInput(slug: string, boilerplate: string): Promise<void> {
  const problem = newSlugProblem(slug);
  if (problem) throw new InvalidInputError(`"${slug}" is not a valid app slug`, { hint: `${problem[0]!.toUpperCase()}${problem.slice(1)}.` });
  const available = await listBoilerplates();
  if (!available.includes(boilerplate)) {
    throw new InvalidInputError(`there is no boilerplate "${boilerplate}"`, { hint: `Choose one of: ${available.join(', ')}.` });
  }
}

async function ensureGitignore(root: string): Promise<void> {
  const path = join(root, '.gitignore');
  const existing = (await pathExists(path)) ? await readFile(path, 'utf8') : '';
  const have = new Set(existing.split('\n').map((l) => l.trim()));
  const missing = IGNORED.filter((l) => !have.has(l) && !have.has(`/${l}`));
  if (missing.length === 0) return;
  const prefix = existing === '' || existing.endsWith('\n') ? existing : `${existing}\n`;
  await writeFileAtomic(path, `${prefix}# divio: local-only files\n${missing.join('\n')}\n`);
}
