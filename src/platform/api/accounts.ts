/**
 * Accounts on the platform: what the operator does to users (list, disable, enable, revoke every
 * token, issue one), and tokens with a lifetime. The routes in server.ts call these; authorization
 * (operator only) is the route's, decided before any of this runs.
 */
import type { CreateTokenBody, IssuedToken, TokenInfo, TokensRevoked, User, UserListEntry } from '../../shared/api/schemas.js';
import { MAX_TOKEN_LIFETIME_SECONDS, generateToken, lifetimeSeconds } from '../../shared/api/tokens.js';
import { ApiError, conflict, notFound } from './errors.js';
import type { Store, TokenRow, UserListRow, UserRow } from './store.js';

export class Accounts {
  constructor(private readonly store: Store) {}

  async list(): Promise<UserListEntry[]> {
    return (await this.store.listUsers()).map((row: UserListRow) => ({
      ...renderUser(row),
      liveTokens: row.live_tokens,
      lastUsedAt: row.last_used_at ? new Date(row.last_used_at).toISOString() : null,
    }));
  }

  /** An operator cannot lock themselves out: another operator has to do it. */
  async disable(caller: UserRow, name: string): Promise<User> {
    if (caller.name === name) {
      throw conflict('You cannot disable your own account: you would be locked out. Another operator can disable it.');
    }
    return renderUser(await this.changed(await this.store.setUserDisabled(name, true), name));
  }

  async enable(name: string): Promise<User> {
    return renderUser(await this.changed(await this.store.setUserDisabled(name, false), name));
  }

  async revokeTokens(caller: UserRow, name: string): Promise<TokensRevoked> {
    if (caller.name === name) {
      throw new ApiError(409, 'conflict', 'You cannot revoke all of your own tokens here: you would be locked out', {
        hint: 'Revoke them one by one (DELETE /v1/tokens/ID), or `divio logout` for the one you use.',
      });
    }
    const user = await this.changed(await this.store.userByName(name), name);
    return { user: user.name, revoked: await this.store.revokeAllTokens(user.id) };
  }

  async issueToken(name: string, body: CreateTokenBody): Promise<IssuedToken> {
    const user = await this.changed(await this.store.userByName(name), name);
    return this.issue(user, body);
  }

  /** A new token for this user with the scope and lifetime asked for (default: write, never expires). */
  async issue(user: UserRow, body: CreateTokenBody): Promise<IssuedToken> {
    const expiresAt = tokenExpiry(body);
    const issued = generateToken();
    const row = await this.store.insertToken(this.store.db, {
      id: issued.id,
      userId: user.id,
      hash: issued.hash,
      scope: body.scope ?? 'write',
      expiresAt,
    });
    return { token: issued.token, info: renderToken(row) };
  }

  private async changed(user: UserRow | undefined, name: string): Promise<UserRow> {
    if (!user) throw notFound(`User "${name}"`);
    return user;
  }
}

/** When a token asked for with this body expires; null for never. Refuses a past moment or both ways at once. */
export function tokenExpiry(body: Pick<CreateTokenBody, 'expiresIn' | 'expiresAt'>, now = Date.now()): Date | null {
  if (body.expiresIn !== undefined && body.expiresAt !== undefined) {
    throw new ApiError(400, 'invalid_input', 'body.expiresAt: give either expiresIn or expiresAt, not both', { field: 'body.expiresAt' });
  }
  if (body.expiresIn !== undefined) {
    // The schema already refused anything lifetimeSeconds does not accept.
    return new Date(now + lifetimeSeconds(body.expiresIn)! * 1000);
  }
  if (body.expiresAt !== undefined) {
    const at = new Date(body.expiresAt);
    if (Number.isNaN(at.getTime())) throw new ApiError(400, 'invalid_input', 'body.expiresAt: not a valid moment', { field: 'body.expiresAt' });
    if (at.getTime() <= now) throw new ApiError(400, 'invalid_input', 'body.expiresAt: must be in the future', { field: 'body.expiresAt' });
    if (at.getTime() - now > MAX_TOKEN_LIFETIME_SECONDS * 1000) {
      throw new ApiError(400, 'invalid_input', 'body.expiresAt: must be at most ten years from now', { field: 'body.expiresAt' });
    }
    return at;
  }
  return null;
}

export function renderUser(user: UserRow): User {
  return {
    name: user.name,
    operator: user.operator,
    createdAt: new Date(user.created_at).toISOString(),
    disabledAt: user.disabled_at ? new Date(user.disabled_at).toISOString() : null,
  };
}

export function renderToken(token: TokenRow): TokenInfo {
  return {
    id: token.id,
    scope: token.scope,
    createdAt: token.created_at.toISOString(),
    lastUsedAt: token.last_used_at ? token.last_used_at.toISOString() : null,
    expiresAt: token.expires_at ? token.expires_at.toISOString() : null,
  };
}
