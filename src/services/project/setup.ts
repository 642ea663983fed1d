/**
 * `divio project setup SLUG [DIR]`: a newcomer's running copy of an app in one command. Clone the
 * repository, write the local project files, build the image, pull the environment's database and
 * media. Each step that completed is recorded in the checkout's git-ignored local state, so a rerun
 * after a failure (or Ctrl-C) resumes where it stopped instead of starting over.
 */
import { randomBytes } from 'node:crypto';
import { readFile, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ApiClient } from '../../core/api-client.js';
import { childFailed, runShown } from '../../core/child-output.js';
import { requireCredentials } from '../../core/credentials.js';
import { DivioError, ExitCode, InvalidInputError } from '../../core/errors.js';
import { writeFileAtomic, pathExists } from '../../core/fs-util.js';
import { configureCredentialHelper, git, gitAuthEnv } from '../../core/git.js';
import type { IO } from '../../core/io.js';
import { loadProject, readLocalState, rememberCheckout, writeLocalState, type LocalState } from '../../core/project.js';
import * as routes from '../../shared/api/routes.js';
import type { EnvironmentName } from '../../shared/api/schemas.js';
import { PROJECT_CONFIG_PATH, SLUG_PATTERN, projectConfigSchema } from '../../shared/project-config.js';
import { ensureLocalFiles, syncComposeFile } from './compose-file.js';
import { pullDatabase, type DatabaseTransferResult } from './data/database.js';
import { pullMedia } from './data/media.js';
import { openLocalEnvironment } from './local-environment.js';
import type { MediaSyncResult } from './media/sync.js';

export interface SetupOptions {
  slug: string;
  /** Default ./SLUG. */
  directory?: string;
  environment?: EnvironmentName;
  skipDb?: boolean;
  skipMedia?: boolean;
  env?: NodeJS.ProcessEnv;
}

export type StepState = 'done' | 'already done' | 'skipped';

export interface SetupResult {
  app: string;
  directory: string;
  environment: EnvironmentName;
  steps: { clone: StepState; files: StepState; build: StepState; database: StepState; media: StepState };
  database: DatabaseTransferResult | null;
  media: MediaSyncResult | null;
  next: string;
}

/** What the local state remembers of a setup (in .divio/local.json, never committed). */
type SetupProgress = NonNullable<LocalState['setup']>;

export async function setupProject(options: SetupOptions, io: IO): Promise<SetupResult> {
  if (!SLUG_PATTERN.test(options.slug)) {
    throw new InvalidInputError(`"${options.slug}" is not a valid app slug`, { hint: 'Slugs are 2-63 lower-case letters, digits and "-", starting with a letter.' });
  }
  const environment = options.environment ?? 'test';
  const env = options.env ?? process.env;
  const directory = resolve(options.directory ?? options.slug);
  const credentials = await requireCredentials(env);
  const client = new ApiClient(credentials.endpoint, credentials.token);
  const app = await client.call(routes.getApp, { params: { slug: options.slug } });

  const steps: SetupResult['steps'] = { clone: 'done', files: 'done', build: 'done', database: 'skipped', media: 'skipped' };
  if (await isCheckoutOf(directory, options.slug)) {
    steps.clone = 'already done';
    io.info(`${directory} is already a checkout of ${options.slug}: resuming the setup.`);
  } else {
    await clone(app.gitUrl, directory, credentials.endpoint, credentials.token, io);
  }

  await io.task('Writing the local project files', () => writeProjectFiles(directory, options.slug, credentials.endpoint));
  const project = await loadProject(directory);
  await rememberCheckout(project.slug, project.root, env);
  const local = await openLocalEnvironment({ cwd: directory, env });
  const progress = await readProgress(directory, environment);

  if (progress.built) {
    steps.build = 'already done';
  } else {
    const compose = await local.compose();
    await runShown(io, `Building the image of ${project.slug}`, compose.run(['build'], { buffer: false, stdin: 'ignore' }), (failure) =>
      childFailed(`${compose.tool.argv.join(' ')} build failed`, 'Read the output above, fix the Dockerfile, then run the same setup command again: it resumes here.', failure),
    );
    await saveProgress(directory, { ...progress, built: true });
    progress.built = true;
  }

  const remote = { client, slug: project.slug, environment };
  let database: DatabaseTransferResult | null = null;
  if (!options.skipDb && project.manifest.database) {
    if (progress.database) {
      steps.database = 'already done';
    } else {
      database = await pullDatabase(local, io, remote);
      progress.database = database.transfer;
      await saveProgress(directory, progress);
      steps.database = 'done';
    }
  }

  let media: MediaSyncResult | null = null;
  if (!options.skipMedia) {
    if (progress.media) {
      steps.media = 'already done';
    } else {
      media = await pullMedia(project.root, io, remote);
      progress.media = media.tree.sha256;
      await saveProgress(directory, progress);
      steps.media = 'done';
    }
  }

  const relative = options.directory ?? options.slug;
  return {
    app: project.slug,
    directory,
    environment,
    steps,
    database,
    media,
    next: `cd ${relative} && divio project up`,
  };
}

async function isCheckoutOf(directory: string, slug: string): Promise<boolean> {
  if (!(await pathExists(directory))) return false;
  const entries = await readdir(directory);
  if (entries.length === 0) return false;
  if (!(await pathExists(join(directory, '.git')))) {
    throw new DivioError(`${directory} exists and is not a git checkout`, {
      exitCode: ExitCode.usage,
      hint: 'Choose another directory: `divio project setup SLUG DIR`.',
    });
  }
  const origin = await git(directory, ['remote', 'get-url', 'origin']).catch(() => '');
  if (!origin.trim().endsWith(`/${slug}.git`)) {
    throw new DivioError(`${directory} is a checkout of something else (${origin.trim() || 'no origin'})`, {
      exitCode: ExitCode.usage,
      hint: 'Choose another directory: `divio project setup SLUG DIR`.',
    });
  }
  return true;
}

/** Into a hidden sibling first: an interrupted clone never leaves a half checkout under DIR. */
async function clone(gitUrl: string, directory: string, endpoint: string, token: string, io: IO): Promise<void> {
  const parent = dirname(directory);
  const name = basename(directory);
  const stagingPrefix = `.${name}.divio-setup-`;
  for (const entry of await readdir(parent).catch(() => [] as string[])) {
    if (entry.startsWith(stagingPrefix)) await rm(join(parent, entry), { recursive: true, force: true });
  }
  const staging = join(parent, `${stagingPrefix}${randomBytes(4).toString('hex')}`);
  try {
    await io.task(`Cloning ${gitUrl}`, () => git(parent, ['clone', '--quiet', gitUrl, staging], gitAuthEnv(endpoint, token)));
    await configureCredentialHelper(staging, endpoint);
    if (await pathExists(directory)) await rm(directory, { recursive: true, force: true }); // empty, checked above
    await rename(staging, directory);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** .divio/config.json naming this app on this endpoint; the compose file, .env.local and data/media. */
async function writeProjectFiles(directory: string, slug: string, endpoint: string): Promise<void> {
  const configPath = join(directory, PROJECT_CONFIG_PATH);
  let config = { app: slug, endpoint };
  if (await pathExists(configPath)) {
    const current = projectConfigSchema.safeParse(parseJson(await readFile(configPath, 'utf8')));
    if (current.success && current.data.app !== slug) {
      throw new DivioError(`the repository's ${PROJECT_CONFIG_PATH} names the app "${current.data.app}", not "${slug}"`, {
        exitCode: ExitCode.invalidInput,
        hint: 'Fix that file in the repository, or set up the app it names.',
      });
    }
    if (current.success) config = { ...current.data, endpoint };
  }
  await writeFileAtomic(configPath, JSON.stringify(config, null, 2) + '\n');
  if (!(await pathExists(join(directory, 'divio.yaml')))) {
    throw new DivioError(`the repository of ${slug} has no divio.yaml`, { exitCode: ExitCode.invalidInput, hint: 'Add one (see a boilerplate) and push it.' });
  }
  await syncComposeFile(await loadProject(directory));
  await ensureLocalFiles(directory);
}

async function readProgress(directory: string, environment: EnvironmentName): Promise<SetupProgress> {
  const state = await readLocalState(directory);
  // Data pulled from another environment is not what was asked for this time.
  if (state.setup && state.setup.environment === environment) return { ...state.setup };
  return { environment, built: state.setup?.built };
}

async function saveProgress(directory: string, progress: SetupProgress): Promise<void> {
  const state = await readLocalState(directory);
  await writeLocalState(directory, { ...state, setup: progress });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
