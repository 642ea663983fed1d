/** Token lifetimes: what `--expires-in` and `expiresIn`/`expiresAt` accept, and when a token then expires. */
import { describe, expect, it } from 'vitest';
import { tokenExpiry } from '../../src/platform/api/accounts.js';
import { ApiError } from '../../src/platform/api/errors.js';
import { createTokenBody } from '../../src/shared/api/schemas.js';
import { MAX_TOKEN_LIFETIME_SECONDS, lifetimeSeconds } from '../../src/shared/api/tokens.js';

describe('token lifetimes', () => {
  it('reads seconds and durations, and refuses zero, fractions, unknown units and more than ten years', () => {
    expect(lifetimeSeconds(1)).toBe(1);
    expect(lifetimeSeconds('90s')).toBe(90);
    expect(lifetimeSeconds('45m')).toBe(2700);
    expect(lifetimeSeconds('12h')).toBe(43_200);
    expect(lifetimeSeconds('30d')).toBe(2_592_000);
    expect(lifetimeSeconds('52w')).toBe(52 * 7 * 86_400);
    expect(lifetimeSeconds(MAX_TOKEN_LIFETIME_SECONDS)).toBe(MAX_TOKEN_LIFETIME_SECONDS);
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, MAX_TOKEN_LIFETIME_SECONDS + 1, '0s', '01d', '1y', '1 d', '1D', '', 'd', '3651d', '99999999999w']) {
      expect(lifetimeSeconds(bad as number | string), String(bad)).toBeUndefined();
    }
  });

  it('the request schema accepts what lifetimeSeconds accepts, and nothing else', () => {
    expect(createTokenBody.safeParse({ expiresIn: '30d' }).success).toBe(true);
    expect(createTokenBody.safeParse({ expiresIn: 3600, scope: 'read' }).success).toBe(true);
    for (const expiresIn of [0, '0s', '1y', 1.5, true, null, '3651d']) {
      expect(createTokenBody.safeParse({ expiresIn }).success, String(expiresIn)).toBe(false);
    }
    expect(createTokenBody.safeParse({ expiresAt: 'tomorrow' }).success).toBe(false);
  });

  it('turns a request into an expiry: none, after a lifetime, or at a future moment', () => {
    const now = Date.parse('2026-12-02T12:00:00Z');
    expect(tokenExpiry({}, now)).toBeNull();
    expect(tokenExpiry({ expiresIn: '2s' }, now)?.toISOString()).toBe('2026-12-02T12:00:02.000Z');
    expect(tokenExpiry({ expiresAt: '2026-12-03T12:00:00+01:00' }, now)?.toISOString()).toBe('2026-12-03T11:00:00.000Z');
    const refused = (body: Parameters<typeof tokenExpiry>[0]) => {
      try {
        tokenExpiry(body, now);
      } catch (error) {
        expect(error).toBeInstanceOf(ApiError);
        return { status: (error as ApiError).status, field: (error as ApiError).extra.field, message: (error as Error).message };
      }
      throw new Error(`${JSON.stringify(body)} was accepted`);
    };
    expect(refused({ expiresAt: '2026-12-02T11:59:59Z' })).toMatchObject({ status: 400, field: 'body.expiresAt', message: /in the future/ });
    expect(refused({ expiresAt: '2037-01-01T00:00:00Z' })).toMatchObject({ status: 400, message: /ten years/ });
    expect(refused({ expiresIn: '1h', expiresAt: '2026-12-03T00:00:00Z' })).toMatchObject({ status: 400, message: /not both/ });
    expect(refused({ expiresAt: '2026-13-45T00:00:00Z' })).toMatchObject({ status: 400, field: 'body.expiresAt' });
  });
});
