import { describe, expect, it } from 'vitest';
import {
  appResources,
  databaseName,
  environmentNetworkName,
  environmentServiceName,
  isValidBucketName,
  mediaBucketName,
  type AppResource,
} from '../../src/platform/api/resource-names.js';
import { ENVIRONMENT_NAMES } from '../../src/shared/api/schemas.js';

const PLATFORM = 'divio-test-abc-defg';
const LONG = `${'a'.repeat(20)}-${'b'.repeat(42)}`;

function resourcesOf(slug: string, id: string): AppResource[] {
  const environments = ENVIRONMENT_NAMES.map((name) => ({ name, db_name: databaseName(slug, name), db_role: databaseName(slug, name), media_bucket: mediaBucketName(slug, name) }));
  return appResources({ slug, id }, environments, { platform: PLATFORM, domain: 'apps.example.com' });
}

describe('the names of what an app owns, from one module', () => {
  it('keeps the names platforms already use, to the character (a change would orphan live resources)', () => {
    expect(databaseName('shop', 'test')).toBe('shop_test');
    expect(mediaBucketName('shop', 'live')).toBe('shop-live');
    expect(environmentServiceName('divio', 'shop', 'test')).toBe('divio-app-shop-test');
    // Computed by the implementations these replaced, before they moved here.
    expect(environmentServiceName(PLATFORM, LONG, 'live')).toBe('divio-test-abc-defg-app-aaaaaaaaaaaaaaaaaaaa-bbbb-47fa8ec9-live');
    expect(environmentNetworkName(PLATFORM, LONG, 'test')).toBe('divio-test-abc-defg-net-aaaaaaaaaaaaaaaaaaaa-bbbb-f145252e-test');
    expect(mediaBucketName(LONG, 'test')).toBe('aaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbbbbb-e9bcbb19-test');
    expect(databaseName(LONG, 'live')).toBe('aaaaaaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbb_e9bcbb19_live');
  });

  it('lists everything an app owns: per environment its database, role, bucket, service, network, route and host; its labels, image and git repositories', () => {
    const owned = resourcesOf('shop', '42');
    const kinds = (env?: string) => owned.filter((r) => r.environment === env).map((r) => r.kind).sort();
    for (const env of ENVIRONMENT_NAMES) expect(kinds(env)).toEqual(['bucket', 'database', 'host', 'network', 'role', 'route', 'service']);
    expect(kinds(undefined)).toEqual(['git-repository', 'image-repository', 'swarm-label']);
    expect(owned).toEqual(
      expect.arrayContaining([
        { kind: 'service', name: `${PLATFORM}-app-shop-live`, environment: 'live' },
        { kind: 'network', name: `${PLATFORM}-net-shop-test`, environment: 'test' },
        { kind: 'route', name: 'test-shop.conf', environment: 'test' },
        { kind: 'host', name: 'live-shop.apps.example.com', environment: 'live' },
        { kind: 'image-repository', name: 'shop.42' },
        { kind: 'git-repository', name: 'shop.git' },
      ]),
    );
  });

  it('stays within every limit for the longest slug, and no two resources of a kind share a name', () => {
    for (const slug of ['ab', 'shop', LONG]) {
      const owned = resourcesOf(slug, '9007199254740993');
      for (const r of owned) {
        if (['service', 'network', 'database', 'role'].includes(r.kind)) expect(r.name.length, r.name).toBeLessThanOrEqual(63);
        if (r.kind === 'bucket') expect(isValidBucketName(r.name), r.name).toBe(true);
      }
      for (const kind of new Set(owned.map((r) => r.kind))) {
        const names = owned.filter((r) => r.kind === kind).map((r) => r.name);
        expect(new Set(names).size, kind).toBe(names.length);
      }
    }
  });

  it("two apps never share a resource: new slugs (at most 58 characters) give plain, one-to-one names where a hash could be matched", () => {
    const slug58 = `${'s'.repeat(30)}-${'t'.repeat(27)}`;
    expect(slug58).toHaveLength(58);
    for (const r of resourcesOf(slug58, '7')) {
      // Only Swarm names, which carry the platform's name, are ever shortened; create refuses a
      // slug whose shortened names equal another app's, and the runtime never touches a service
      // labelled for another app (test/integration/runtime.test.ts).
      if (['database', 'role', 'bucket', 'route', 'host', 'image-repository', 'git-repository'].includes(r.kind)) expect(r.name, r.kind).toContain(slug58.replace(/-/g, r.kind === 'database' || r.kind === 'role' ? '_' : '-'));
    }
    const pairs: Array<[string, string]> = [
      ['shop', 'shop-test'],
      ['shop-live', 'shop'],
      [slug58, `${slug58.slice(0, 57)}u`],
      [slug58, slug58.slice(0, 57)],
    ];
    for (const [a, b] of pairs) {
      const mine = new Set(resourcesOf(a, '1').map((r) => `${r.kind} ${r.name}`));
      const clash = resourcesOf(b, '2').filter((r) => mine.has(`${r.kind} ${r.name}`));
      expect(clash, `${a} / ${b}`).toEqual([]);
    }
  });
});
