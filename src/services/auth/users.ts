/** The operator's side of accounts: list, disable, enable, revoke every token, issue one. */
import * as routes from '../../shared/api/routes.js';
import type { IssuedToken, TokensRevoked, User, UserListEntry } from '../../shared/api/schemas.js';
import { lifetimeSeconds, MAX_TOKEN_LIFETIME_SECONDS } from '../../shared/api/tokens.js';
import { ApiClient } from '../../core/api-client.js';
import { InvalidInputError } from '../../core/errors.js';

export interface UsersResult {
  endpoint: string;
  users: UserListEntry[];
}

export async function listUsers(client?: ApiClient): Promise<UsersResult> {
  const api = client ?? (await ApiClient.fromCredentials());
  return { endpoint: api.endpoint, users: (await api.call(routes.listUsers)).users };
}

export async function setUserDisabled(name: string, disabled: boolean, client?: ApiClient): Promise<User> {
  const api = client ?? (await ApiClient.fromCredentials());
  return api.call(disabled ? routes.disableUser : routes.enableUser, { params: { name } });
}

export async function revokeUserTokens(name: string, client?: ApiClient): Promise<TokensRevoked> {
  const api = client ?? (await ApiClient.fromCredentials());
  return api.call(routes.revokeUserTokens, { params: { name } });
}

export async function issueUserToken(
  name: string,
  options: { scope?: 'read' | 'write'; expiresIn?: string },
  client?: ApiClient,
): Promise<IssuedToken & { endpoint: string }> {
  const api = client ?? (await ApiClient.fromCredentials());
  const expiresIn = options.expiresIn === undefined ? undefined : checkedLifetime(options.expiresIn);
  const issued = await api.call(routes.issueUserToken, { params: { name }, body: { scope: options.scope, expiresIn } });
  return { ...issued, endpoint: api.endpoint };
}

/** `--expires-in` as the API takes it; refused here with the same rule, so a typo costs no request. */
export function checkedLifetime(value: string): string {
  if (lifetimeSeconds(value) === undefined) {
    throw new InvalidInputError(`"${value}" is not a token lifetime`, {
      hint: `Give a number and a unit: 90s, 45m, 12h, 30d or 52w (at most ${MAX_TOKEN_LIFETIME_SECONDS / 86_400}d).`,
    });
  }
  return value;
}
