/** Logging in and out of a platform endpoint, and asking it who we are. */
import * as routes from '../../shared/api/routes.js';
import type { Me } from '../../shared/api/schemas.js';
import { ApiClient, ApiRequestError } from '../../core/api-client.js';
import {
  currentCredentials,
  forgetCredentials,
  normaliseEndpoint,
  requireCredentials,
  saveCredentials,
} from '../../core/credentials.js';
import { DivioError, ExitCode } from '../../core/errors.js';

export interface LoginResult {
  endpoint: string;
  user: string;
  operator: boolean;
  scope: string;
}

/** Verify the token against the API before storing it: a typo never becomes saved state. */
export async function login(
  options: { endpoint?: string; token: string },
  env: NodeJS.ProcessEnv = process.env,
): Promise<LoginResult> {
  const endpoint = await chooseEndpoint(options.endpoint, env);
  const me = await new ApiClient(endpoint, options.token).call(routes.getMe).catch((error: unknown) => {
    if (error instanceof ApiRequestError && error.status === 401) {
      throw new DivioError(`${endpoint} does not accept this token`, {
        exitCode: ExitCode.environment,
        hint: 'Check the token (the operator prints one with `divio platform users add NAME`).',
      });
    }
    throw error;
  });
  await saveCredentials(endpoint, options.token, me.user.name, env);
  return { endpoint, user: me.user.name, operator: me.user.operator, scope: me.token.scope };
}

async function chooseEndpoint(given: string | undefined, env: NodeJS.ProcessEnv): Promise<string> {
  if (given) return normaliseEndpoint(given);
  if (env.DIVIO_ENDPOINT) return normaliseEndpoint(env.DIVIO_ENDPOINT);
  const current = await currentCredentials({ ...env, DIVIO_TOKEN: 'unused' });
  if (current) return current.endpoint;
  throw new DivioError('Which platform? No endpoint was given and none is stored', {
    exitCode: ExitCode.usage,
    hint: 'Pass --endpoint URL (e.g. http://127.0.0.1:8600) or set DIVIO_ENDPOINT.',
  });
}

export interface LogoutResult {
  endpoint: string | undefined;
  /** Whether the platform revoked the token (false when it could not be reached). */
  revoked: boolean;
}

/** Revoke the token on the platform when it answers, and forget it here in any case. */
export async function logout(env: NodeJS.ProcessEnv = process.env): Promise<LogoutResult> {
  const credentials = await currentCredentials({ ...env, DIVIO_TOKEN: '' });
  if (!credentials) return { endpoint: undefined, revoked: false };
  let revoked = false;
  try {
    await new ApiClient(credentials.endpoint, credentials.token).call(routes.revokeCurrentToken);
    revoked = true;
  } catch (error) {
    // Already revoked is as good as revoked; an unreachable platform must not keep us logged in.
    revoked = error instanceof ApiRequestError && error.status === 401;
  }
  await forgetCredentials(credentials.endpoint, env);
  return { endpoint: credentials.endpoint, revoked };
}

export interface WhoamiResult extends Me {
  endpoint: string;
  source: 'environment' | 'file';
}

export async function whoami(env: NodeJS.ProcessEnv = process.env): Promise<WhoamiResult> {
  const credentials = await requireCredentials(env);
  const me = await new ApiClient(credentials.endpoint, credentials.token).call(routes.getMe);
  return { ...me, endpoint: credentials.endpoint, source: credentials.source };
}
