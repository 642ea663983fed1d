/** Logging in and out of a platform endpoint, and asking it who we are. */
import * as routes from '../../shared/api/routes.js';
import type { Me, TokenInfo } from '../../shared/api/schemas.js';
import { ApiClient, ApiRequestError } from '../../core/api-client.js';
import {
  currentCredentials,
  forgetCredentials,
  normaliseEndpoint,
  requireCredentials,
  saveCredentials,
} from '../../core/credentials.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import { checkedLifetime } from './users.js';

export interface LoginResult {
  endpoint: string;
  user: string;
  operator: boolean;
  scope: string;
  /** When the stored token expires; null: never. */
  expiresAt: string | null;
}

/**
 * Verify the token against the API before storing it: a typo never becomes saved state. With
 * `expiresIn`, the token given is only used to issue one with that lifetime (same scope), and that
 * one is stored: this machine's login then ends by itself; the given token is left as it was.
 */
export async function login(
  options: { endpoint?: string; token: string; expiresIn?: string },
  env: NodeJS.ProcessEnv = process.env,
): Promise<LoginResult> {
  const expiresIn = options.expiresIn === undefined ? undefined : checkedLifetime(options.expiresIn);
  const endpoint = await chooseEndpoint(options.endpoint, env);
  const client = new ApiClient(endpoint, options.token);
  const me = await client.call(routes.getMe).catch((error: unknown) => {
    // A disabled account or an expired token: the platform's own message says which, and what to do.
    if (error instanceof ApiRequestError && error.status === 401 && error.code === 'unauthorized') {
      throw new DivioError(`${endpoint} does not accept this token`, {
        exitCode: ExitCode.environment,
        hint: 'Check the token (the operator prints one with `divio platform users add NAME`).',
      });
    }
    throw error;
  });
  let token = options.token;
  let info: TokenInfo = me.token;
  if (expiresIn !== undefined) {
    const issued = await client.call(routes.createToken, { body: { scope: me.token.scope, expiresIn } }).catch((error: unknown) => {
      if (error instanceof ApiRequestError && error.status === 403) {
        throw new DivioError('This token is read-only, so it cannot issue a token with a lifetime', {
          exitCode: ExitCode.environment,
          hint: 'Log in with a write token, or leave out --expires-in (the operator can issue one: `divio platform users issue-token NAME --expires-in 30d`).',
        });
      }
      throw error;
    });
    token = issued.token;
    info = issued.info;
  }
  await saveCredentials(endpoint, token, me.user.name, env);
  return { endpoint, user: me.user.name, operator: me.user.operator, scope: info.scope, expiresAt: info.expiresAt };
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
