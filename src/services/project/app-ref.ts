/**
 * Which app a platform command acts on (--app SLUG, else the project in this directory or a
 * parent), and on which platform: the one the project's .divio/config.json names. A command never
 * acts on a project through another platform's token, where the same slug may be someone else's app.
 */
import { ApiClient } from '../../core/api-client.js';
import { currentCredentials, normaliseEndpoint, storedCredentials, type Credentials } from '../../core/credentials.js';
import { InvalidInputError, DivioError, ExitCode } from '../../core/errors.js';
import { findProjectRoot, readKnownCheckout, readProjectConfig } from '../../core/project.js';
import { PROJECT_CONFIG_PATH, SLUG_PATTERN } from '../../shared/project-config.js';

export interface AppTarget {
  slug: string;
  /** The platform the project is registered on, when a checkout of it says so. */
  endpoint?: string;
}

export async function appTarget(options: { app?: string; cwd?: string; env?: NodeJS.ProcessEnv }): Promise<AppTarget> {
  const cwd = options.cwd ?? process.cwd();
  if (options.app !== undefined && !SLUG_PATTERN.test(options.app)) {
    throw new InvalidInputError(`"${options.app}" is not a valid app slug`, {
      hint: 'Slugs are 2-63 lower-case letters, digits and "-", starting with a letter.',
    });
  }
  const root = await findProjectRoot(cwd);
  const here = root ? await readProjectConfig(root) : undefined;
  if (here && (options.app === undefined || options.app === here.app)) return { slug: here.app, endpoint: here.endpoint };
  if (options.app !== undefined) {
    const known = await readKnownCheckout(options.app, options.env);
    const config = known ? await readProjectConfig(known).catch(() => undefined) : undefined;
    return { slug: options.app, endpoint: config?.app === options.app ? config.endpoint : undefined };
  }
  throw new DivioError(`${cwd} is not inside a divio project (no ${PROJECT_CONFIG_PATH} here or in a parent)`, {
    exitCode: ExitCode.environment,
    hint: 'cd into the project, or pass --app SLUG.',
  });
}

/**
 * Credentials for the project's platform: a token stored for it is used even when another
 * platform is the current login; with none, or with DIVIO_ENDPOINT naming another, it refuses.
 */
export async function credentialsForProject(projectEndpoint: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<Credentials> {
  const wanted = projectEndpoint ? normaliseEndpoint(projectEndpoint) : undefined;
  const stored = wanted && !env.DIVIO_ENDPOINT ? await storedCredentials(wanted, env) : undefined;
  const credentials = stored ?? (await currentCredentials(env));
  if (!credentials) {
    throw new DivioError(wanted ? `You are not logged in to ${wanted}, the platform of this project` : 'You are not logged in to a divio platform', {
      exitCode: ExitCode.environment,
      hint: `Run \`divio login --endpoint ${wanted ?? 'URL'}\`, or set DIVIO_ENDPOINT and DIVIO_TOKEN.`,
    });
  }
  if (wanted && credentials.endpoint !== wanted) {
    throw new DivioError(`This project is on ${wanted}, but divio is using ${credentials.endpoint}${env.DIVIO_ENDPOINT ? ' (DIVIO_ENDPOINT)' : ''}; nothing was done`, {
      exitCode: ExitCode.environment,
      hint: `Log in to the project's platform (\`divio login --endpoint ${wanted}\`) or point DIVIO_ENDPOINT at it; if the project moved, fix "endpoint" in ${PROJECT_CONFIG_PATH}.`,
    });
  }
  return credentials;
}

/** The API client for a project's platform (see credentialsForProject). */
export async function projectClient(projectEndpoint: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<ApiClient> {
  const credentials = await credentialsForProject(projectEndpoint, env);
  return new ApiClient(credentials.endpoint, credentials.token);
}

/** The app a command acts on and the client for its platform, in one step. */
export async function appClient(options: { app?: string; cwd?: string; env?: NodeJS.ProcessEnv }): Promise<{ slug: string; client: ApiClient }> {
  const target = await appTarget(options);
  return { slug: target.slug, client: await projectClient(target.endpoint, options.env) };
}
