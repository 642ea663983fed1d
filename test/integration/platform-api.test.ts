/**
 * The platform API against the shared test platform (real Swarm services, PostgreSQL, S3, git):
 * the authorization matrix over every route, input handling under fast-check, the OpenAPI
 * document, token revocation, and git over smart HTTP with good, bad and foreign tokens.
 */
import { existsSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { docker } from '../../src/core/docker.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import fc from 'fast-check';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { apiRoutes, gitRoutes, accessOf } from '../../src/shared/api/routes.js';
import { describeWithDocker } from '../helpers/docker.js';
import { usePlatform, operatorToken } from '../helpers/platform.js';
import { createApp, createUser, request, type TestUser } from '../helpers/api.js';

type Route = (typeof apiRoutes)[number];
type Case = { method: string; path: string; body?: unknown; expect: number };

describeWithDocker('platform API', () => {
  const platform = usePlatform();
  let endpoint: string;
  let operator: string;
  let alice: TestUser;
  let bob: TestUser;
  let aliceApp: string;
  let bobApp: string;
  let bobTokenId: string;
  const scratch = mkdtempSync(join(tmpdir(), 'divio-api-test-'));

  beforeAll(async () => {
    endpoint = platform().endpoint;
    operator = await operatorToken();
    alice = await createUser(endpoint, operator, 'alice');
    bob = await createUser(endpoint, operator, 'bob');
    aliceApp = await createApp(endpoint, alice.token, 'alice-app');
    bobApp = await createApp(endpoint, bob.token, 'bob-app');
    bobTokenId = (await request(endpoint, '/v1/me', { token: bob.token })).body.token.id;
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  /**
   * For each route: the request made on the caller's own resource and on another user's, and what
   * each must answer. Delete runs on throwaway apps so the rest of the matrix keeps its apps.
   */
  async function casesFor(route: Route, caller: TestUser): Promise<{ own: Case; foreign: Case }> {
    const m = route.method.toUpperCase();
    switch (route.path) {
      case '/v1/health':
        return { own: { method: m, path: route.path, expect: 200 }, foreign: { method: m, path: route.path, expect: 200 } };
      case '/v1/me':
      case '/v1/tokens':
      case '/v1/apps':
        if (m === 'POST' && route.path === '/v1/apps') {
          return {
            own: { method: m, path: route.path, body: { slug: `m-${Math.random().toString(36).slice(2, 8)}` }, expect: 201 },
            // Slugs are global: another user's slug is taken.
            foreign: { method: m, path: route.path, body: { slug: bobApp }, expect: 409 },
          };
        }
        if (m === 'POST') {
          return { own: { method: m, path: route.path, body: { scope: 'read' }, expect: 201 }, foreign: { method: m, path: route.path, body: {}, expect: 201 } };
        }
        return { own: { method: m, path: route.path, expect: 200 }, foreign: { method: m, path: route.path, expect: 200 } };
      case '/v1/me/token': {
        const spare = await request(endpoint, '/v1/tokens', { method: 'POST', token: caller.token, body: {} });
        return { own: { method: m, path: route.path, expect: 204, spare: spare.body.token } as Case, foreign: { method: m, path: route.path, expect: 204, spare: spare.body.token } as Case };
      }
      case '/v1/tokens/{id}': {
        const spare = await request(endpoint, '/v1/tokens', { method: 'POST', token: caller.token, body: {} });
        return {
          own: { method: m, path: `/v1/tokens/${spare.body.info.id}`, expect: 204 },
          foreign: { method: m, path: `/v1/tokens/${bobTokenId}`, expect: 404 },
        };
      }
      case '/v1/users':
        return {
          own: { method: m, path: route.path, body: m === 'POST' ? { name: `u-${Math.random().toString(36).slice(2, 8)}` } : undefined, expect: 403 },
          foreign: { method: m, path: route.path, body: m === 'POST' ? { name: 'x-never' } : undefined, expect: 403 },
        };
      case '/v1/users/{name}/disable':
      case '/v1/users/{name}/enable':
      case '/v1/users/{name}/tokens': {
        // Alice is no operator: refused on her own account and on bob's (his app still answers him at the end).
        const body = m === 'POST' && route.path.endsWith('/tokens') ? { scope: 'write' } : undefined;
        return {
          own: { method: m, path: route.path.replace('{name}', caller.name), body, expect: 403 },
          foreign: { method: m, path: route.path.replace('{name}', bob.name), body, expect: 403 },
        };
      }
      case '/v1/apps/{slug}/environments/{env}':
        if (m === 'PATCH') {
          return {
            own: { method: m, path: `/v1/apps/${aliceApp}/environments/live`, body: { replicas: 2, branch: 'release/v1' }, expect: 200 },
            foreign: { method: m, path: `/v1/apps/${bobApp}/environments/live`, body: { replicas: 2 }, expect: 404 },
          };
        }
        return { own: { method: m, path: `/v1/apps/${aliceApp}/environments/live`, expect: 200 }, foreign: { method: m, path: `/v1/apps/${bobApp}/environments/test`, expect: 404 } };
      case '/v1/apps/{slug}':
        if (m === 'DELETE') {
          const throwaway = await createApp(endpoint, caller.token, 'del');
          return { own: { method: m, path: `/v1/apps/${throwaway}`, expect: 200 }, foreign: { method: m, path: `/v1/apps/${bobApp}`, expect: 404 } };
        }
        return { own: { method: m, path: `/v1/apps/${aliceApp}`, expect: 200 }, foreign: { method: m, path: `/v1/apps/${bobApp}`, expect: 404 } };
      case '/v1/apps/{slug}/environments':
        return { own: { method: m, path: `/v1/apps/${aliceApp}/environments`, expect: 200 }, foreign: { method: m, path: `/v1/apps/${bobApp}/environments`, expect: 404 } };
      case '/v1/apps/{slug}/environments/{env}/deployments':
        // Alice's app has nothing pushed: the deployment is accepted, then fails on its own.
        return {
          own: { method: m, path: `/v1/apps/${aliceApp}/environments/test/deployments`, body: {}, expect: 202 },
          foreign: { method: m, path: `/v1/apps/${bobApp}/environments/test/deployments`, body: {}, expect: 404 },
        };
      case '/v1/apps/{slug}/deployments':
        return { own: { method: m, path: `/v1/apps/${aliceApp}/deployments`, expect: 200 }, foreign: { method: m, path: `/v1/apps/${bobApp}/deployments`, expect: 404 } };
      case '/v1/apps/{slug}/deployments/{id}':
      case '/v1/apps/{slug}/deployments/{id}/log': {
        const suffix = route.path.endsWith('/log') ? '/log' : '';
        const listed = await request(endpoint, `/v1/apps/${aliceApp}/deployments`, { token: caller.token });
        const id = listed.body.deployments[0].id as string;
        return {
          own: { method: m, path: `/v1/apps/${aliceApp}/deployments/${id}${suffix}`, expect: 200 },
          // Bob cannot reach alice's deployment through his own app either.
          foreign: { method: m, path: `/v1/apps/${bobApp}/deployments/${id}${suffix}`, expect: 404 },
        };
      }
      case '/v1/apps/{slug}/environments/{env}/rollback':
        // Nothing ever succeeded on alice's app: the rollback is refused for want of a target.
        return {
          own: { method: m, path: `/v1/apps/${aliceApp}/environments/test/rollback`, body: {}, expect: 409 },
          foreign: { method: m, path: `/v1/apps/${bobApp}/environments/test/rollback`, body: {}, expect: 404 },
        };
      case '/v1/apps/{slug}/environments/{env}/env-vars':
        // live: the matrix's deployment of test may still be running, and would make this a 409.
        if (m === 'PATCH') {
          return {
            own: { method: m, path: `/v1/apps/${aliceApp}/environments/live/env-vars`, body: { set: { GREETING: 'hi' }, unset: ['OLD'] }, expect: 200 },
            foreign: { method: m, path: `/v1/apps/${bobApp}/environments/live/env-vars`, body: { set: { GREETING: 'hi' } }, expect: 404 },
          };
        }
        return { own: { method: m, path: `/v1/apps/${aliceApp}/environments/live/env-vars`, expect: 200 }, foreign: { method: m, path: `/v1/apps/${bobApp}/environments/live/env-vars`, expect: 404 } };
      case '/v1/apps/{slug}/environments/{env}/logs':
        // Nothing was ever deployed to alice's live: the route answers, saying so.
        return { own: { method: m, path: `/v1/apps/${aliceApp}/environments/live/logs`, expect: 404 }, foreign: { method: m, path: `/v1/apps/${bobApp}/environments/live/logs`, expect: 404 } };
      case '/v1/apps/{slug}/environments/{env}/database/dump':
        return {
          own: { method: m, path: `/v1/apps/${aliceApp}/environments/test/database/dump`, expect: 200 },
          foreign: { method: m, path: `/v1/apps/${bobApp}/environments/test/database/dump`, expect: 404 },
        };
      case '/v1/apps/{slug}/environments/{env}/database/imports':
        // Not a dump: it never restores, and nothing changes.
        return {
          own: { method: m, path: `/v1/apps/${aliceApp}/environments/test/database/imports`, body: { not: 'a dump' }, expect: 422 },
          foreign: { method: m, path: `/v1/apps/${bobApp}/environments/test/database/imports`, body: { not: 'a dump' }, expect: 404 },
        };
      case '/v1/apps/{slug}/environments/{env}/database/imports/{id}/commit': {
        const body = { sha256: '0'.repeat(64), bytes: 1 };
        return {
          own: { method: m, path: `/v1/apps/${aliceApp}/environments/test/database/imports/0123456789abcdef/commit`, body, expect: 404 },
          foreign: { method: m, path: `/v1/apps/${bobApp}/environments/test/database/imports/0123456789abcdef/commit`, body, expect: 404 },
        };
      }
      case '/v1/apps/{slug}/environments/{env}/database/transfers/{id}': {
        const dump = await request(endpoint, `/v1/apps/${aliceApp}/environments/test/database/dump`, { token: caller.token });
        const id = dump.headers.get('x-divio-transfer');
        return {
          own: { method: m, path: `/v1/apps/${aliceApp}/environments/test/database/transfers/${id}`, expect: 200 },
          // Bob cannot read alice's transfer through his own app either.
          foreign: { method: m, path: `/v1/apps/${bobApp}/environments/test/database/transfers/${id}`, expect: 404 },
        };
      }
      case '/v1/apps/{slug}/environments/{env}/backups':
        if (m === 'POST') {
          // A backup of alice's (empty) live database, taken while nothing else runs there.
          return {
            own: { method: m, path: `/v1/apps/${aliceApp}/environments/live/backups`, expect: 201 },
            foreign: { method: m, path: `/v1/apps/${bobApp}/environments/live/backups`, expect: 404 },
          };
        }
        return {
          own: { method: m, path: `/v1/apps/${aliceApp}/environments/live/backups`, expect: 200 },
          foreign: { method: m, path: `/v1/apps/${bobApp}/environments/live/backups`, expect: 404 },
        };
      case '/v1/apps/{slug}/environments/{env}/backups/{id}/restore':
        return {
          own: { method: m, path: `/v1/apps/${aliceApp}/environments/live/backups/0123456789abcdef/restore`, expect: 404 },
          foreign: { method: m, path: `/v1/apps/${bobApp}/environments/live/backups/0123456789abcdef/restore`, expect: 404 },
        };
      case '/v1/apps/{slug}/environments/{env}/backups/{id}/dump': {
        const taken = await request(endpoint, `/v1/apps/${aliceApp}/environments/live/backups`, { method: 'POST', token: caller.token });
        if (taken.status !== 201) throw new Error(`taking a backup for the matrix: ${taken.status} ${JSON.stringify(taken.body)}`);
        const id = taken.body.backup.id as string;
        return {
          own: { method: m, path: `/v1/apps/${aliceApp}/environments/live/backups/${id}/dump`, expect: 200 },
          // Bob reaches alice's backup neither through his own app nor by guessing.
          foreign: { method: m, path: `/v1/apps/${bobApp}/environments/live/backups/${id}/dump`, expect: 404 },
        };
      }
      case '/v1/apps/{slug}/environments/{env}/media/credentials':
        return {
          own: { method: m, path: `/v1/apps/${aliceApp}/environments/test/media/credentials`, body: { access: 'write' }, expect: 201 },
          foreign: { method: m, path: `/v1/apps/${bobApp}/environments/test/media/credentials`, body: { access: 'read' }, expect: 404 },
        };
      default:
        throw new Error(`the authorization matrix has no case for ${m} ${(route as { path: string }).path}: add one`);
    }
  }

  it('authorization matrix: every route × (own, another user\'s, no token, bad token)', async () => {
    const badToken = 'dvt_aaaaaaaaaaaaaaaa_' + 'A'.repeat(43);
    const rows: string[] = [];
    for (const route of apiRoutes) {
      const { own, foreign } = await casesFor(route, alice);
      const token = (own as Case & { spare?: string }).spare ?? alice.token;
      const ownRes = await request(endpoint, own.path, { method: own.method, token, body: own.body });
      rows.push(`${own.method} ${route.path} own → ${ownRes.status}`);
      expect(ownRes.status, `${own.method} ${own.path} (own) ${JSON.stringify(ownRes.body)}`).toBe(own.expect);
      const foreignToken = (foreign as Case & { spare?: string }).spare ?? alice.token;
      if (route.path !== '/v1/me/token') {
        const foreignRes = await request(endpoint, foreign.path, { method: foreign.method, token: foreignToken, body: foreign.body });
        expect(foreignRes.status, `${foreign.method} ${foreign.path} (foreign) ${JSON.stringify(foreignRes.body)}`).toBe(foreign.expect);
        if (foreign.expect === 404) expect(foreignRes.body.error.code).toBe('not_found');
      }
      for (const [label, auth] of [['no token', undefined], ['bad token', badToken]] as const) {
        const res = await request(endpoint, foreign.path, { method: foreign.method, token: auth, body: foreign.body });
        const expected = accessOf(route) === 'public' ? 200 : 401;
        expect(res.status, `${foreign.method} ${foreign.path} (${label})`).toBe(expected);
        if (expected === 401) expect(res.body.error.code).toBe('unauthorized');
      }
    }
    // Bob's app survived everything alice tried.
    expect((await request(endpoint, `/v1/apps/${bobApp}`, { token: bob.token })).status).toBe(200);
    expect(rows.length).toBe(apiRoutes.length);
  });

  it("each environment gets its own database, role and bucket on the platform; deleting the app frees their names and keeps the data, closed, for the grace period", async () => {
    const slug = await createApp(endpoint, alice.token, 'prov');
    const app = (await request(endpoint, `/v1/apps/${slug}`, { token: alice.token })).body;
    const [test, live] = app.environments;
    expect(app.environments.map((e: { name: string }) => e.name)).toEqual(['test', 'live']);
    expect(test.url).toBe(endpoint.replace('127.0.0.1', `test-${slug}.localhost`));
    const { name, dataDir } = platform();
    const [container] = await docker().listContainers({ filters: { label: [`com.docker.swarm.service.name=${name}-postgres`] } });
    const sql = async (query: string) =>
      (await execa('docker', ['exec', container!.Id, 'psql', '-U', 'postgres', '-Atc', query])).stdout.trim();
    const inList = (xs: string[]) => xs.map((x) => `'${x}'`).join(',');
    const dbs = [test.database.name, live.database.name];
    expect(await sql(`SELECT count(*) FROM pg_database WHERE datname IN (${inList(dbs)})`)).toBe('2');
    expect(await sql(`SELECT count(*) FROM pg_roles WHERE rolname IN (${inList(dbs)}) AND NOT rolsuper`)).toBe('2');
    // Neither environment's role may even connect to the other's database, nor to the platform's own.
    expect(await sql(`SELECT has_database_privilege('${test.database.role}', '${live.database.name}', 'CONNECT')`)).toBe('f');
    expect(await sql(`SELECT has_database_privilege('${live.database.role}', '${test.database.name}', 'CONNECT')`)).toBe('f');
    expect(await sql(`SELECT has_database_privilege('${test.database.role}', '${test.database.name}', 'CONNECT')`)).toBe('t');
    expect(await sql(`SELECT has_database_privilege('${test.database.role}', 'divio_platform', 'CONNECT')`)).toBe('f');
    for (const env of [test, live]) expect(existsSync(join(dataDir, 'media', env.media.bucket)), env.media.bucket).toBe(true);
    expect(existsSync(join(dataDir, 'git', `${slug}.git`, 'HEAD'))).toBe(true);

    expect((await request(endpoint, `/v1/apps/${slug}`, { method: 'DELETE', token: alice.token })).status).toBe(200);
    expect(await sql(`SELECT count(*) FROM pg_database WHERE datname IN (${inList(dbs)})`)).toBe('0');
    expect(await sql(`SELECT count(*) FROM pg_roles WHERE rolname IN (${inList(dbs)})`)).toBe('0');
    // Kept under retired names that cannot log in, and buckets whose keys are revoked (test/security/app-deletion.test.ts).
    const kept = (await execa('docker', ['exec', container!.Id, 'psql', '-U', 'postgres', '-d', 'divio_platform', '-Atc', `SELECT name FROM retained_resources WHERE app_slug = '${slug}' AND kind = 'database' ORDER BY name`])).stdout.trim().split('\n');
    expect(kept).toHaveLength(2);
    expect(await sql(`SELECT string_agg(rolname || ':' || rolcanlogin, ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN (${inList(kept)})`)).toBe(kept.map((k) => `${k}:false`).join(','));
    for (const env of [test, live]) expect(existsSync(join(dataDir, 'media', env.media.bucket))).toBe(true);
    expect(existsSync(join(dataDir, 'git', `${slug}.git`))).toBe(false);
    expect((await request(endpoint, `/v1/apps/${slug}`, { token: alice.token })).status).toBe(404);
  });

  it('the operator may manage users; a read-only token may look but not change', async () => {
    const list = await request(endpoint, '/v1/users', { token: operator });
    expect(list.status).toBe(200);
    expect(list.body.users.map((u: { name: string }) => u.name)).toContain(alice.name);
    const dup = await request(endpoint, '/v1/users', { method: 'POST', token: operator, body: { name: alice.name } });
    expect(dup.status).toBe(409);
    const readOnly = await request(endpoint, '/v1/tokens', { method: 'POST', token: alice.token, body: { scope: 'read' } });
    expect(readOnly.status).toBe(201);
    const ro = readOnly.body.token as string;
    expect((await request(endpoint, `/v1/apps/${aliceApp}`, { token: ro })).status).toBe(200);
    const refused = await request(endpoint, '/v1/apps', { method: 'POST', token: ro, body: { slug: 'never-made' } });
    expect(refused.status).toBe(403);
    // Data: a read-only token may pull (dump, read media credentials) but never push or restore.
    const env = `/v1/apps/${aliceApp}/environments/test`;
    expect((await request(endpoint, `${env}/database/dump`, { token: ro })).status).toBe(200);
    expect((await request(endpoint, `${env}/database/imports`, { method: 'POST', token: ro, raw: 'PGDMP', contentType: 'application/octet-stream' })).status).toBe(403);
    expect((await request(endpoint, `${env}/backups/0123456789abcdef/restore`, { method: 'POST', token: ro })).status).toBe(403);
    expect((await request(endpoint, `${env}/backups`, { method: 'POST', token: ro })).status).toBe(403);
    expect((await request(endpoint, `${env}/media/credentials`, { method: 'POST', token: ro, body: { access: 'read' } })).status).toBe(201);
    const write = await request(endpoint, `${env}/media/credentials`, { method: 'POST', token: ro, body: { access: 'write' } });
    expect(write.status).toBe(403);
    expect(write.body.error.message).toMatch(/read-only/);
  });

  it('a revoked token answers 401 on the very next request', async () => {
    const issued = await request(endpoint, '/v1/tokens', { method: 'POST', token: alice.token, body: {} });
    const token = issued.body.token as string;
    expect((await request(endpoint, '/v1/me', { token })).status).toBe(200);
    expect((await request(endpoint, `/v1/tokens/${issued.body.info.id}`, { method: 'DELETE', token: alice.token })).status).toBe(204);
    expect((await request(endpoint, '/v1/me', { token })).status).toBe(401);
    const listed = await request(endpoint, '/v1/tokens', { token: alice.token });
    expect(listed.body.tokens.map((t: { id: string }) => t.id)).not.toContain(issued.body.info.id);
    expect(JSON.stringify(listed.body)).not.toContain(token.slice('dvt_'.length + 17));
  });

  it('bad input answers 400 naming the field; oversize bodies 413; unknown routes 404', async () => {
    const bad = await request(endpoint, '/v1/apps', { method: 'POST', token: alice.token, body: { slug: 'Not_A_Slug' } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.field).toBe('body.slug');
    const extra = await request(endpoint, '/v1/apps', { method: 'POST', token: alice.token, body: { slug: 'fine-slug', owner: 'bob' } });
    expect(extra.status).toBe(400);
    const malformed = await request(endpoint, '/v1/apps', { method: 'POST', token: alice.token, raw: '{"slug": ' });
    expect(malformed.status).toBe(400);
    const huge = await request(endpoint, '/v1/apps', { method: 'POST', token: alice.token, body: { slug: 'x'.repeat(2 * 1024 * 1024) } });
    expect(huge.status).toBe(413);
    expect(huge.body.error.code).toBe('too_large');
    const nowhere = await request(endpoint, '/v1/nothing-here', { token: alice.token });
    expect(nowhere.status).toBe(404);
    expect(nowhere.body.error.code).toBe('not_found');
  });

  it('fast-check: no body, parameter or content type makes any route answer 500', async () => {
    const jsonish = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.record(
        {
          slug: fc.string(),
          boilerplate: fc.string(),
          name: fc.string(),
          scope: fc.oneof(fc.string(), fc.constantFrom('read', 'write')),
          operator: fc.anything(),
          expiresIn: fc.oneof(fc.string(), fc.integer(), fc.double(), fc.constantFrom('30d', '0s', '99999999999w')),
          expiresAt: fc.oneof(fc.string(), fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), fc.constantFrom('2026-12-02T18:00:00+99:99')),
        },
        { requiredKeys: [] },
      ).map((v) => {
        try {
          return JSON.stringify(v);
        } catch {
          return '{}';
        }
      }),
      fc.string(),
      fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
    );
    // A user of its own: random DELETEs may remove its app and random revocations its tokens.
    const fuzz = await createUser(endpoint, operator, 'fuzz');
    const fuzzApp = await createApp(endpoint, fuzz.token, 'fuzz-app');
    // A user the operator's random requests may disable or strip of tokens without harm.
    const victim = await createUser(endpoint, operator, 'victim');
    const segment = fc.oneof(fc.constantFrom(fuzzApp, bobApp, victim.name, 'test', 'live', '..', '%00', '%2e%2e', 'aaaaaaaaaaaaaaaa'), fc.string({ maxLength: 80 }).map(encodeURIComponent));
    const contentType = fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '');
    for (const route of apiRoutes) {
      await fc.assert(
        fc.asyncProperty(jsonish, segment, segment, contentType, fc.boolean(), async (body, seg1, seg2, type, asOperator) => {
          let token = asOperator && (route.method === 'get' || route.path.startsWith('/v1/users')) ? operator : fuzz.token;
          if (route.path === '/v1/me/token') {
            token = (await request(endpoint, '/v1/tokens', { method: 'POST', token: fuzz.token, body: {} })).body.token;
          }
          const path = route.path.replace('{slug}', seg1).replace('{env}', seg2).replace('{id}', seg2).replace('{name}', seg1);
          const res = await request(endpoint, path, {
            method: route.method.toUpperCase(),
            token,
            raw: route.method === 'get' ? undefined : body,
            contentType: type || undefined,
          });
          // Random creates are allowed to succeed; what must never happen is a server error.
          expect(res.status, `${route.method} ${path} ${body.slice(0, 100)} → ${JSON.stringify(res.body)}`).toBeLessThan(500);
          // Requests nginx itself refuses (a NUL in the path) never reach the API; the rest get its envelope.
          if (res.status >= 400 && res.headers.get('content-type')?.includes('json')) {
            expect(res.body?.error?.code, JSON.stringify(res.body)).toBeTypeOf('string');
          }
        }),
        { numRuns: route.method === 'get' ? 15 : 30 },
      );
    }
  });

  it('serves a valid OpenAPI 3.1 document that lists every route', async () => {
    const res = await request(endpoint, '/v1/openapi.json');
    expect(res.status).toBe(200);
    const validator = new Validator();
    const result = await validator.validate(res.body);
    expect(result.errors ?? [], JSON.stringify(result.errors)).toEqual([]);
    expect(result.valid).toBe(true);
    const documented = new Set<string>();
    for (const [path, item] of Object.entries(res.body.paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(item)) documented.add(`${method} ${path}`);
    }
    const expected = [...apiRoutes, ...gitRoutes].map((r) => `${r.method} ${r.path}`);
    expect([...documented].sort()).toEqual([...expected].sort());
  });

  it('git over smart HTTP: clone and push with the owner\'s token; bad, missing, foreign and read-only tokens refused', async () => {
    const appRes = await request(endpoint, `/v1/apps/${aliceApp}`, { token: alice.token });
    expect(appRes.status, JSON.stringify(appRes.body)).toBe(200);
    const app = appRes.body;
    const gitEnv = (token?: string) => ({
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_NOSYSTEM: '1',
      HOME: scratch,
      ...(token
        ? {
            GIT_CONFIG_COUNT: '1',
            GIT_CONFIG_KEY_0: 'http.extraHeader',
            GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x:${token}`).toString('base64')}`,
          }
        : {}),
    });
    const run = (args: string[], cwd: string, token?: string) => execa('git', args, { cwd, env: gitEnv(token), reject: false });

    const work = join(scratch, 'work');
    const cloned = await run(['clone', app.gitUrl, work], scratch, alice.token);
    expect(cloned.exitCode, cloned.stderr).toBe(0);
    writeFileSync(join(work, 'README.md'), 'hello\n');
    await run(['add', '.'], work);
    expect((await run(['-c', 'user.name=a', '-c', 'user.email=a@x', 'commit', '-m', 'first'], work)).exitCode).toBe(0);
    const pushed = await run(['push', 'origin', 'HEAD:main'], work, alice.token);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    const head = (await run(['rev-parse', 'HEAD'], work)).stdout.trim();

    const again = join(scratch, 'again');
    expect((await run(['clone', app.gitUrl, again], scratch, alice.token)).exitCode).toBe(0);
    expect((await run(['rev-parse', 'HEAD'], again)).stdout.trim()).toBe(head);

    for (const [label, token] of [['missing', undefined], ['wrong', 'dvt_aaaaaaaaaaaaaaaa_' + 'B'.repeat(43)]] as const) {
      const listed = await run(['ls-remote', app.gitUrl], scratch, token);
      expect(listed.exitCode, label).not.toBe(0);
      expect(listed.stdout, label).toBe('');
      const probe = await fetch(`${app.gitUrl}/info/refs?service=git-upload-pack`, {
        headers: token ? { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` } : {},
      });
      expect(probe.status, label).toBe(401);
      expect(probe.headers.get('www-authenticate')).toMatch(/^Basic/);
    }

    const foreign = await run(['ls-remote', app.gitUrl], scratch, bob.token);
    expect(foreign.exitCode).not.toBe(0);
    expect(foreign.stdout).toBe('');
    const foreignProbe = await fetch(`${app.gitUrl}/info/refs?service=git-upload-pack`, {
      headers: { authorization: `Basic ${Buffer.from(`x:${bob.token}`).toString('base64')}` },
    });
    expect(foreignProbe.status).toBe(404);

    const ro = (await request(endpoint, '/v1/tokens', { method: 'POST', token: alice.token, body: { scope: 'read' } })).body.token;
    expect((await run(['ls-remote', app.gitUrl], scratch, ro)).stdout).toContain(head);
    writeFileSync(join(work, 'more.txt'), 'more\n');
    await run(['add', '.'], work);
    await run(['-c', 'user.name=a', '-c', 'user.email=a@x', 'commit', '-m', 'second'], work);
    expect((await run(['push', 'origin', 'HEAD:main'], work, ro)).exitCode).not.toBe(0);
    // The receive-pack advertisement is a write, whatever else the query says.
    const sneaky = await fetch(`${app.gitUrl}/info/refs?service=git-receive-pack&service=git-upload-pack`, {
      headers: { authorization: `Basic ${Buffer.from(`x:${ro}`).toString('base64')}` },
    });
    // Repeating the parameter is refused outright (404), never resolved in the reader's favour.
    expect(sneaky.status).toBe(404);
    const reversed = await fetch(`${app.gitUrl}/info/refs?service=git-upload-pack&service=git-receive-pack`, {
      headers: { authorization: `Basic ${Buffer.from(`x:${ro}`).toString('base64')}` },
    });
    expect(await reversed.text()).not.toContain('# service=git-receive-pack');
    const serverHead = (await run(['ls-remote', app.gitUrl, 'refs/heads/main'], scratch, alice.token)).stdout.split('\t')[0];
    expect(serverHead).toBe(head);
  });
});
