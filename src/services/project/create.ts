/**
 * `project create`: scaffold, register the app on the platform, first commit, push — as one step.
 * The project only moves into ./SLUG once the push succeeded; a failure after registering removes
 * the app again, and if even that fails the error says exactly what is left and how to finish.
 */
import { ApiClient, ApiRequestError } from '../../core/api-client.js';
import { requireCredentials } from '../../core/credentials.js';
import { DivioError, errorMessage } from '../../core/errors.js';
import { configureRemote, git, gitAuthEnv, initialCommit } from '../../core/git.js';
import type { IO } from '../../core/io.js';
import * as routes from '../../shared/api/routes.js';
import type { App } from '../../shared/api/schemas.js';
import { DEFAULT_BOILERPLATE, checkScaffoldInput, scaffoldProject } from './scaffold.js';

export interface CreateOptions {
  slug: string;
  boilerplate?: string;
  directory?: string;
  /** Scaffold only, without registering (no platform needed). */
  localOnly?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface CreateResult {
  app: string;
  directory: string;
  boilerplate: string;
  registered: boolean;
  endpoint: string | null;
  commit: string | null;
  environments: { name: string; url: string }[];
}

export async function createProject(options: CreateOptions, io: IO): Promise<CreateResult> {
  const boilerplate = options.boilerplate ?? DEFAULT_BOILERPLATE;
  const env = options.env ?? process.env;
  if (options.localOnly) {
    const project = await io.task(`Creating ${options.slug} from the ${boilerplate} boilerplate`, () =>
      scaffoldProject({ slug: options.slug, boilerplate, directory: options.directory, env }),
    );
    return { app: project.slug, directory: project.root, boilerplate, registered: false, endpoint: null, commit: null, environments: [] };
  }

  await checkScaffoldInput(options.slug, boilerplate);
  const credentials = await requireCredentials(env);
  const client = new ApiClient(credentials.endpoint, credentials.token);
  const me = await client.call(routes.getMe);
  let registered: App | undefined;
  let commit: string | null = null;

  const registerAndPush = async (staging: string) => {
    commit = await io.task('Committing', () =>
      initialCommit(staging, `Initial commit from the divio ${boilerplate} boilerplate`, me.user.name),
    );
    registered = await io.task(`Registering ${options.slug} on ${credentials.endpoint}`, () =>
      client.call(routes.createApp, { body: { slug: options.slug, boilerplate } }),
    );
    await configureRemote(staging, registered.gitUrl, credentials.endpoint);
    const app = registered;
    await io.task('Pushing the first commit', () =>
      // --set-upstream: the user's own `git push` and `git pull` then need no arguments.
      git(staging, ['push', '--quiet', '--set-upstream', 'origin', 'main'], gitAuthEnv(credentials.endpoint, credentials.token)),
    ).catch((error: unknown) => undoRegistration(client, app, error));
  };

  let project;
  try {
    project = await scaffoldProject({
      slug: options.slug,
      boilerplate,
      directory: options.directory,
      endpoint: credentials.endpoint,
      env,
      prepare: registerAndPush,
    });
  } catch (error) {
    if (error instanceof ApiRequestError && error.status === 409) {
      throw new DivioError(`An app called "${options.slug}" already exists on ${credentials.endpoint}`, {
        hint: 'Choose another slug. If it is yours, `divio project setup` clones it.',
      });
    }
    throw error;
  }
  const app = registered as App | undefined;
  return {
    app: project.slug,
    directory: project.root,
    boilerplate,
    registered: true,
    endpoint: credentials.endpoint,
    commit,
    environments: (app?.environments ?? []).map((e) => ({ name: e.name, url: e.url })),
  };
}

/** The push failed after the app was registered: remove the app so nothing is half-made. */
async function undoRegistration(client: ApiClient, app: App, cause: unknown): Promise<never> {
  try {
    await client.call(routes.deleteApp, { params: { slug: app.slug } });
  } catch (undoError) {
    throw new DivioError(
      `The first push failed (${errorMessage(cause)}), and removing the half-made app "${app.slug}" failed too (${errorMessage(undoError)})`,
      {
        hint: `The app is registered but empty, and no project directory was kept. Remove it by hand (DELETE ${client.endpoint}/v1/apps/${app.slug}) or ask the operator, then run \`divio project create ${app.slug}\` again.`,
        cause,
      },
    );
  }
  throw new DivioError(`The first push to ${app.gitUrl} failed, so "${app.slug}" was not created: ${errorMessage(cause)}`, {
    hint: 'Nothing was kept, here or on the platform; run the same command again.',
    cause,
  });
}
