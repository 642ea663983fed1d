/**
 * Every route of the platform API, declared once. The server registers handlers against these
 * objects (request validation and the OpenAPI document come from them); the CLI's client calls
 * them by name and validates responses with the same schemas.
 */
import { createRoute } from '@hono/zod-openapi';
import type { RouteConfig } from '@hono/zod-openapi';
import * as s from './schemas.js';

/**
 * Who may call a route. `read`/`write` are token scopes; app-scoped routes additionally check that
 * the app belongs to the token's user (another user's app answers 404, as if it did not exist).
 */
export type Access = 'public' | 'read' | 'write' | 'operator';

const json = <T>(schema: T) => ({ 'application/json': { schema } });
const errors = {
  400: { description: 'Invalid input; `error.field` names the field', content: json(s.errorEnvelope) },
  401: { description: 'Missing, unknown, revoked or expired token, or a disabled account', content: json(s.errorEnvelope) },
  403: { description: 'The token lacks the scope or role this needs', content: json(s.errorEnvelope) },
  404: { description: 'No such resource visible to this token', content: json(s.errorEnvelope) },
  413: { description: 'Request body too large', content: json(s.errorEnvelope) },
} as const;

function define<const R extends RouteConfig>(access: Access, config: R) {
  const security = access === 'public' ? [] : [{ bearer: [] }];
  return createRoute({ ...config, security, 'x-divio-access': access } as R & { 'x-divio-access': Access });
}

export function accessOf(route: { 'x-divio-access': Access }): Access {
  return route['x-divio-access'];
}

export const getHealth = define('public', {
  method: 'get',
  path: '/v1/health',
  summary: 'Platform health: every component and whether it answers',
  responses: {
    200: { description: 'All components answer', content: json(s.health) },
    503: { description: 'Some component is down', content: json(s.health) },
  },
});

export const getMe = define('read', {
  method: 'get',
  path: '/v1/me',
  summary: 'The user and token making this request',
  responses: { 200: { description: 'Who you are', content: json(s.me) }, 401: errors[401] },
});

export const revokeCurrentToken = define('read', {
  method: 'delete',
  path: '/v1/me/token',
  summary: 'Revoke the token making this request (log out)',
  responses: { 204: { description: 'Revoked' }, 401: errors[401] },
});

export const listTokens = define('read', {
  method: 'get',
  path: '/v1/tokens',
  summary: "The caller's tokens (never their secrets)",
  responses: { 200: { description: 'Tokens', content: json(s.tokenList) }, 401: errors[401] },
});

export const createToken = define('write', {
  method: 'post',
  path: '/v1/tokens',
  summary: 'Issue another token for the caller; the secret is in this response only',
  request: { body: { content: json(s.createTokenBody), required: true } },
  responses: {
    201: { description: 'Issued', content: json(s.issuedToken) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    413: errors[413],
  },
});

export const revokeToken = define('write', {
  method: 'delete',
  path: '/v1/tokens/{id}',
  summary: "Revoke one of the caller's tokens",
  request: { params: s.tokenParams },
  responses: { 204: { description: 'Revoked' }, 400: errors[400], 401: errors[401], 403: errors[403], 404: errors[404] },
});

export const listUsers = define('operator', {
  method: 'get',
  path: '/v1/users',
  summary: 'All users (operator)',
  responses: { 200: { description: 'Users', content: json(s.userList) }, 401: errors[401], 403: errors[403] },
});

export const createUser = define('operator', {
  method: 'post',
  path: '/v1/users',
  summary: 'Create a user and its first token (operator); the secret is in this response only',
  request: { body: { content: json(s.createUserBody), required: true } },
  responses: {
    201: { description: 'Created', content: json(s.createdUser) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    409: { description: 'A user of that name exists', content: json(s.errorEnvelope) },
    413: errors[413],
  },
});

export const disableUser = define('operator', {
  method: 'post',
  path: '/v1/users/{name}/disable',
  summary: "Disable a user (operator): every request with their tokens, git included, answers 401 until enabled; nothing of theirs is removed",
  request: { params: s.userParams },
  responses: {
    200: { description: 'Disabled', content: json(s.user) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    409: { description: 'Operators cannot disable themselves', content: json(s.errorEnvelope) },
  },
});

export const enableUser = define('operator', {
  method: 'post',
  path: '/v1/users/{name}/enable',
  summary: "Enable a disabled user again (operator); their tokens that are neither revoked nor expired work again",
  request: { params: s.userParams },
  responses: { 200: { description: 'Enabled', content: json(s.user) }, 400: errors[400], 401: errors[401], 403: errors[403], 404: errors[404] },
});

export const revokeUserTokens = define('operator', {
  method: 'delete',
  path: '/v1/users/{name}/tokens',
  summary: "Revoke every token of a user (operator), at once; issue a new one with POST on the same path",
  request: { params: s.userParams },
  responses: {
    200: { description: 'Revoked', content: json(s.tokensRevoked) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    409: { description: 'Operators cannot revoke all of their own tokens', content: json(s.errorEnvelope) },
  },
});

export const issueUserToken = define('operator', {
  method: 'post',
  path: '/v1/users/{name}/tokens',
  summary: 'Issue a token for a user (operator), optionally with a lifetime; the secret is in this response only',
  request: { params: s.userParams, body: { content: json(s.createTokenBody), required: true } },
  responses: {
    201: { description: 'Issued', content: json(s.issuedToken) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    413: errors[413],
  },
});

export const listApps = define('read', {
  method: 'get',
  path: '/v1/apps',
  summary: "The caller's apps",
  responses: { 200: { description: 'Apps', content: json(s.appList) }, 401: errors[401] },
});

export const createApp = define('write', {
  method: 'post',
  path: '/v1/apps',
  summary: 'Register an app: its repository, and test and live environments with their own database and media',
  request: { body: { content: json(s.createAppBody), required: true } },
  responses: {
    201: { description: 'Created', content: json(s.app) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    409: { description: 'The slug is taken', content: json(s.errorEnvelope) },
    413: errors[413],
  },
});

export const getApp = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}',
  summary: 'One app',
  request: { params: s.slugParams },
  responses: { 200: { description: 'The app', content: json(s.app) }, 400: errors[400], 401: errors[401], 404: errors[404] },
});

export const deleteApp = define('write', {
  method: 'delete',
  path: '/v1/apps/{slug}',
  summary: 'Delete an app: its services, routes, images and repository go at once; its databases and media are kept for the grace period',
  request: { params: s.slugParams },
  responses: {
    200: { description: 'Deleted', content: json(s.deletedApp) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    409: { description: 'A deployment of the app is running', content: json(s.errorEnvelope) },
  },
});

export const listEnvironments = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}/environments',
  summary: "An app's environments",
  request: { params: s.slugParams },
  responses: {
    200: { description: 'Environments', content: json(s.environmentList) },
    400: errors[400],
    401: errors[401],
    404: errors[404],
  },
});

export const getEnvironment = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}/environments/{env}',
  summary: 'One environment of an app',
  request: { params: s.environmentParams },
  responses: {
    200: { description: 'The environment', content: json(s.environment) },
    400: errors[400],
    401: errors[401],
    404: errors[404],
  },
});

export const createDeployment = define('write', {
  method: 'post',
  path: '/v1/apps/{slug}/environments/{env}/deployments',
  summary: "Deploy the environment's branch head (or a given commit): build once, release, roll out",
  // The body is optional (`{}` or none); the handler validates it, since an absent body is not JSON.
  request: { params: s.environmentParams },
  responses: {
    202: { description: 'Accepted; follow its log', content: json(s.deployment) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    409: { description: 'Another deployment of this environment is in progress', content: json(s.errorEnvelope) },
    413: errors[413],
  },
});

export const listDeployments = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}/deployments',
  summary: "An app's deployments, newest first",
  request: { params: s.slugParams, query: s.deploymentListQuery },
  responses: {
    200: { description: 'Deployments', content: json(s.deploymentList) },
    400: errors[400],
    401: errors[401],
    404: errors[404],
  },
});

export const getDeployment = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}/deployments/{id}',
  summary: 'One deployment',
  request: { params: s.deploymentParams },
  responses: { 200: { description: 'The deployment', content: json(s.deployment) }, 400: errors[400], 401: errors[401], 404: errors[404] },
});

export const getDeploymentLog = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}/deployments/{id}/log',
  summary: "A deployment's build and release log as plain text; `follow=1` streams it until the deployment ends",
  request: { params: s.deploymentParams, query: s.followQuery },
  responses: {
    200: { description: 'The log', content: { 'text/plain': { schema: s.z.string() } } },
    400: errors[400],
    401: errors[401],
    404: errors[404],
  },
});

export const rollback = define('write', {
  method: 'post',
  path: '/v1/apps/{slug}/environments/{env}/rollback',
  summary: "Serve an earlier successful deployment's image again (default: the one before the current), health-checked and start-first",
  request: { params: s.environmentParams, body: { content: json(s.rollbackBody), required: true } },
  responses: {
    202: { description: 'Accepted; follow its log', content: json(s.deployment) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    409: { description: 'Nothing to roll back to, or a deployment is in progress', content: json(s.errorEnvelope) },
    413: errors[413],
  },
});

export const listEnvVars = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}/environments/{env}/env-vars',
  summary: "An environment's user-set variables",
  request: { params: s.environmentParams },
  responses: { 200: { description: 'Variables', content: json(s.envVars) }, 400: errors[400], 401: errors[401], 404: errors[404] },
});

export const changeEnvVars = define('write', {
  method: 'patch',
  path: '/v1/apps/{slug}/environments/{env}/env-vars',
  summary: 'Set and unset variables; a running environment is redeployed with them (health-checked, start-first)',
  request: { params: s.environmentParams, body: { content: json(s.changeEnvVarsBody), required: true } },
  responses: {
    200: { description: 'Changed', content: json(s.envVarsChanged) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    409: { description: 'A deployment of this environment is in progress', content: json(s.errorEnvelope) },
    413: errors[413],
  },
});

export const getRuntimeLogs = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}/environments/{env}/logs',
  summary: "The environment's runtime output (all replicas) as plain text; `follow=1` keeps streaming",
  request: { params: s.environmentParams, query: s.runtimeLogsQuery },
  responses: {
    200: { description: 'The log', content: { 'text/plain': { schema: s.z.string() } } },
    400: errors[400],
    401: errors[401],
    404: errors[404],
  },
});

export const changeEnvironment = define('write', {
  method: 'patch',
  path: '/v1/apps/{slug}/environments/{env}',
  summary: "Change an environment's branch (used from the next deploy), replicas (applied now when it runs) or whether pushes may rewrite its branch",
  request: { params: s.environmentParams, body: { content: json(s.changeEnvironmentBody), required: true } },
  responses: {
    200: { description: 'Changed', content: json(s.environment) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    413: errors[413],
  },
});

const binary = (description: string) => ({ 'application/octet-stream': { schema: s.z.string().openapi({ format: 'binary', description }) } });

export const dumpDatabase = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}/environments/{env}/database/dump',
  summary:
    "Stream the environment's database as a PostgreSQL custom-format dump (pg_dump of the server's major version). " +
    'The `x-divio-transfer` header names the transfer; once the stream ended, the transfer holds its byte count and sha256.',
  request: { params: s.environmentParams, query: s.dumpQuery },
  responses: {
    200: { description: 'The dump stream', content: binary('custom-format dump') },
    400: errors[400],
    401: errors[401],
    404: errors[404],
    503: { description: 'The database cannot be dumped now', content: json(s.errorEnvelope) },
  },
});

export const importDatabase = define('write', {
  method: 'post',
  path: '/v1/apps/{slug}/environments/{env}/database/imports',
  summary:
    'Stream a custom-format dump in: it is restored into a new database, which replaces the environment\'s only after ' +
    'the client confirms the digest (`…/imports/{id}/commit`). Nothing changes before that.',
  request: { params: s.environmentParams, body: { content: binary('custom-format dump') } },
  responses: {
    201: { description: 'Restored into a new database; waiting for the commit', content: json(s.databaseTransfer) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    409: { description: 'Another import into this environment is in progress', content: json(s.errorEnvelope) },
    422: { description: 'The dump did not restore; nothing changed', content: json(s.errorEnvelope) },
  },
});

export const commitDatabaseImport = define('write', {
  method: 'post',
  path: '/v1/apps/{slug}/environments/{env}/database/imports/{id}/commit',
  summary: "Swap a restored import in, if the client's digest matches; the replaced database is kept as a backup",
  request: { params: s.transferParams, body: { content: json(s.commitTransferBody), required: true } },
  responses: {
    200: { description: 'Swapped in', content: json(s.databaseReplaced) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    409: { description: 'Not waiting for a commit, or the digests differ (the import is dropped)', content: json(s.errorEnvelope) },
  },
});

export const getDatabaseTransfer = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}/environments/{env}/database/transfers/{id}',
  summary: 'A database transfer: its state, and once complete its byte count and sha256',
  request: { params: s.transferParams },
  responses: { 200: { description: 'The transfer', content: json(s.databaseTransfer) }, 400: errors[400], 401: errors[401], 404: errors[404] },
});

export const listBackups = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}/environments/{env}/backups',
  summary: 'The database copies the platform keeps for an environment, newest first',
  request: { params: s.environmentParams },
  responses: { 200: { description: 'Backups', content: json(s.backupList) }, 400: errors[400], 401: errors[401], 404: errors[404] },
});

export const restoreBackup = define('write', {
  method: 'post',
  path: '/v1/apps/{slug}/environments/{env}/backups/{id}/restore',
  summary: "Put a backup's copy in place of the environment's database; the replaced database is kept as a backup",
  request: { params: s.backupParams },
  responses: {
    200: { description: 'Restored', content: json(s.databaseReplaced) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    409: { description: 'Another import or restore is in progress', content: json(s.errorEnvelope) },
  },
});

export const createBackup = define('write', {
  method: 'post',
  path: '/v1/apps/{slug}/environments/{env}/backups',
  summary: "Take a backup of the environment's database now (a consistent copy, kept on the platform; the app keeps running)",
  request: { params: s.environmentParams },
  responses: {
    201: { description: 'Taken', content: json(s.backupTaken) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
    409: { description: 'An import, restore or backup of this environment is in progress', content: json(s.errorEnvelope) },
    503: { description: 'The database cannot be copied now', content: json(s.errorEnvelope) },
  },
});

export const downloadBackup = define('read', {
  method: 'get',
  path: '/v1/apps/{slug}/environments/{env}/backups/{id}/dump',
  summary:
    'Stream a backup as a PostgreSQL custom-format dump (what `import db` and `pg_restore` take). ' +
    'The `x-divio-transfer` header names the transfer; once the stream ended, the transfer holds its byte count and sha256.',
  request: { params: s.backupParams, query: s.backupDumpQuery },
  responses: {
    200: { description: 'The dump stream', content: binary('custom-format dump') },
    400: errors[400],
    401: errors[401],
    404: errors[404],
    503: { description: 'The backup cannot be dumped now', content: json(s.errorEnvelope) },
  },
});

export const issueMediaCredentials = define('read', {
  method: 'post',
  path: '/v1/apps/{slug}/environments/{env}/media/credentials',
  summary: "Short-lived S3 credentials for the environment's media bucket alone (write access needs a write token)",
  request: { params: s.environmentParams, body: { content: json(s.mediaCredentialsBody), required: true } },
  responses: {
    201: { description: 'Issued', content: json(s.mediaCredentials) },
    400: errors[400],
    401: errors[401],
    403: errors[403],
    404: errors[404],
  },
});

/** The JSON routes, in the order the server registers them. */
export const apiRoutes = [
  getHealth,
  getMe,
  revokeCurrentToken,
  listTokens,
  createToken,
  revokeToken,
  listUsers,
  createUser,
  disableUser,
  enableUser,
  revokeUserTokens,
  issueUserToken,
  listApps,
  createApp,
  getApp,
  deleteApp,
  listEnvironments,
  getEnvironment,
  createDeployment,
  listDeployments,
  getDeployment,
  getDeploymentLog,
  rollback,
  listEnvVars,
  changeEnvVars,
  getRuntimeLogs,
  changeEnvironment,
  dumpDatabase,
  importDatabase,
  commitDatabaseImport,
  getDatabaseTransfer,
  listBackups,
  restoreBackup,
  createBackup,
  downloadBackup,
  issueMediaCredentials,
] as const;

/**
 * Git smart HTTP, served by `git http-backend` behind the API (HTTP Basic: any user name, a token as
 * the password). Not JSON, but documented in the OpenAPI document all the same. Access is decided
 * by the git service invoked: upload-pack reads, receive-pack writes.
 */
export const GIT_PATH_PREFIX = '/git';
export const gitRoutes = [
  { method: 'get', path: '/git/{slug}.git/info/refs', summary: 'Ref advertisement (`?service=git-upload-pack` or `git-receive-pack`)' },
  { method: 'post', path: '/git/{slug}.git/git-upload-pack', summary: 'Fetch and clone (read)' },
  { method: 'post', path: '/git/{slug}.git/git-receive-pack', summary: 'Push (write)' },
] as const;

export const gitParams = s.slugParams;

export function gitUrl(endpoint: string, appSlug: string): string {
  return `${endpoint.replace(/\/+$/, '')}${GIT_PATH_PREFIX}/${appSlug}.git`;
}
