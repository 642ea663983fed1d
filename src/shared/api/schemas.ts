/**
 * The platform API's data shapes: one source for the server's request validation, the OpenAPI
 * document it serves, and the CLI client's types. Uses the `z` of @hono/zod-openapi (zod with
 * `.openapi()` metadata) so the same objects document themselves.
 */
import { z } from '@hono/zod-openapi';

export { z };
import { SLUG_PATTERN, newSlugProblem } from '../project-config.js';
import { MAX_TOKEN_LIFETIME_SECONDS, TOKEN_LIFETIME_PATTERN, lifetimeSeconds } from './tokens.js';

export const slug = z
  .string()
  .regex(SLUG_PATTERN, 'must be 2-63 characters: lower-case letters, digits and "-", starting with a letter')
  .openapi({ example: 'shop' });

export const userName = slug.openapi({ example: 'alice' });

export const ENVIRONMENT_NAMES = ['test', 'live'] as const;
export const environmentName = z.enum(ENVIRONMENT_NAMES).openapi({ example: 'test' });
export type EnvironmentName = z.infer<typeof environmentName>;

export const TOKEN_SCOPES = ['read', 'write'] as const;
/** `read` may look and clone; `write` may also create, change, delete and push. */
export const tokenScope = z.enum(TOKEN_SCOPES);
export type TokenScope = z.infer<typeof tokenScope>;

export const errorEnvelope = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'invalid_input' }),
      message: z.string(),
      /** The request field at fault, as a dotted path (`body.slug`). */
      field: z.string().optional(),
      hint: z.string().optional(),
    }),
  })
  .openapi('Error');
export type ErrorEnvelope = z.infer<typeof errorEnvelope>;

export const componentHealth = z.object({
  name: z.string(),
  state: z.enum(['ok', 'down']),
  detail: z.string().optional(),
});
export const health = z
  .object({
    status: z.enum(['ok', 'degraded']),
    version: z.string(),
    components: z.array(componentHealth),
  })
  .openapi('Health');
export type Health = z.infer<typeof health>;

export const user = z
  .object({
    name: userName,
    operator: z.boolean(),
    createdAt: z.string().datetime(),
    /** Set while the operator has the account disabled: every request with its tokens answers 401. */
    disabledAt: z.string().datetime().nullable(),
  })
  .openapi('User');
export type User = z.infer<typeof user>;

export const tokenInfo = z
  .object({
    id: z.string(),
    scope: tokenScope,
    createdAt: z.string().datetime(),
    lastUsedAt: z.string().datetime().nullable(),
    /** After this the token answers 401; null: it never expires. */
    expiresAt: z.string().datetime().nullable(),
  })
  .openapi('TokenInfo');
export type TokenInfo = z.infer<typeof tokenInfo>;

export const me = z.object({ user, token: tokenInfo }).openapi('Me');
export type Me = z.infer<typeof me>;

/** A token's secret appears in exactly one response: the one that creates it. */
export const issuedToken = z
  .object({ token: z.string(), info: tokenInfo })
  .openapi('IssuedToken');
export type IssuedToken = z.infer<typeof issuedToken>;

export const createUserBody = z
  .strictObject({ name: userName, operator: z.boolean().optional() })
  .openapi('CreateUserBody');
export const createdUser = z.object({ user, token: z.string(), info: tokenInfo }).openapi('CreatedUser');
export type CreatedUser = z.infer<typeof createdUser>;

/** Seconds, or a duration such as `30d`; at most ten years. */
export const tokenLifetime = z
  .union([z.number().int(), z.string().regex(TOKEN_LIFETIME_PATTERN, 'must be seconds or a duration such as 90s, 45m, 12h, 30d, 52w')])
  .refine((value) => lifetimeSeconds(value) !== undefined, `must be from 1 second to ${MAX_TOKEN_LIFETIME_SECONDS / 86_400} days`)
  .openapi({ example: '30d' });

export const createTokenBody = z
  .strictObject({
    scope: tokenScope.optional(),
    /** The token expires this long after it is issued (at most one of expiresIn and expiresAt). */
    expiresIn: tokenLifetime.optional(),
    /** The token expires at this moment, which must be in the future. */
    expiresAt: z.string().datetime({ offset: true }).optional(),
  })
  .openapi('CreateTokenBody');
export type CreateTokenBody = z.infer<typeof createTokenBody>;

export const environment = z
  .object({
    name: environmentName,
    /** Where the environment answers HTTP through the platform's router. */
    url: z.string().url(),
    branch: z.string(),
    database: z.object({ name: z.string(), role: z.string(), host: z.string(), port: z.number().int() }),
    media: z.object({ bucket: z.string(), prefix: z.string(), endpoint: z.string(), publicUrl: z.string() }),
    /** How many tasks serve the environment (test defaults to 1; live is configurable). */
    replicas: z.number().int(),
    /** Whether a push may rewrite or delete `branch` (otherwise git refuses it: deployed history is kept). */
    allowForcePush: z.boolean(),
    /** A backup of the database is taken before each release command runs (live: on by default). */
    backupBeforeRelease: z.boolean().optional(),
    createdAt: z.string().datetime(),
  })
  .openapi('Environment');
export type Environment = z.infer<typeof environment>;

export const app = z
  .object({
    slug,
    owner: userName,
    boilerplate: z.string().nullable(),
    /** Smart-HTTP clone URL; authenticate with any user name and a token as the password. */
    gitUrl: z.string().url(),
    createdAt: z.string().datetime(),
    environments: z.array(environment),
  })
  .openapi('App');
export type App = z.infer<typeof app>;

export const deletedApp = z
  .object({
    slug,
    /** Its databases and media are kept, closed to everyone, until then (for an operator to bring back); null: dropped at once. */
    dataKeptUntil: z.string().datetime().nullable(),
  })
  .openapi('DeletedApp');
export type DeletedApp = z.infer<typeof deletedApp>;

export const boilerplateName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,62}$/, 'must be a boilerplate name: lower-case letters, digits and "-"');

export const createAppBody = z
  .strictObject({
    slug: slug.superRefine((value, ctx) => {
      const problem = newSlugProblem(value);
      if (problem) ctx.addIssue({ code: 'custom', message: `"${value}" cannot name a new app: ${problem}` });
    }),
    boilerplate: boilerplateName.optional(),
  })
  .openapi('CreateAppBody');
export type CreateAppBody = z.infer<typeof createAppBody>;

export const appList = z.object({ apps: z.array(app) }).openapi('AppList');
export const userListEntry = user
  .extend({
    /** Tokens neither revoked nor expired. */
    liveTokens: z.number().int().nonnegative(),
    lastUsedAt: z.string().datetime().nullable(),
  })
  .openapi('UserListEntry');
export type UserListEntry = z.infer<typeof userListEntry>;
export const userList = z.object({ users: z.array(userListEntry) }).openapi('UserList');
export const userParams = z.object({ name: userName.openapi({ param: { name: 'name', in: 'path' } }) });
export const tokensRevoked = z
  .object({ user: userName, revoked: z.number().int().nonnegative().openapi({ description: 'How many live tokens were revoked' }) })
  .openapi('TokensRevoked');
export type TokensRevoked = z.infer<typeof tokensRevoked>;
export const tokenList = z.object({ tokens: z.array(tokenInfo) }).openapi('TokenList');
export const environmentList = z.object({ environments: z.array(environment) }).openapi('EnvironmentList');

export const slugParams = z.object({ slug: slug.openapi({ param: { name: 'slug', in: 'path' } }) });
export const environmentParams = z.object({
  slug: slug.openapi({ param: { name: 'slug', in: 'path' } }),
  env: environmentName.openapi({ param: { name: 'env', in: 'path' } }),
});
export const tokenParams = z.object({
  id: z
    .string()
    .regex(/^[a-z0-9]{16}$/, 'must be a token id (16 lower-case letters and digits)')
    .openapi({ param: { name: 'id', in: 'path' } }),
});

export const commitSha = z.string().regex(/^[0-9a-f]{40}$/, 'must be a full commit id (40 hex characters)');

export const DEPLOYMENT_STATES = ['queued', 'building', 'releasing', 'deploying', 'succeeded', 'failed'] as const;
export const deploymentState = z.enum(DEPLOYMENT_STATES);
export type DeploymentState = z.infer<typeof deploymentState>;

export const deployment = z
  .object({
    id: z.string(),
    app: slug,
    environment: environmentName,
    kind: z.enum(['deploy', 'rollback']),
    state: deploymentState,
    commit: commitSha.nullable(),
    image: z.string().nullable(),
    /** One line: why it failed (absent while running and on success). */
    reason: z.string().nullable(),
    /** The backup of the database taken before this deployment's release command, if one was. */
    releaseBackup: z.string().nullable().optional(),
    createdAt: z.string().datetime(),
    finishedAt: z.string().datetime().nullable(),
  })
  .openapi('Deployment');
export type Deployment = z.infer<typeof deployment>;

export const deploymentList = z.object({ deployments: z.array(deployment) }).openapi('DeploymentList');

export const createDeploymentBody = z
  .strictObject({
    /** Deploy this commit instead of the environment's branch head. */
    commit: commitSha.optional(),
  })
  .openapi('CreateDeploymentBody');

export const deploymentParams = z.object({
  slug: slug.openapi({ param: { name: 'slug', in: 'path' } }),
  id: z
    .string()
    .regex(/^[1-9][0-9]{0,17}$/, 'must be a deployment id')
    .openapi({ param: { name: 'id', in: 'path' } }),
});

export const deploymentListQuery = z.object({
  environment: environmentName.optional().openapi({ param: { name: 'environment', in: 'query' } }),
});

export const followQuery = z.object({
  follow: z.enum(['0', '1', 'true', 'false']).optional().openapi({ param: { name: 'follow', in: 'query' } }),
});

export const rollbackBody = z
  .strictObject({
    /** Serve this earlier successful deployment's image (default: the one before the current). */
    deployment: z.string().regex(/^[1-9][0-9]{0,17}$/, 'must be a deployment id').optional(),
    /**
     * Also put back the database as it was before the current deployment's release ran (the backup
     * taken then); the database it replaces is kept as a backup.
     */
    withDatabase: z.boolean().optional(),
  })
  .openapi('RollbackBody');

/** Variables the platform sets itself and users may not replace (the app depends on them being true). */
export const RESERVED_VARIABLES = ['STAGE', 'PORT'] as const;
export const variableName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be a variable name: letters, digits and "_", not starting with a digit')
  .refine((name) => !(RESERVED_VARIABLES as readonly string[]).includes(name), 'is set by the platform and cannot be changed')
  .refine((name) => name !== '__proto__', 'is not allowed');
export const variableValue = z.string().max(32 * 1024, 'must be at most 32 KiB');

export const envVars = z.object({ variables: z.record(z.string(), z.string()) }).openapi('EnvVars');
export const changeEnvVarsBody = z
  .strictObject({
    set: z.record(variableName, variableValue).optional(),
    unset: z.array(variableName).max(200).optional(),
  })
  .openapi('ChangeEnvVarsBody');
export const envVarsChanged = z
  .object({
    variables: z.record(z.string(), z.string()),
    /** The redeployment that applies the change, or null when nothing runs yet (it applies at the first deploy). */
    deployment: deployment.nullable(),
  })
  .openapi('EnvVarsChanged');
export type EnvVarsChanged = z.infer<typeof envVarsChanged>;

export const runtimeLogsQuery = z.object({
  follow: z.enum(['0', '1', 'true', 'false']).optional().openapi({ param: { name: 'follow', in: 'query' } }),
  tail: z
    .string()
    .regex(/^(0|[1-9][0-9]{0,5})$/, 'must be a number of lines (0-999999)')
    .optional()
    .openapi({ param: { name: 'tail', in: 'query' } }),
});

export const branchName = z
  .string()
  .max(200)
  .regex(/^(?!-)(?!.*\.\.)(?!.*\/\/)(?!.*@\{)[A-Za-z0-9._/-]+(?<!\.lock)(?<![./])$/, 'must be a git branch name');

export const changeEnvironmentBody = z
  .strictObject({
    branch: branchName.optional(),
    replicas: z.number().int().min(1).max(20).optional(),
    /** Let pushes rewrite or delete the environment's branch (off by default). */
    allowForcePush: z.boolean().optional(),
    /** Back the database up before each release command (live: on by default). */
    backupBeforeRelease: z.boolean().optional(),
  })
  .openapi('ChangeEnvironmentBody');

// ---- data between environments: database transfers, backups, media credentials

/** Ids the platform makes for transfers and backups: 16 lower-case hex characters. */
export const dataId = z.string().regex(/^[0-9a-f]{16}$/, 'must be an id of 16 hex characters');
export const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256 digest (64 hex characters)');

export const transferParams = z.object({
  slug: slug.openapi({ param: { name: 'slug', in: 'path' } }),
  env: environmentName.openapi({ param: { name: 'env', in: 'path' } }),
  id: dataId.openapi({ param: { name: 'id', in: 'path' } }),
});
export const backupParams = transferParams;

export const TRANSFER_STATES = ['running', 'restored', 'swapping', 'completed', 'failed'] as const;
export const databaseTransfer = z
  .object({
    id: dataId,
    environment: environmentName,
    /** `dump`: the environment's database streamed out; `import`: a dump streamed in; `backup`: a copy kept on the platform. */
    kind: z.enum(['dump', 'import', 'backup']),
    state: z.enum(TRANSFER_STATES),
    /** Bytes of the dump stream, as the platform sent or received them. */
    bytes: z.number().int().nonnegative(),
    /** sha256 of the dump stream; set once the stream is complete. */
    sha256: sha256Hex.nullable(),
    error: z.string().nullable(),
    createdAt: z.string().datetime(),
    finishedAt: z.string().datetime().nullable(),
  })
  .openapi('DatabaseTransfer');
export type DatabaseTransfer = z.infer<typeof databaseTransfer>;

export const dumpQuery = z.object({
  /** zlib level of the dump's data blocks: 0 (none, fastest on a local link) to 9. */
  compression: z
    .string()
    .regex(/^[0-9]$/, 'must be a zlib level 0-9')
    .optional()
    .openapi({ param: { name: 'compression', in: 'query' } }),
});

export const commitTransferBody = z
  .strictObject({
    /** What the client sent, as it measured it: the swap happens only when both sides agree. */
    sha256: sha256Hex,
    bytes: z.number().int().nonnegative(),
  })
  .openapi('CommitTransferBody');

/**
 * Why a backup was taken: the database an import (`push db`) or a backup restore replaced, a copy
 * taken before a release command, the daily scheduled backup, or one asked for (`backups create`).
 */
export const BACKUP_REASONS = ['import', 'restore', 'release', 'scheduled', 'manual'] as const;
export const backup = z
  .object({
    id: dataId,
    environment: environmentName,
    reason: z.enum(BACKUP_REASONS),
    /** Size of the kept database on the cluster. */
    sizeBytes: z.number().int().nonnegative(),
    createdAt: z.string().datetime(),
  })
  .openapi('Backup');
export type Backup = z.infer<typeof backup>;

export const backupRetention = z
  .object({
    /** The newest this many are always kept. */
    keep: z.number().int().positive(),
    /** Backups younger than this many days are kept too, up to `max` in all. */
    keepDays: z.number().int().nonnegative(),
    max: z.number().int().positive(),
    /** The daily backup of live (HH:MM or HH:MM:SS, UTC); null when there is none. */
    schedule: z.string().nullable(),
  })
  .openapi('BackupRetention');
export type BackupRetention = z.infer<typeof backupRetention>;

export const backupList = z
  .object({
    backups: z.array(backup),
    /** Same as `retention.keep` (kept for older clients). */
    keep: z.number().int().positive(),
    /** Absent from older platforms. */
    retention: backupRetention.optional(),
  })
  .openapi('BackupList');

/** A backup an operation dropped to stay within the retention, and why. */
export const prunedBackup = backup.extend({ why: z.string() }).openapi('PrunedBackup');
export type PrunedBackup = z.infer<typeof prunedBackup>;

export const backupTaken = z
  .object({
    backup,
    pruned: z.array(dataId),
    prunedBackups: z.array(prunedBackup).default([]),
  })
  .openapi('BackupTaken');
export type BackupTaken = z.infer<typeof backupTaken>;

export const backupDumpQuery = dumpQuery;

export const databaseReplaced = z
  .object({
    transfer: databaseTransfer,
    /** The database that was replaced, now kept as a backup. */
    backup: backup.nullable(),
    /** Older backups dropped to stay within the retention. */
    pruned: z.array(dataId),
    /** The same backups, with what they were and why they were dropped (absent from older platforms). */
    prunedBackups: z.array(prunedBackup).default([]),
  })
  .openapi('DatabaseReplaced');
export type DatabaseReplaced = z.infer<typeof databaseReplaced>;

export const mediaCredentialsBody = z
  .strictObject({
    /** `read` for pull; `write` (needs a write token) for push. */
    access: z.enum(['read', 'write']),
  })
  .openapi('MediaCredentialsBody');

export const mediaCredentials = z
  .object({
    /** S3 endpoint as a client outside the platform reaches it (path-style). */
    endpoint: z.string(),
    region: z.string(),
    bucket: z.string(),
    /** Key prefix inside the bucket ('' when the environment owns the whole bucket). */
    prefix: z.string(),
    access: z.enum(['read', 'write']),
    accessKeyId: z.string(),
    secretAccessKey: z.string(),
    expiresAt: z.string().datetime(),
  })
  .openapi('MediaCredentials');
export type MediaCredentials = z.infer<typeof mediaCredentials>;
