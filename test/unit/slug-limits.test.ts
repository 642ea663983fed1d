import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { NEW_SLUG_MAX, newSlugProblem } from '../../src/shared/project-config.js';
import { createAppBody } from '../../src/shared/api/schemas.js';
import { databaseName } from '../../src/platform/api/resource-names.js';

describe('slugs of new apps', () => {
  it('leave room for the host name label and the bucket name made from them', () => {
    const longest = `a${'b'.repeat(NEW_SLUG_MAX - 1)}`;
    expect(newSlugProblem(longest)).toBeNull();
    expect(`live-${longest}`.length).toBeLessThanOrEqual(63);
    expect(newSlugProblem(`${longest}c`)).toMatch(/more than 58: "live-a/);
    expect(newSlugProblem('a'.repeat(60))).toMatch(/60 characters/);
  });

  it('refuse names that would make invalid or ambiguous hosts and buckets', () => {
    for (const bad of ['shop-', 'my--shop', 'Shop', '1shop', 's', 'shop_1', 'shop.example']) expect(newSlugProblem(bad), bad).not.toBeNull();
    for (const good of ['shop', 'my-shop', 'a1', 'x-1-y']) expect(newSlugProblem(good), good).toBeNull();
  });

  it('every accepted slug gives DNS labels and S3 bucket names within their limits', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z][a-z0-9-]{1,70}$/), (slug) => {
        if (newSlugProblem(slug) !== null) return;
        for (const env of ['test', 'live']) {
          const label = `${env}-${slug}`;
          expect(label.length).toBeLessThanOrEqual(63);
          expect(label).toMatch(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/);
          expect(`${slug}-${env}`).toMatch(/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/);
        }
      }),
    );
  });

  it('names a database and role without shortening, so two accepted slugs never share one', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z][a-z0-9-]{1,70}$/), (slug) => {
        if (newSlugProblem(slug) !== null) return;
        for (const env of ['test', 'live'] as const) expect(databaseName(slug, env)).toBe(`${slug.replace(/-/g, '_')}_${env}`);
      }),
    );
  });

  it('the API schema for creating an app applies the same check', () => {
    expect(createAppBody.safeParse({ slug: 'a'.repeat(60) }).success).toBe(false);
    expect(createAppBody.safeParse({ slug: 'a'.repeat(58) }).success).toBe(true);
  });
});
