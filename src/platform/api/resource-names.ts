/** Names of an environment's resources on shared infrastructure: deterministic, unique, within limits. */
import { createHash } from 'node:crypto';
import type { EnvironmentName } from '../../shared/api/schemas.js';

const PG_IDENTIFIER_MAX = 63;

/**
 * Prefixes a name derived from a slug must not have: PostgreSQL refuses roles named `pg_…`, and
 * `divio_…` is the platform's own (its database, and the scratch and backup databases it sweeps
 * at start by prefix, so an app's database named like one would be dropped).
 */
const RESERVED_PREFIXES = ['pg_', 'divio_'] as const;

/** `shop_test`; a long slug is shortened and made unique with a hash of the whole slug. */
export function databaseName(slug: string, env: EnvironmentName): string {
  const base = slug.replace(/-/g, '_');
  const plain = `${base}_${env}`;
  if (plain.length <= PG_IDENTIFIER_MAX) return plain;
  const suffix = `_${shortHash(slug)}_${env}`;
  return `${base.slice(0, PG_IDENTIFIER_MAX - suffix.length)}${suffix}`;
}

/**
 * Why a database or role name derived from a slug cannot be used, or undefined when it can.
 * Shortened names can equal another slug's plain name (the hash is public), so uniqueness itself
 * is checked where names are stored; this covers the names nobody may have.
 */
export function reservedDatabaseName(name: string): string | undefined {
  const prefix = RESERVED_PREFIXES.find((p) => name.startsWith(p));
  if (!prefix) return undefined;
  return prefix === 'pg_' ? 'PostgreSQL reserves role names starting with "pg_"' : 'names starting with "divio_" are the platform\'s own';
}

function shortHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 8);
}
