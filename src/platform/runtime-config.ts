/**
 * What the platform's own services (API, media store) are told at start: addresses of the parts
 * and their credentials. `divio platform start` writes it as a Swarm secret; services read it from
 * the file named by DIVIO_PLATFORM_CONFIG. Never logged: it holds passwords.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';

export const runtimeConfigSchema = z.strictObject({
  /** Prefix of every Swarm object of this platform (services, network, secrets). */
  name: z.string().regex(/^[a-z][a-z0-9-]{0,30}$/),
  version: z.string(),
  /** Apps answer at `http://ENV-SLUG.DOMAIN:PORT`. */
  domain: z.string(),
  /** The router's public URL: the API, git and registry all answer here. */
  publicUrl: z.url(),
  database: z.strictObject({
    /** A superuser (or CREATEDB + CREATEROLE) connection; the platform's own state lives in `platformDatabase` on it. */
    adminUrl: z.string(),
    platformDatabase: z.string(),
    /** Host and port app containers use to reach the cluster. */
    appHost: z.string(),
    appPort: z.number().int(),
  }),
  media: z.strictObject({
    /** S3 endpoint as the API reaches it (and app containers, when `appEndpoint` is absent). */
    endpoint: z.url(),
    /** S3 endpoint as app containers reach it: the gateway, on their environment's network. */
    appEndpoint: z.url().optional(),
    /** Base URL under which browsers fetch objects (`PUBLIC/BUCKET/KEY`). */
    publicUrl: z.url(),
    region: z.string(),
    accessKeyId: z.string(),
    secretAccessKey: z.string(),
    /**
     * Embedded store only: a JSON file of per-environment key pairs the store reloads, so each
     * environment gets credentials for its own bucket alone. Absent for an external S3, where
     * environments share the configured credentials.
     */
    keysFile: z.string().optional(),
  }),
  registry: z.strictObject({
    /** How the Docker engine names the registry in image references (push and pull). */
    address: z.string(),
    /** How the API reaches the registry's HTTP API (to ask whether an image exists). */
    url: z.url().optional(),
    /** The registry's account: the builder pushes with it, Swarm pulls with it (given per service). */
    username: z.string().optional(),
    password: z.string().optional(),
  }),
  /** What one build, app task and release job may use (operator defaults, platform.json `limits`). */
  limits: z
    .strictObject({
      build: z.strictObject({ timeoutSeconds: z.number().int().positive(), memoryMb: z.number().int().positive() }),
      app: z.strictObject({ cpus: z.number().positive(), memoryMb: z.number().int().positive() }),
      release: z.strictObject({ cpus: z.number().positive(), memoryMb: z.number().int().positive() }),
    })
    .optional(),
  /** Where app environments run and how they are routed (absent: deploying is not available). */
  runtime: z
    .strictObject({
      network: z.string(),
      routerService: z.string(),
      /** Directory (inside the API's container) the router includes `*.conf` app routes from. */
      routerAppsDir: z.string(),
      /** The bridge network builds run on (cut off from the host and the platform); the engine's default when absent. */
      buildNetwork: z.string().optional(),
      /**
       * Services that join every environment's network (the router, the data gateway), with the
       * names they answer to there. Absent (an older configuration): apps run on `network`.
       */
      sharedServices: z.array(z.strictObject({ service: z.string(), aliases: z.array(z.string()) })).optional(),
    })
    .optional(),
  git: z.strictObject({ root: z.string() }),
  /**
   * base64url of the 32-byte key that seals the secrets the API stores in the platform database
   * (src/platform/api/secrets.ts). Optional here only so that services which never read those
   * secrets accept a configuration without it; the API refuses to start without it.
   */
  secretsKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be 32 bytes of base64url').optional(),
  /** The operator the CLI that ran `platform start` logs in as; only the token's hash is here. */
  operator: z.strictObject({ name: z.string(), tokenId: z.string(), tokenHash: z.string() }),
  /**
   * Backups of each environment's database (every import and backup restore keeps the database it
   * replaces) and how long they are kept (data/backup-retention.ts): the newest `keep`, and every
   * one younger than `keepDays` up to `max`. `schedule`: a daily backup of every live environment
   * at HH:MM[:SS] UTC (absent: none).
   */
  /** A deleted app's databases and buckets are kept this long (retained-resources.ts), then purged. */
  deletedApps: z.strictObject({ retentionDays: z.number().int().min(0).max(3650).default(7) }).default({ retentionDays: 7 }),
  backups: z
    .strictObject({
      keep: z.number().int().min(1).max(100).default(3),
      keepDays: z.number().int().min(0).max(3650).default(7),
      max: z.number().int().min(1).max(1000).default(10),
      schedule: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$/, 'must be HH:MM or HH:MM:SS (UTC)').optional(),
    })
    .prefault({}),
  /** Largest JSON request body accepted, in bytes (git pushes are streamed and not limited by this). */
  bodyLimit: z.number().int().positive().default(1024 * 1024),
  listen: z.strictObject({ host: z.string(), port: z.number().int() }).default({ host: '0.0.0.0', port: 8080 }),
});

export type RuntimeConfig = z.output<typeof runtimeConfigSchema>;

export async function readRuntimeConfig(file = process.env.DIVIO_PLATFORM_CONFIG): Promise<RuntimeConfig> {
  if (!file) throw new Error('DIVIO_PLATFORM_CONFIG is not set: it names the platform configuration file');
  return runtimeConfigSchema.parse(JSON.parse(await readFile(file, 'utf8')));
}
