/**
 * docker-compose.yml for the local environment, generated from divio.yaml and
 * templates/docker-compose.yml. The file carries a checksum of what divio wrote, so a later
 * regeneration can tell divio's own file (safe to replace) from one the user edited (never replaced).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { pathExists, writeFileAtomic } from '../../core/fs-util.js';
import { templatePath } from '../../core/assets.js';
import type { Project } from '../../core/project.js';

export const COMPOSE_FILE = 'docker-compose.yml';
export const GENERATED_COPY = '.divio/docker-compose.generated.yml';
export const ENV_LOCAL_FILE = '.env.local';
const CHECKSUM_PREFIX = '# divio-checksum: sha256=';

export const LOCAL_DB = { user: 'postgres', name: 'app' } as const;
/** Default host port when compose runs without divio choosing one. */
export const DEFAULT_HOST_PORT = 8000;

export type ComposeFileStatus = 'created' | 'updated' | 'unchanged' | 'kept-user-edits';

export interface ComposeFileResult {
  status: ComposeFileStatus;
  path: string;
  /** Where the generated version went when the user's edits were kept. */
  generatedCopy?: string;
}

/** A YAML double-quoted scalar that Compose will not interpolate. */
function composeString(value: string): string {
  return JSON.stringify(value.replaceAll('$', () => '$$'));
}

function checksum(body: string): string {
  return createHash('sha256').update(body).digest('hex');
}

function stripChecksumLine(text: string): { body: string; recorded?: string } {
  const lines = text.split('\n');
  if (lines[0]?.startsWith(CHECKSUM_PREFIX)) {
    return { body: lines.slice(1).join('\n'), recorded: lines[0].slice(CHECKSUM_PREFIX.length).trim() };
  }
  return { body: text };
}

export function renderTemplate(template: string, values: Record<string, string>, sections: Record<string, boolean>): string {
  const withSections = template.replace(
    /^\{\{#(\w+)\}\}\n([\s\S]*?)^\{\{\/\1\}\}\n/gm,
    (_, name: string, inner: string) => (sections[name] ? inner : ''),
  );
  return withSections.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`template value ${name} is missing`);
    return value;
  });
}

/** Secrets divio generated once; kept from the existing file so regeneration does not rotate them. */
interface KeptSecrets {
  secretKey: string;
  dbPassword: string;
}

function randomToken(bytes: number): string {
  return randomBytes(bytes).toString('base64url');
}

function secretsFrom(existing: string | undefined): KeptSecrets {
  let env: Record<string, unknown> = {};
  let dbEnv: Record<string, unknown> = {};
  if (existing) {
    try {
      const doc = parseYaml(existing) as { services?: Record<string, { environment?: Record<string, unknown> }> };
      env = doc?.services?.web?.environment ?? {};
      dbEnv = doc?.services?.db?.environment ?? {};
    } catch {
      // An unparsable file gets fresh secrets; it is the user's to fix.
    }
  }
  const keep = (v: unknown) => (typeof v === 'string' && v.length >= 16 ? v.replaceAll('$$', '$') : undefined);
  return {
    secretKey: keep(env.SECRET_KEY) ?? randomToken(36),
    dbPassword: keep(dbEnv.POSTGRES_PASSWORD) ?? randomToken(18),
  };
}

export function localDomain(project: Pick<Project, 'slug'>): string {
  return `${project.slug}.localhost`;
}

export async function renderComposeFile(project: Project, existing?: string): Promise<string> {
  const { manifest } = project;
  const secrets = secretsFrom(existing);
  const database = manifest.database;
  const mediaUrl = manifest.media?.url ?? '/media/';
  const values: Record<string, string> = {
    slug: project.slug,
    defaultHostPort: String(DEFAULT_HOST_PORT),
    port: String(manifest.web.port),
    localCommand: composeString(manifest.web.local_command ?? manifest.web.command),
    storageDsn: composeString(`file:///data/media/?url=${mediaUrl}`),
    secretKey: composeString(secrets.secretKey),
    domain: localDomain(project),
    dbImage: composeString(`postgres:${database?.version ?? 15}`),
    dbUser: composeString(LOCAL_DB.user),
    dbName: composeString(LOCAL_DB.name),
    dbPassword: composeString(secrets.dbPassword),
    databaseUrl: composeString(
      `postgres://${LOCAL_DB.user}:${encodeURIComponent(secrets.dbPassword)}@db:5432/${LOCAL_DB.name}`,
    ),
  };
  const template = await readFile(templatePath('docker-compose.yml'), 'utf8');
  const body = renderTemplate(template, values, { database: database !== undefined });
  return `${CHECKSUM_PREFIX}${checksum(body)}\n${body}`;
}

/** Whether the file is exactly what divio last wrote (its recorded checksum still matches). */
export function isUnedited(text: string): boolean {
  const { body, recorded } = stripChecksumLine(text);
  return recorded !== undefined && recorded === checksum(body);
}

/**
 * Make docker-compose.yml match divio.yaml, unless the user edited it: then keep theirs, write what
 * divio would generate beside it, and report that.
 */
export async function syncComposeFile(project: Project): Promise<ComposeFileResult> {
  const path = join(project.root, COMPOSE_FILE);
  const existing = (await pathExists(path)) ? await readFile(path, 'utf8') : undefined;
  const generated = await renderComposeFile(project, existing);
  await ensureLocalFiles(project.root);
  if (existing === undefined) {
    await writeFileAtomic(path, generated);
    return { status: 'created', path };
  }
  if (existing === generated) return { status: 'unchanged', path };
  if (isUnedited(existing)) {
    await writeFileAtomic(path, generated);
    return { status: 'updated', path };
  }
  const copy = join(project.root, GENERATED_COPY);
  // Only the body matters when comparing with a previous copy: the user may already have merged it.
  await writeFileAtomic(copy, generated);
  return { status: 'kept-user-edits', path, generatedCopy: copy };
}

/** Files the compose file refers to, created when missing so `compose up` never fails on them. */
export async function ensureLocalFiles(root: string): Promise<void> {
  const envLocal = join(root, ENV_LOCAL_FILE);
  if (!(await pathExists(envLocal))) {
    await writeFileAtomic(envLocal, await readFile(templatePath('env.local'), 'utf8'));
  }
  await mkdir(join(root, 'data', 'media'), { recursive: true });
}
