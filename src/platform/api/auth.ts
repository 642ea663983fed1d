/** Who is calling: bearer tokens for the JSON API, HTTP Basic (token as password) for git. */
import type { Context, MiddlewareHandler } from 'hono';
import { parseToken, secretMatches } from '../../shared/api/tokens.js';
import type { Access } from '../../shared/api/routes.js';
import type { TokenScope } from '../../shared/api/schemas.js';
import { ApiError, forbidden, unauthorized } from './errors.js';
import type { Store, TokenRow, UserRow } from './store.js';
import type { HttpBindings } from '@hono/node-server';

export interface Principal {
  user: UserRow;
  token: TokenRow;
}

/** Node's request and response are there for the routes that stream bodies of any size. */
export type ApiEnv = { Bindings: Partial<HttpBindings>; Variables: { principal: Principal } };

/** The token from `Authorization: Bearer T` or, for git clients, `Basic base64(any:T)`. */
export function presentedToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const [scheme, value] = header.split(/\s+/, 2);
  if (!scheme || !value) return undefined;
  if (scheme.toLowerCase() === 'bearer') return value;
  if (scheme.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 ? decoded.slice(colon + 1) : undefined;
  }
  return undefined;
}

export async function authenticate(store: Store, header: string | undefined): Promise<Principal> {
  const token = presentedToken(header);
  if (!token) throw unauthorized();
  const parsed = parseToken(token);
  if (!parsed) throw unauthorized('The API token is malformed');
  const found = await store.tokenWithUser(parsed.id);
  // Compare even when the id is unknown, so a miss costs the same as a wrong secret.
  const matches = secretMatches(parsed.secret, found?.token.secret_hash ?? '0'.repeat(64));
  if (!found || !matches || found.token.revoked_at) throw unauthorized('The API token is unknown or revoked');
  // Checked on every request (no cache), so a disable or an expiry holds from the very next one.
  if (found.user.disabled_at) throw accountDisabled(found.user.name);
  if (found.token.expires_at && found.token.expires_at.getTime() <= Date.now()) throw tokenExpired(found.token.expires_at);
  void store.touchToken(found.token.id).catch(() => undefined);
  return found;
}

function accountDisabled(name: string): ApiError {
  return new ApiError(401, 'account_disabled', `The account "${name}" is disabled on this platform`, {
    hint: `Ask the platform operator to enable it again (\`divio platform users enable ${name}\`); nothing of yours was removed.`,
  });
}

function tokenExpired(at: Date): ApiError {
  return new ApiError(
    401,
    'token_expired',
    `This API token expired at ${at.toISOString()}: log in again with a new one (\`divio login --token TOKEN\`; ` +
      'another token of yours can issue one with POST /v1/tokens, or the operator with `divio platform users issue-token NAME`)',
    { hint: 'Get a new token, then run `divio login --token TOKEN`.' },
  );
}

export function authorise(principal: Principal, access: Access): void {
  if (access === 'public' || access === 'read') return;
  if (!hasScope(principal.token.scope, 'write')) {
    throw forbidden('This token is read-only; this request needs a token with the write scope');
  }
  if (access === 'operator' && !principal.user.operator) {
    throw forbidden('Only the platform operator may do this');
  }
}

export function hasScope(scope: TokenScope, needed: TokenScope): boolean {
  return needed === 'read' || scope === 'write';
}

/** Route middleware: runs before request validation, so an anonymous caller learns nothing about input rules. */
export function requireAccess(store: Store, access: Access): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    if (access !== 'public') {
      const principal = await authenticate(store, c.req.header('authorization'));
      authorise(principal, access);
      c.set('principal', principal);
    }
    await next();
  };
}

export function principalOf(c: Context<ApiEnv>): Principal {
  const principal = c.get('principal');
  if (!principal) throw new ApiError(401, 'unauthorized', 'A valid API token is required');
  return principal;
}
