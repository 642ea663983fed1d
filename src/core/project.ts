/**
 * Finding and loading a project: from the current directory or any parent (.divio/config.json), or
 * by slug (--app) through the list of checkouts this user has worked in.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { DivioError, ExitCode, InvalidInputError } from './errors.js';
import { pathExists, writeFileAtomic } from './fs-util.js';
import { userConfigDir } from './paths.js';
import { MANIFEST_FILE, type Manifest } from '../shared/manifest.js';
import { ManifestError, parseManifest } from '../shared/manifest-parse.js';
import {
  LOCAL_STATE_PATH,
  PROJECT_CONFIG_PATH,
  SLUG_PATTERN,
  projectConfigSchema,
  type ProjectConfig,
} from '../shared/project-config.js';

export interface Project {
  root: string;
  config: ProjectConfig;
  manifest: Manifest;
  slug: string;
}

export interface LocalState {
  /** Host port the local web service is published on; kept so the URL stays the same. */
  webPort?: number;
  /** What `project setup` completed, so a rerun resumes (the data steps per environment). */
  setup?: { environment: 'test' | 'live'; built?: boolean; database?: string; media?: string };
}

export async function findProjectRoot(start: string): Promise<string | undefined> {
  let dir = resolve(start);
  for (;;) {
    if (await pathExists(join(dir, PROJECT_CONFIG_PATH))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

export async function readProjectConfig(root: string): Promise<ProjectConfig> {
  const file = join(root, PROJECT_CONFIG_PATH);
  let data: unknown;
  try {
    data = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new InvalidInputError(`${file} is not valid JSON: ${(error as Error).message}`, {
      hint: `Fix the file, or remove it and run the command again from the project's directory.`,
    });
  }
  const parsed = projectConfigSchema.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`).join('; ');
    throw new InvalidInputError(`${file} is not valid: ${problems}`, {
      hint: 'It should look like {"app": "my-app"}.',
    });
  }
  return parsed.data;
}

export async function readManifest(root: string): Promise<Manifest> {
  const file = join(root, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new DivioError(`${file} is missing`, {
      exitCode: ExitCode.environment,
      hint: 'Every project needs a divio.yaml; scaffold one with `divio project create` or copy it from a boilerplate.',
    });
  }
  try {
    return parseManifest(text, file);
  } catch (error) {
    if (error instanceof ManifestError) {
      throw new InvalidInputError(error.message, { hint: 'Fix the fields above in divio.yaml and run the command again.' });
    }
    throw error;
  }
}

export async function loadProject(root: string): Promise<Project> {
  const config = await readProjectConfig(root);
  const manifest = await readManifest(root);
  return { root, config, manifest, slug: config.app };
}

export interface ResolveOptions {
  cwd?: string;
  app?: string;
  env?: NodeJS.ProcessEnv;
}

export async function resolveProject(options: ResolveOptions = {}): Promise<Project> {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? process.env;
  if (options.app !== undefined && !SLUG_PATTERN.test(options.app)) {
    throw new InvalidInputError(`"${options.app}" is not a valid app slug`, {
      hint: 'Slugs are 2-63 lower-case letters, digits and "-", starting with a letter.',
    });
  }
  const here = await findProjectRoot(cwd);
  if (here) {
    const project = await loadProject(here);
    if (options.app === undefined || options.app === project.slug) {
      await rememberCheckout(project.slug, project.root, env);
      return project;
    }
  }
  if (options.app !== undefined) {
    const known = (await readKnownCheckouts(env))[options.app];
    if (known && (await pathExists(join(known, PROJECT_CONFIG_PATH)))) return loadProject(known);
    throw new DivioError(`no local checkout of app "${options.app}" is known on this machine`, {
      exitCode: ExitCode.environment,
      hint: `Run the command inside the app's directory (divio remembers it from then on).`,
    });
  }
  throw new DivioError(`${cwd} is not inside a divio project (no ${PROJECT_CONFIG_PATH} here or in a parent)`, {
    exitCode: ExitCode.environment,
    hint: 'cd into a project directory, pass --app SLUG, or create one with `divio project create`.',
  });
}

function checkoutsFile(env: NodeJS.ProcessEnv): string {
  return join(userConfigDir(env), 'checkouts.json');
}

async function readKnownCheckouts(env: NodeJS.ProcessEnv): Promise<Record<string, string>> {
  try {
    const data: unknown = JSON.parse(await readFile(checkoutsFile(env), 'utf8'));
    return data && typeof data === 'object' ? (data as Record<string, string>) : {};
  } catch {
    return {};
  }
}

/** Where this machine last saw a checkout of `slug`, if it still holds one. */
export async function readKnownCheckout(slug: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const known = (await readKnownCheckouts(env))[slug];
  return known && (await pathExists(join(known, PROJECT_CONFIG_PATH))) ? known : undefined;
}

export async function rememberCheckout(slug: string, root: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const known = await readKnownCheckouts(env);
  if (known[slug] === root) return;
  known[slug] = root;
  try {
    await writeFileAtomic(checkoutsFile(env), JSON.stringify(known, null, 2) + '\n');
  } catch {
    // Remembering is a convenience for --app; a read-only home must not break the command.
  }
}

export async function readLocalState(root: string): Promise<LocalState> {
  try {
    const data: unknown = JSON.parse(await readFile(join(root, LOCAL_STATE_PATH), 'utf8'));
    return data && typeof data === 'object' ? (data as LocalState) : {};
  } catch {
    return {};
  }
}

export async function writeLocalState(root: string, state: LocalState): Promise<void> {
  await writeFileAtomic(join(root, LOCAL_STATE_PATH), JSON.stringify(state, null, 2) + '\n');
}
