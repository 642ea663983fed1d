import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { generateToken, hashSecret, parseToken, secretMatches } from '../../src/shared/api/tokens.js';
import { databaseName } from '../../src/platform/api/resource-names.js';
import { presentedToken } from '../../src/platform/api/auth.js';
import { environmentUrl } from '../../src/platform/api/apps-service.js';
import { SLUG_PATTERN } from '../../src/shared/project-config.js';

describe('API tokens', () => {
  it('round-trip: a generated token parses, and only its own secret matches the stored hash', () => {
    const a = generateToken();
    const b = generateToken();
    const parsed = parseToken(a.token)!;
    expect(parsed.id).toBe(a.id);
    expect(secretMatches(parsed.secret, a.hash)).toBe(true);
    expect(secretMatches(parseToken(b.token)!.secret, a.hash)).toBe(false);
    expect(a.hash).toBe(hashSecret(parsed.secret));
    expect(a.token).not.toContain(a.hash);
  });

  it('refuses anything not shaped like a token', () => {
    for (const bad of ['', 'dvt_', 'dvt_short_x', `dvt_${'a'.repeat(16)}_${'b'.repeat(42)}`, `xvt_${'a'.repeat(16)}_${'b'.repeat(43)}`]) {
      expect(parseToken(bad), bad).toBeUndefined();
    }
    expect(secretMatches('x', 'not-hex')).toBe(false);
  });

  it('reads bearer and git Basic credentials', () => {
    expect(presentedToken('Bearer abc')).toBe('abc');
    expect(presentedToken(`Basic ${Buffer.from('anyone:tok:en').toString('base64')}`)).toBe('tok:en');
    expect(presentedToken('Basic !!!')).toBeUndefined();
    expect(presentedToken(undefined)).toBeUndefined();
    expect(presentedToken('Digest x')).toBeUndefined();
  });
});

describe('environment resource names', () => {
  it('are valid PostgreSQL identifiers of at most 63 bytes, distinct per slug and environment', () => {
    fc.assert(
      fc.property(fc.stringMatching(SLUG_PATTERN), fc.stringMatching(SLUG_PATTERN), (s1, s2) => {
        for (const env of ['test', 'live'] as const) {
          const name = databaseName(s1, env);
          expect(name.length).toBeLessThanOrEqual(63);
          expect(name).toMatch(/^[a-z][a-z0-9_]*$/);
          expect(name.endsWith(`_${env}`)).toBe(true);
        }
        expect(databaseName(s1, 'test')).not.toBe(databaseName(s1, 'live'));
        if (s1 !== s2) expect(databaseName(s1, 'test')).not.toBe(databaseName(s2, 'test'));
      }),
      { numRuns: 300 },
    );
    expect(databaseName('shop', 'test')).toBe('shop_test');
    expect(databaseName('my-shop', 'live')).toBe('my_shop_live');
  });

  it('environment URLs use the router port and ENV-SLUG.DOMAIN', () => {
    expect(environmentUrl('http://127.0.0.1:8600', 'localhost', 'test', 'shop')).toBe('http://test-shop.localhost:8600');
    expect(environmentUrl('https://api.example.com', 'apps.example.com', 'live', 'shop')).toBe('https://live-shop.apps.example.com');
  });
});
