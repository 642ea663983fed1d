/**
 * The platform's settings: DATA/platform.json (mode 0600) in the data directory. Name, domain and
 * port, the secrets generated at the first start, the operator token's id and hash, and the
 * external parts an operator plugs in instead of the embedded ones. The last data directory used
 * is remembered in the user's config dir so `stop` and `status` find it without flags.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import bcrypt from 'bcryptjs';
import { z } from 'zod';
import { DivioError, ExitCode, InvalidInputError } from '../../core/errors.js';
import { writeFileAtomic } from '../../core/fs-util.js';
import { userConfigDir } from '../../core/paths.js';

export const DEFAULT_NAME = 'divio';
export const DEFAULT_DOMAIN = 'localhost';
export const DEFAULT_PORT = 8600;
export const SETTINGS_FILE = 'platform.json';

/** Prefix of every Swarm object; also what the runtime config accepts. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]{0,30}$/;
/** A DNS name (it ends up in the router's configuration, so nothing else may pass). */
export const DOMAIN_PATTERN = /^(?=.{1,200}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

const externalSchema = z.strictObject({
  database: z.strictObject({ url: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL') }).optional(),
  media: z
    .strictObject({
      endpoint: z.url(),
      publicUrl: z.url(),
      region: z.string().min(1),
      accessKeyId: z.string().min(1),
      secretAccessKey: z.string().min(1),
    })
    .optional(),
  registry: z
    .strictObject({ address: z.string().min(1), username: z.string().min(1).optional(), password: z.string().min(1).optional() })
    .optional(),
});

/**
 * Operator defaults for what one build, one app task and one release job may use. Edit them in
 * platform.json (`limits`) and run `divio platform start` again; they apply to the next build and
 * the next deployment.
 */
export const limitsSchema = z.strictObject({
  build: z
    .strictObject({
      /** A build running longer is stopped and the deployment fails with that reason. */
      timeoutSeconds: z.number().int().min(60).max(6 * 3600).default(20 * 60),
      /** Memory (no swap) of each RUN step's container. */
      memoryMb: z.number().int().min(64).max(1024 * 1024).default(2048),
    })
    .prefault({}),
  app: z
    .strictObject({
      cpus: z.number().min(0.01).max(1024).default(1),
      memoryMb: z.number().int().min(16).max(1024 * 1024).default(512),
    })
    .prefault({}),
  release: z
    .strictObject({
      cpus: z.number().min(0.01).max(1024).default(1),
      memoryMb: z.number().int().min(16).max(1024 * 1024).default(512),
    })
    .prefault({}),
});

export type PlatformLimits = z.output<typeof limitsSchema>;

/** HH:MM or HH:MM:SS, UTC. */
export const BACKUP_SCHEDULE_PATTERN = /^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$/;

export const settingsSchema = z.strictObject({
  name: z.string().regex(NAME_PATTERN),
  domain: z.string().regex(DOMAIN_PATTERN),
  port: z.number().int().min(1).max(65535),
  secrets: z.strictObject({
    postgresPassword: z.string().min(16),
    mediaAccessKeyId: z.string().min(8),
    mediaSecretAccessKey: z.string().min(16),
    /** Seals the secrets the API stores in its database; added to older settings at the next start. */
    secretsKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/).optional(),
    /**
     * The embedded registry's one account (user `divio`): only the API (pushes, manifest checks)
     * and Swarm (pulls, given per service) hold it. Added to older settings at the next start. The
     * bcrypt hash is kept so the registry's htpasswd secret is the same at every start (a new salt
     * would restart the registry each time).
     */
    registryPassword: z.string().min(16).optional(),
    registryPasswordHash: z.string().startsWith('$2').optional(),
  }),
  operator: z.strictObject({ tokenId: z.string(), tokenHash: z.string() }).optional(),
  external: externalSchema.default({}),
  /** Database copies kept per environment (absent: the platform's default, 3). */
  backupsKeep: z.number().int().min(1).max(100).optional(),
  /** Backups younger than this many days are kept too (absent: 7), up to backupsMax (absent: 10). */
  backupsKeepDays: z.number().int().min(0).max(3650).optional(),
  backupsMax: z.number().int().min(1).max(1000).optional(),
  /** Days a deleted app's databases and media are kept before they are purged (absent: 7). */
  deletedAppsDays: z.number().int().min(0).max(3650).optional(),
  /** The daily backup of live, HH:MM[:SS] UTC (absent: none). */
  backupSchedule: z.string().regex(BACKUP_SCHEDULE_PATTERN).optional(),
  /** Absent: the defaults of limitsSchema. */
  limits: limitsSchema.optional(),
});

export type PlatformSettings = z.output<typeof settingsSchema>;
export type ExternalParts = PlatformSettings['external'];

export function settingsPath(dataDir: string): string {
  return join(dataDir, SETTINGS_FILE);
}

/** `$XDG_DATA_HOME/divio/platform`, or ~/.local/share/divio/platform. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(base, 'divio', 'platform');
}

export async function readSettings(dataDir: string): Promise<PlatformSettings | undefined> {
  let text: string;
  try {
    text = await readFile(settingsPath(dataDir), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DivioError(`cannot read ${settingsPath(dataDir)}: ${(error as Error).message}`, {
      exitCode: ExitCode.environment,
      cause: error,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = settingsSchema.safeParse(json);
  if (!parsed.success) {
    const detail = json === undefined ? 'not JSON' : parsed.error.issues.map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`).join('; ');
    throw new InvalidInputError(`${settingsPath(dataDir)} is not valid platform settings (${detail})`, {
      hint: 'Fix the file (it is JSON), or move the data directory away to start a new platform.',
    });
  }
  return parsed.data;
}

export async function writeSettings(dataDir: string, settings: PlatformSettings): Promise<void> {
  const path = settingsPath(dataDir);
  await writeFileAtomic(path, JSON.stringify(settingsSchema.parse(settings), null, 2) + '\n', 0o600);
  await chmod(path, 0o600);
}

function randomAlphanumeric(length: number, alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'): string {
  // Rejection sampling keeps every character equally likely.
  const out: string[] = [];
  const limit = 256 - (256 % alphabet.length);
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < limit && out.length < length) out.push(alphabet[byte % alphabet.length]!);
    }
  }
  return out.join('');
}

export function generateSecrets(): PlatformSettings['secrets'] {
  return withRegistrySecrets({
    postgresPassword: randomBytes(24).toString('base64url'),
    mediaAccessKeyId: `DIVIO${randomAlphanumeric(15)}`,
    mediaSecretAccessKey: randomAlphanumeric(40, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'),
    secretsKey: randomBytes(32).toString('base64url'),
  });
}

export const REGISTRY_USER = 'divio';

/** The registry's password and its bcrypt hash (the only hash the registry's htpasswd accepts), made once. */
export function withRegistrySecrets(secrets: PlatformSettings['secrets']): PlatformSettings['secrets'] {
  if (secrets.registryPassword && secrets.registryPasswordHash && bcrypt.compareSync(secrets.registryPassword, secrets.registryPasswordHash)) {
    return secrets;
  }
  const password = secrets.registryPassword ?? randomBytes(24).toString('base64url');
  return { ...secrets, registryPassword: password, registryPasswordHash: bcrypt.hashSync(password, 10) };
}

/** The embedded registry's htpasswd file: one line, the platform's account. */
export function registryHtpasswd(secrets: PlatformSettings['secrets']): string {
  return `${REGISTRY_USER}:${withRegistrySecrets(secrets).registryPasswordHash}\n`;
}

export interface SettingsFlags {
  name?: string;
  domain?: string;
  port?: number;
  backupsKeep?: number;
  backupsKeepDays?: number;
  backupsMax?: number;
  deletedAppsDays?: number;
  /** HH:MM[:SS] UTC, or `off` to stop the daily backup. */
  backupSchedule?: string;
}

export function validateFlags(flags: SettingsFlags): void {
  if (flags.name !== undefined && !NAME_PATTERN.test(flags.name)) {
    throw new InvalidInputError(`"${flags.name}" is not a valid platform name`, {
      hint: 'Use up to 31 lower-case letters, digits and "-", starting with a letter.',
    });
  }
  if (flags.domain !== undefined && !DOMAIN_PATTERN.test(flags.domain)) {
    throw new InvalidInputError(`"${flags.domain}" is not a valid domain`, {
      hint: 'Give a DNS name such as localhost or apps.example.com (lower case, no scheme or port).',
    });
  }
  if (flags.port !== undefined && (!Number.isInteger(flags.port) || flags.port < 1 || flags.port > 65535)) {
    throw new InvalidInputError(`${flags.port} is not a TCP port`);
  }
  if (flags.backupsKeep !== undefined && (!Number.isInteger(flags.backupsKeep) || flags.backupsKeep < 1 || flags.backupsKeep > 100)) {
    throw new InvalidInputError(`${flags.backupsKeep} is not a number of backups to keep`, { hint: 'Give a whole number from 1 to 100.' });
  }
  if (flags.backupsKeepDays !== undefined && (!Number.isInteger(flags.backupsKeepDays) || flags.backupsKeepDays < 0 || flags.backupsKeepDays > 3650)) {
    throw new InvalidInputError(`${flags.backupsKeepDays} is not a number of days to keep backups`, { hint: 'Give a whole number from 0 to 3650.' });
  }
  if (flags.backupsMax !== undefined && (!Number.isInteger(flags.backupsMax) || flags.backupsMax < 1 || flags.backupsMax > 1000)) {
    throw new InvalidInputError(`${flags.backupsMax} is not a number of backups to keep at most`, { hint: 'Give a whole number from 1 to 1000.' });
  }
  if (flags.deletedAppsDays !== undefined && (!Number.isInteger(flags.deletedAppsDays) || flags.deletedAppsDays < 0 || flags.deletedAppsDays > 3650)) {
    throw new InvalidInputError(`${flags.deletedAppsDays} is not a number of days to keep a deleted app's data`, { hint: 'Give a whole number from 0 to 3650.' });
  }
  if (flags.backupSchedule !== undefined && flags.backupSchedule !== 'off' && !BACKUP_SCHEDULE_PATTERN.test(flags.backupSchedule)) {
    throw new InvalidInputError(`"${flags.backupSchedule}" is not a time of day for the daily backup`, {
      hint: 'Give HH:MM (or HH:MM:SS) in UTC, such as 03:30, or off to stop the daily backup.',
    });
  }
}

/** The backup settings the flags change (a schedule of `off` removes the stored one). */
function backupSettings(flags: SettingsFlags, stored: Partial<PlatformSettings> = {}): Partial<PlatformSettings> {
  const out: Partial<PlatformSettings> = {
    ...(flags.backupsKeep !== undefined ? { backupsKeep: flags.backupsKeep } : {}),
    ...(flags.backupsKeepDays !== undefined ? { backupsKeepDays: flags.backupsKeepDays } : {}),
    ...(flags.backupsMax !== undefined ? { backupsMax: flags.backupsMax } : {}),
    ...(flags.deletedAppsDays !== undefined ? { deletedAppsDays: flags.deletedAppsDays } : {}),
  };
  const schedule = flags.backupSchedule === undefined ? stored.backupSchedule : flags.backupSchedule === 'off' ? undefined : flags.backupSchedule;
  if (schedule !== undefined) out.backupSchedule = schedule;
  return out;
}

/**
 * The settings for a start: those stored in the data dir (created with fresh secrets at the first
 * start), with the flags given applied over them. Not written here.
 */
export async function resolveSettings(
  dataDir: string,
  flags: SettingsFlags,
): Promise<{ settings: PlatformSettings; created: boolean }> {
  validateFlags(flags);
  const stored = await readSettings(dataDir);
  if (!stored) {
    return {
      created: true,
      settings: {
        name: flags.name ?? DEFAULT_NAME,
        domain: flags.domain ?? DEFAULT_DOMAIN,
        port: flags.port ?? DEFAULT_PORT,
        secrets: generateSecrets(),
        external: {},
        ...backupSettings(flags),
      },
    };
  }
  if (flags.name !== undefined && flags.name !== stored.name) {
    throw new DivioError(`the data directory ${dataDir} belongs to the platform "${stored.name}", not "${flags.name}"`, {
      exitCode: ExitCode.invalidInput,
      hint: 'Leave out --name to start that platform, or give another --data-dir for a new one.',
    });
  }
  const { backupSchedule: _storedSchedule, ...rest } = stored;
  return {
    created: false,
    settings: {
      ...rest,
      // Platforms from before secrets were sealed get their key now; the API then seals what it stored.
      secrets: withRegistrySecrets({ ...stored.secrets, secretsKey: stored.secrets.secretsKey ?? randomBytes(32).toString('base64url') }),
      domain: flags.domain ?? stored.domain,
      port: flags.port ?? stored.port,
      ...backupSettings(flags, stored),
    },
  };
}

// ---- the remembered data directory -------------------------------------------------------------

const rememberedSchema = z.object({ dataDir: z.string() });

function rememberedPath(env: NodeJS.ProcessEnv): string {
  return join(userConfigDir(env), 'platform.json');
}

export async function rememberDataDir(dataDir: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  await writeFileAtomic(rememberedPath(env), JSON.stringify({ dataDir: resolve(dataDir) }, null, 2) + '\n', 0o600);
}

export async function rememberedDataDir(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  try {
    const parsed = rememberedSchema.safeParse(JSON.parse(await readFile(rememberedPath(env), 'utf8')));
    return parsed.success ? parsed.data.dataDir : undefined;
  } catch {
    return undefined;
  }
}

/** The data dir to act on: the flag, else the one the last start used, else the default. */
export async function chooseDataDir(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (flag) return resolve(flag);
  return (await rememberedDataDir(env)) ?? defaultDataDir(env);
}

/** The data directory's own layout; every directory a service bind-mounts. */
export function dataPaths(dataDir: string) {
  return {
    postgres: join(dataDir, 'postgres'),
    media: join(dataDir, 'media'),
    mediaKeys: join(dataDir, 'media-keys'),
    registry: join(dataDir, 'registry'),
    git: join(dataDir, 'git'),
    router: join(dataDir, 'router'),
    routerConfig: join(dataDir, 'router', 'nginx.conf'),
    routerApps: join(dataDir, 'router', 'apps'),
  };
}

export async function ensureDataDirs(dataDir: string): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  const paths = dataPaths(dataDir);
  for (const dir of [paths.postgres, paths.media, paths.mediaKeys, paths.registry, paths.git, paths.router, paths.routerApps]) {
    await mkdir(dir, { recursive: true });
  }
}
