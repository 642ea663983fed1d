/**
 * The platform API as a Hono app: JSON routes under /v1 (validated by the shared schemas, which
 * also produce the OpenAPI document), and git smart HTTP under /git. Built from its parts so tests
 * can run it in-process against real ones.
 */
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Hook } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import type { Context } from 'hono';
import { getConnInfo } from '@hono/node-server/conninfo';
import * as routes from '../../shared/api/routes.js';
import { accessOf } from '../../shared/api/routes.js';
import type { ErrorEnvelope, Health } from '../../shared/api/schemas.js';
import { generateToken } from '../../shared/api/tokens.js';
import { Accounts, renderToken, renderUser } from './accounts.js';
import type { RuntimeConfig } from '../runtime-config.js';
import { AppsService } from './apps-service.js';
import { authenticate, hasScope, principalOf, requireAccess, type ApiEnv } from './auth.js';
import { ApiError, conflict, notFound } from './errors.js';
import { gitAccessFor, parseGitPath, serveGit } from './git/http-backend.js';
import type { DatabaseCluster, GitHosting, MediaStorage } from './parts.js';
import type { Store } from './store.js';
import type { DeployService } from './deploy/deploy-service.js';
import { FINAL_STATES, renderDeployment, type DeploymentStore } from './deploy/deployment-store.js';
import { createDeploymentBody } from '../../shared/api/schemas.js';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { DatabaseTransfers } from './data/database-transfers.js';
import type { RetainedResources } from './retained-resources.js';
import { renderBackup, renderTransfer } from './data/data-store.js';
import type { PrunedBackupRow } from './data/database-transfers.js';

export interface ServerDeps {
  /** Absent on a platform without a runtime (and in tests of the API alone). */
  deploys?: { service: DeployService; store: DeploymentStore };
  /** Absent on a platform without pg tools (and in tests of the API alone). */
  transfers?: DatabaseTransfers;
  /** A deleted app's data kept for a grace period (absent: dropped with the app). */
  retained?: RetainedResources;
  store: Store;
  cluster: DatabaseCluster;
  media: MediaStorage;
  git: GitHosting & { readonly root: string };
  config: Pick<RuntimeConfig, 'name' | 'publicUrl' | 'domain' | 'media' | 'version' | 'bodyLimit'>;
  /** The daily backup of live (HH:MM[:SS] UTC), shown with the backups; absent when there is none. */
  backupSchedule?: string;
  log: (line: string) => void;
}

export const OPENAPI_PATH = '/v1/openapi.json';
/** Long enough for a large sync; the CLI asks again when a pair expires mid-way. */
const MEDIA_CREDENTIALS_TTL_SECONDS = 3600;
const DATABASE_IMPORT_PATH = /^\/v1\/apps\/[^/]+\/environments\/[^/]+\/database\/imports$/;

function isDatabaseImport(method: string, path: string): boolean {
  return method === 'POST' && DATABASE_IMPORT_PATH.test(path);
}

export function buildServer(deps: ServerDeps): { app: OpenAPIHono<ApiEnv>; apps: AppsService } {
  const { store } = deps;
  const apps = new AppsService({ ...deps, workloads: deps.deploys?.service });
  const accounts = new Accounts(store);
  const app = new OpenAPIHono<ApiEnv>({ defaultHook: validationFailed });

  app.onError((error, c) => errorResponse(c, error, deps.log));
  app.notFound((c) => c.json(envelope('not_found', `No route for ${c.req.method} ${c.req.path}`), 404));
  // An environment's host reaches the API only when no route of the router took it: nothing is
  // deployed there (yet, or any more, after a delete). Browsers get a page that says so.
  app.use('*', async (c, next) => {
    const host = environmentHost(c.req.header('host'), deps.config.domain);
    if (!host) return next();
    return c.html(nothingDeployedPage(host), 404);
  });
  const limit = bodyLimit({ maxSize: deps.config.bodyLimit, onError: () => tooLarge(deps.config.bodyLimit) });
  // Database imports stream dumps of any size straight into pg_restore; everything else is JSON.
  app.use('/v1/*', (c, next) => (isDatabaseImport(c.req.method, c.req.path) ? next() : limit(c, next)));

  const on = <R extends (typeof routes.apiRoutes)[number]>(route: R) => ({
    ...route,
    middleware: [requireAccess(store, accessOf(route))],
  });

  app.openapi(on(routes.getHealth), async (c) => {
    const body = await health(deps);
    return c.json(body, body.status === 'ok' ? 200 : 503);
  });

  app.openapi(on(routes.getMe), (c) => {
    const { user, token } = principalOf(c);
    return c.json({ user: renderUser(user), token: renderToken(token) }, 200);
  });

  app.openapi(on(routes.revokeCurrentToken), async (c) => {
    const { user, token } = principalOf(c);
    await store.revokeToken(user.id, token.id);
    return c.body(null, 204);
  });

  app.openapi(on(routes.listTokens), async (c) => {
    const { user } = principalOf(c);
    return c.json({ tokens: (await store.listTokens(user.id)).map(renderToken) }, 200);
  });

  app.openapi(on(routes.createToken), async (c) => {
    return c.json(await accounts.issue(principalOf(c).user, c.req.valid('json')), 201);
  });

  app.openapi(on(routes.revokeToken), async (c) => {
    const { user } = principalOf(c);
    const { id } = c.req.valid('param');
    if (!(await store.revokeToken(user.id, id))) throw notFound('Token');
    return c.body(null, 204);
  });

  app.openapi(on(routes.listUsers), async (c) => {
    return c.json({ users: await accounts.list() }, 200);
  });

  app.openapi(on(routes.createUser), async (c) => {
    const { name, operator = false } = c.req.valid('json');
    const issued = generateToken();
    const created = await store.createUserWithToken(name, operator, { id: issued.id, hash: issued.hash, scope: 'write' });
    if (!created) throw conflict(`A user called "${name}" already exists`, 'body.name');
    return c.json({ user: renderUser(created.user), token: issued.token, info: renderToken(created.token) }, 201);
  });

  app.openapi(on(routes.disableUser), async (c) => {
    return c.json(await accounts.disable(principalOf(c).user, c.req.valid('param').name), 200);
  });

  app.openapi(on(routes.enableUser), async (c) => {
    return c.json(await accounts.enable(c.req.valid('param').name), 200);
  });

  app.openapi(on(routes.revokeUserTokens), async (c) => {
    return c.json(await accounts.revokeTokens(principalOf(c).user, c.req.valid('param').name), 200);
  });

  app.openapi(on(routes.issueUserToken), async (c) => {
    return c.json(await accounts.issueToken(c.req.valid('param').name, c.req.valid('json')), 201);
  });

  app.openapi(on(routes.listApps), async (c) => {
    const { user } = principalOf(c);
    return c.json({ apps: await apps.renderMany(await store.listApps(user.id)) }, 200);
  });

  app.openapi(on(routes.createApp), async (c) => {
    const { user } = principalOf(c);
    const { slug, boilerplate } = c.req.valid('json');
    return c.json(await apps.create(user, slug, boilerplate ?? null), 201);
  });

  app.openapi(on(routes.getApp), async (c) => {
    return c.json(await apps.render(await ownedApp(c)), 200);
  });

  app.openapi(on(routes.deleteApp), async (c) => {
    return c.json(await apps.delete(await ownedApp(c)), 200);
  });

  app.openapi(on(routes.listEnvironments), async (c) => {
    const rendered = await apps.render(await ownedApp(c));
    return c.json({ environments: rendered.environments }, 200);
  });

  app.openapi(on(routes.getEnvironment), async (c) => {
    const { env } = c.req.valid('param');
    const rendered = await apps.render(await ownedApp(c));
    const found = rendered.environments.find((e) => e.name === env);
    if (!found) throw notFound('Environment');
    return c.json(found, 200);
  });

  const deploysOf = () => {
    if (!deps.deploys) throw new ApiError(503, 'deploys_unavailable', 'This platform cannot deploy: it has no runtime');
    return deps.deploys;
  };

  app.openapi(on(routes.createDeployment), async (c) => {
    const { env } = c.req.valid('param');
    // The body is optional: none at all means "the branch head".
    const text = await c.req.text();
    let body: unknown = {};
    if (text.trim() !== '') {
      try {
        body = JSON.parse(text);
      } catch {
        throw new ApiError(400, 'invalid_input', 'body: not valid JSON', { field: 'body' });
      }
    }
    const parsed = createDeploymentBody.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = ['body', ...(issue?.path ?? [])].join('.');
      throw new ApiError(400, 'invalid_input', `${field}: ${issue?.message ?? 'invalid'}`, { field });
    }
    const row = await deploysOf().service.start(await ownedApp(c), env, parsed.data.commit);
    return c.json(renderDeployment(row), 202);
  });

  app.openapi(on(routes.listDeployments), async (c) => {
    const { environment } = c.req.valid('query');
    const rows = await deploysOf().store.forApp((await ownedApp(c)).id, environment);
    return c.json({ deployments: rows.map(renderDeployment) }, 200);
  });

  app.openapi(on(routes.getDeployment), async (c) => {
    return c.json(renderDeployment(await ownedDeployment(c)), 200);
  });

  app.openapi(on(routes.getDeploymentLog), async (c) => {
    const deployment = await ownedDeployment(c);
    const { follow } = c.req.valid('query');
    const following = follow === '1' || follow === 'true';
    const store = deploysOf().store;
    const encoder = new TextEncoder();
    let seq = '0';
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        for (;;) {
          const lines = await store.logSince(deployment.id, seq);
          if (lines.length > 0) {
            seq = lines[lines.length - 1]!.seq;
            controller.enqueue(encoder.encode(lines.map((l) => `${l.line}\n`).join('')));
            return;
          }
          const current = following ? await store.get(deployment.id) : undefined;
          if (!following || !current || FINAL_STATES.includes(current.state)) {
            // One more read: lines written just before the state changed.
            const last = await store.logSince(deployment.id, seq);
            if (last.length > 0) {
              seq = last[last.length - 1]!.seq;
              controller.enqueue(encoder.encode(last.map((l) => `${l.line}\n`).join('')));
              return;
            }
            controller.close();
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 300));
        }
      },
    });
    // A stream, which the typed helpers do not model: the route documents it as text/plain.
    return new Response(body, {
      status: 200,
      headers: { 'content-type': 'text/plain; charset=utf-8', 'x-divio-deployment-state': deployment.state, 'cache-control': 'no-store' },
    }) as never;
  });

  app.openapi(on(routes.rollback), async (c) => {
    const { env } = c.req.valid('param');
    const { deployment, withDatabase } = c.req.valid('json');
    const row = await deploysOf().service.rollback(await ownedApp(c), env, deployment, { withDatabase });
    return c.json(renderDeployment(row), 202);
  });

  app.openapi(on(routes.listEnvVars), async (c) => {
    const { env } = c.req.valid('param');
    const [row] = (await store.environments([(await ownedApp(c)).id])).filter((e) => e.name === env);
    if (!row) throw notFound('Environment');
    return c.json({ variables: await store.envVars(row.id) }, 200);
  });

  app.openapi(on(routes.changeEnvVars), async (c) => {
    const { env } = c.req.valid('param');
    const { set = {}, unset = [] } = c.req.valid('json');
    const both = unset.filter((name) => Object.hasOwn(set, name));
    if (both.length) throw new ApiError(400, 'invalid_input', `body.unset: ${both.join(', ')} also set in the same request`, { field: 'body.unset' });
    const result = await deploysOf().service.changeVariables(await ownedApp(c), env, set, unset);
    return c.json({ variables: result.variables, deployment: result.deployment ? renderDeployment(result.deployment) : null }, 200);
  });

  app.openapi(on(routes.getRuntimeLogs), async (c) => {
    const { env } = c.req.valid('param');
    const { follow, tail } = c.req.valid('query');
    const stream = await deploysOf().service.runtimeLogs(await ownedApp(c), env, {
      follow: follow === '1' || follow === 'true',
      tail: tail === undefined ? undefined : Number(tail),
      signal: c.req.raw.signal,
    });
    if (!stream) throw new ApiError(404, 'not_deployed', `Nothing has been deployed to ${env} yet`, { hint: 'divio project deploy ' + env });
    return new Response(stream, { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' } }) as never;
  });

  app.openapi(on(routes.changeEnvironment), async (c) => {
    const { env } = c.req.valid('param');
    const change = c.req.valid('json');
    const owned = await ownedApp(c);
    await deploysOf().service.changeEnvironment(owned, env, change);
    // At once, and before answering: the next push is checked against the new branch and setting.
    if (change.branch !== undefined || change.allowForcePush !== undefined) await apps.secureRepository(owned);
    const rendered = await apps.render(owned);
    return c.json(rendered.environments.find((e) => e.name === env)!, 200);
  });

  async function ownedDeployment(c: Context<ApiEnv>) {
    const app = await ownedApp(c);
    const id = c.req.param('id');
    const row = id ? await deploysOf().store.get(id) : undefined;
    if (!row || row.app_slug !== app.slug) throw notFound('Deployment');
    return row;
  }

  const transfersOf = () => {
    if (!deps.transfers) throw new ApiError(503, 'transfers_unavailable', 'This platform cannot move databases');
    return deps.transfers;
  };
  const nodeBindings = (c: Context<ApiEnv>) => {
    const { incoming, outgoing } = c.env ?? {};
    if (!incoming || !outgoing) throw new ApiError(503, 'transfers_unavailable', 'Streaming needs the Node HTTP server');
    return { incoming, outgoing };
  };

  app.openapi(on(routes.dumpDatabase), async (c) => {
    const { env } = c.req.valid('param');
    const { compression } = c.req.valid('query');
    const environment = await ownedEnvironment(c, env);
    const { outgoing } = nodeBindings(c);
    try {
      await transfersOf().dump(environment, outgoing, Number(compression ?? '0'));
    } catch (error) {
      if (!outgoing.headersSent) throw error;
      deps.log(`dump of ${environment.db_name} failed after it started: ${(error as Error).message}`);
      outgoing.destroy();
    }
    return RESPONSE_ALREADY_SENT as never;
  });

  app.openapi(on(routes.importDatabase), async (c) => {
    const { env } = c.req.valid('param');
    const environment = await ownedEnvironment(c, env);
    const row = await transfersOf().receive(environment, nodeBindings(c).incoming);
    return c.json(renderTransfer(row, env), 201);
  });

  app.openapi(on(routes.commitDatabaseImport), async (c) => {
    const { env, id } = c.req.valid('param');
    const environment = await ownedEnvironment(c, env);
    const done = await transfersOf().commit(environment, id, c.req.valid('json'));
    return c.json(
      { transfer: renderTransfer(done.transfer, env), backup: done.backup ? renderBackup(done.backup, env) : null, ...renderPruned(done.pruned, env) },
      200,
    );
  });

  app.openapi(on(routes.getDatabaseTransfer), async (c) => {
    const { env, id } = c.req.valid('param');
    const row = await transfersOf().transfer(await ownedEnvironment(c, env), id);
    if (!row) throw notFound('Transfer');
    return c.json(renderTransfer(row, env), 200);
  });

  app.openapi(on(routes.listBackups), async (c) => {
    const { env } = c.req.valid('param');
    const transfers = transfersOf();
    const rows = await transfers.backups(await ownedEnvironment(c, env));
    const { keep, keepDays, max } = transfers.retention;
    const retention = { keep, keepDays, max, schedule: deps.backupSchedule ?? null };
    return c.json({ backups: rows.map((row) => renderBackup(row, env)), keep, retention }, 200);
  });

  app.openapi(on(routes.createBackup), async (c) => {
    const { env } = c.req.valid('param');
    const done = await transfersOf().takeBackup(await ownedEnvironment(c, env), 'manual');
    return c.json({ backup: renderBackup(done.backup, env), ...renderPruned(done.pruned, env) }, 201);
  });

  app.openapi(on(routes.downloadBackup), async (c) => {
    const { env, id } = c.req.valid('param');
    const { compression } = c.req.valid('query');
    const environment = await ownedEnvironment(c, env);
    const { outgoing } = nodeBindings(c);
    try {
      // A file on disk: zlib's default level, unless asked otherwise.
      await transfersOf().dumpBackup(environment, id, outgoing, Number(compression ?? '6'));
    } catch (error) {
      if (!outgoing.headersSent) throw error;
      deps.log(`dump of backup ${id} failed after it started: ${(error as Error).message}`);
      outgoing.destroy();
    }
    return RESPONSE_ALREADY_SENT as never;
  });

  app.openapi(on(routes.restoreBackup), async (c) => {
    const { env, id } = c.req.valid('param');
    const done = await transfersOf().restore(await ownedEnvironment(c, env), id);
    return c.json(
      { transfer: renderTransfer(done.transfer, env), backup: done.backup ? renderBackup(done.backup, env) : null, ...renderPruned(done.pruned, env) },
      200,
    );
  });

  app.openapi(on(routes.issueMediaCredentials), async (c) => {
    const { env } = c.req.valid('param');
    const { access } = c.req.valid('json');
    if (access === 'write' && !hasScope(principalOf(c).token.scope, 'write')) {
      throw new ApiError(403, 'forbidden', 'This token is read-only: pushing media needs a token with the write scope');
    }
    const environment = await ownedEnvironment(c, env);
    const grant = await deps.media.issueTemporaryCredentials({ bucket: environment.media_bucket, access, ttlSeconds: MEDIA_CREDENTIALS_TTL_SECONDS });
    return c.json(
      {
        endpoint: grant.publicUrl,
        region: grant.region,
        bucket: grant.bucket,
        prefix: environment.media_prefix || grant.prefix,
        access: grant.access,
        accessKeyId: grant.accessKeyId,
        secretAccessKey: grant.secretAccessKey,
        expiresAt: grant.expiresAt.toISOString(),
      },
      201,
    );
  });

  async function ownedEnvironment(c: Context<ApiEnv>, name: string) {
    const app = await ownedApp(c);
    const environment = (await store.environments([app.id])).find((e) => e.name === name);
    if (!environment) throw notFound('Environment');
    return environment;
  }

  async function ownedApp(c: Context<ApiEnv>) {
    const { user } = principalOf(c);
    const slug = c.req.param('slug');
    const found = slug ? await store.ownedApp(user.id, slug) : undefined;
    if (!found) {
      // Another user's app answers exactly as a missing one: its existence is not revealed.
      throw new ApiError(404, 'not_found', `App "${slug}" not found`, {
        hint: 'Check the slug with `divio project list`; an app of another account is not visible to this token.',
      });
    }
    return found;
  }

  app.on(['GET', 'POST'], `${routes.GIT_PATH_PREFIX}/*`, async (c) => {
    const path = parseGitPath(c.req.path.slice(routes.GIT_PATH_PREFIX.length + 1));
    const url = new URL(c.req.url);
    const service = path ? gitAccessFor(c.req.method, path.subpath, url.searchParams) : null;
    if (!path || !service) return c.text('Not a git smart-HTTP request\n', 404);
    let principal;
    try {
      principal = await authenticate(store, c.req.header('authorization'));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return gitChallenge(error.message);
      throw error;
    }
    const owned = await store.ownedApp(principal.user.id, path.slug);
    if (!owned) return c.text('Repository not found\n', 404);
    if (!hasScope(principal.token.scope, service.access)) {
      return c.text('This token is read-only: pushing needs a token with the write scope\n', 403);
    }
    try {
      await apps.secureRepository(owned);
    } catch (error) {
      // Served unprotected, a push could rewrite a deployed branch or reveal the deployment refs.
      deps.log(`git ${path.slug}: could not secure the repository: ${error instanceof Error ? error.message : String(error)}`);
      return c.text('The repository is not available right now; try again\n', 503);
    }
    return serveGit(c.req.raw, {
      projectRoot: deps.git.root,
      slug: path.slug,
      subpath: path.subpath,
      access: service.access,
      remoteUser: principal.user.name,
      remoteAddr: remoteAddress(c),
      onError: (message) => deps.log(`git ${path.slug}: ${message}`),
    });
  });

  app.doc31(OPENAPI_PATH, {
    openapi: '3.1.0',
    info: { title: 'divio platform API', version: deps.config.version },
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  app.openAPIRegistry.registerComponent('securitySchemes', 'gitBasic', {
    type: 'http',
    scheme: 'basic',
    description: 'Any user name; an API token as the password',
  });
  for (const gitRoute of routes.gitRoutes) {
    app.openAPIRegistry.registerPath({
      method: gitRoute.method,
      path: gitRoute.path,
      summary: gitRoute.summary,
      security: [{ gitBasic: [] }],
      request: { params: routes.gitParams },
      responses: {
        200: { description: 'git smart-HTTP protocol data' },
        401: { description: 'Missing or bad token' },
        403: { description: 'Read-only token used to push' },
        404: { description: 'No such repository visible to this token' },
      },
    });
  }

  return { app, apps };
}

const validationFailed: Hook<unknown, ApiEnv, string, unknown> = (result, c) => {
  if (result.success) return;
  const issue = result.error.issues[0];
  const field = [result.target === 'json' ? 'body' : result.target, ...(issue?.path ?? [])].join('.');
  // A refused record key (a variable name) carries the reason in its nested issue.
  const nested = (issue as { issues?: { message: string }[] } | undefined)?.issues?.[0];
  const message = issue ? `${field}: ${nested?.message ?? issue.message}` : `Invalid ${result.target}`;
  return c.json(envelope('invalid_input', message, { field }), 400);
};

function errorResponse(c: Context, error: Error, log: (line: string) => void): Response {
  if (error instanceof ApiError) return c.json(error.envelope(), error.status);
  if (error instanceof HTTPException) {
    if (error.status === 413) return c.json(envelope('too_large', 'The request body is too large'), 413);
    // Hono's own 400s: malformed JSON and the like.
    const status = error.status >= 500 ? 500 : error.status;
    return c.json(envelope(status === 400 ? 'invalid_input' : 'error', error.message || 'Bad request'), status);
  }
  log(`internal error on ${c.req.method} ${c.req.path}: ${error.stack ?? error.message}`);
  return c.json(envelope('internal', 'The platform failed to handle this request'), 500);
}

function tooLarge(limit: number): never {
  throw new ApiError(413, 'too_large', `The request body is larger than ${limit} bytes`);
}

function remoteAddress(c: Context): string | undefined {
  try {
    return getConnInfo(c).remote.address;
  } catch {
    // In-process requests (app.request in tests) have no socket.
    return undefined;
  }
}

function gitChallenge(message: string): Response {
  return new Response(`${message}\n`, {
    status: 401,
    headers: { 'www-authenticate': 'Basic realm="divio"', 'content-type': 'text/plain; charset=utf-8' },
  });
}

function envelope(code: string, message: string, extra: { field?: string } = {}): ErrorEnvelope {
  return { error: { code, message, ...extra } };
}

async function health(deps: ServerDeps): Promise<Health> {
  const checks: [string, () => Promise<void>][] = [
    ['database', () => deps.cluster.check()],
    ['media', () => deps.media.check()],
    ['git', () => deps.git.check()],
  ];
  const components = await Promise.all(
    checks.map(async ([name, check]) => {
      try {
        await withTimeout(check(), 3000);
        return { name, state: 'ok' as const };
      } catch (error) {
        return { name, state: 'down' as const, detail: error instanceof Error ? error.message : String(error) };
      }
    }),
  );
  const status = components.every((c) => c.state === 'ok') ? 'ok' : 'degraded';
  return { status, version: deps.config.version, components };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function renderPruned(pruned: PrunedBackupRow[], env: 'test' | 'live') {
  return { pruned: pruned.map((b) => b.id), prunedBackups: pruned.map((b) => ({ ...renderBackup(b, env), why: b.why })) };
}

/** `test-shop.localhost` from a Host header (port dropped), when it names an environment's host. */
export function environmentHost(header: string | undefined, domain: string): string | undefined {
  const host = header?.toLowerCase().replace(/:\d+$/, '');
  if (!host || !host.endsWith(`.${domain}`)) return undefined;
  const label = host.slice(0, -domain.length - 1);
  return /^(test|live)-[a-z][a-z0-9-]{0,62}$/.test(label) ? host : undefined;
}

function nothingDeployedPage(host: string): string {
  // `host` passed environmentHost's pattern: letters, digits, '-' and '.', nothing to escape.
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Nothing deployed at ${host}</title></head>
<body><h1>Nothing is deployed here</h1><p>No app is deployed at ${host} on this divio platform.</p>
<p>Its owner deploys with <code>divio project deploy</code>.</p></body></html>
`;
}
