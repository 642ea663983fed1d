/**
 * Stored platform credentials: ~/.config/divio/credentials.json, mode 0600, one token per endpoint
 * and which endpoint is current. DIVIO_TOKEN and DIVIO_ENDPOINT override what is stored.
 */
import { chmod, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { DivioError, ExitCode } from './errors.js';
import { writeFileAtomic } from './fs-util.js';
import { userConfigDir } from './paths.js';

const fileSchema = z.object({
  current: z.string().optional(),
  endpoints: z.record(z.string(), z.object({ token: z.string(), user: z.string().optional() })).default({}),
});
type CredentialsFile = z.output<typeof fileSchema>;

export interface Credentials {
  endpoint: string;
  token: string;
  /** Where each value came from, for messages (never the token itself). */
  source: 'environment' | 'file';
}

export function credentialsPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(userConfigDir(env), 'credentials.json');
}

export function normaliseEndpoint(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new DivioError(`"${endpoint}" is not a URL`, {
      exitCode: ExitCode.invalidInput,
      hint: 'Give the platform endpoint as printed by `divio platform start`, e.g. http://127.0.0.1:8600',
    });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new DivioError(`"${endpoint}" is not an http(s) URL`, { exitCode: ExitCode.invalidInput });
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}

async function readFileState(env: NodeJS.ProcessEnv): Promise<CredentialsFile> {
  let text: string;
  try {
    text = await readFile(credentialsPath(env), 'utf8');
  } catch {
    return { endpoints: {} };
  }
  const parsed = fileSchema.safeParse(JSON.parse(text));
  if (!parsed.success) {
    throw new DivioError(`${credentialsPath(env)} is damaged`, {
      hint: 'Run `divio logout` to remove it, then `divio login` again.',
    });
  }
  return parsed.data;
}

async function writeFileState(state: CredentialsFile, env: NodeJS.ProcessEnv): Promise<void> {
  const path = credentialsPath(env);
  await writeFileAtomic(path, JSON.stringify(state, null, 2) + '\n', 0o600);
  await chmod(path, 0o600);
}

/** The endpoint and token to use, or undefined when there are none. */
export async function currentCredentials(env: NodeJS.ProcessEnv = process.env): Promise<Credentials | undefined> {
  const state = await readFileState(env);
  const endpoint = env.DIVIO_ENDPOINT ? normaliseEndpoint(env.DIVIO_ENDPOINT) : state.current;
  if (!endpoint) return undefined;
  if (env.DIVIO_TOKEN) return { endpoint, token: env.DIVIO_TOKEN, source: 'environment' };
  const stored = state.endpoints[endpoint];
  return stored ? { endpoint, token: stored.token, source: 'file' } : undefined;
}

/** The token stored for one endpoint (whichever is current), or undefined. DIVIO_TOKEN still wins. */
export async function storedCredentials(endpoint: string, env: NodeJS.ProcessEnv = process.env): Promise<Credentials | undefined> {
  const key = normaliseEndpoint(endpoint);
  if (env.DIVIO_TOKEN) return undefined;
  const stored = (await readFileState(env)).endpoints[key];
  return stored ? { endpoint: key, token: stored.token, source: 'file' } : undefined;
}

export async function requireCredentials(env: NodeJS.ProcessEnv = process.env): Promise<Credentials> {
  const credentials = await currentCredentials(env);
  if (credentials) return credentials;
  throw new DivioError('You are not logged in to a divio platform', {
    exitCode: ExitCode.environment,
    hint: 'Run `divio login --endpoint URL`, or set DIVIO_ENDPOINT and DIVIO_TOKEN.',
  });
}

export async function saveCredentials(
  endpoint: string,
  token: string,
  user: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const state = await readFileState(env);
  const key = normaliseEndpoint(endpoint);
  state.endpoints[key] = { token, ...(user ? { user } : {}) };
  state.current = key;
  await writeFileState(state, env);
}

/** Forget the token for one endpoint (default: the current one). Returns the endpoint forgotten. */
export async function forgetCredentials(
  endpoint: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  const state = await readFileState(env);
  const key = endpoint ? normaliseEndpoint(endpoint) : state.current;
  if (!key) return undefined;
  delete state.endpoints[key];
  if (state.current === key) delete state.current;
  if (Object.keys(state.endpoints).length === 0 && !state.current) {
    await rm(credentialsPath(env), { force: true });
  } else {
    await writeFileState(state, env);
  }
  return key;
}
