/** Names of an environment's resources on shared infrastructure: deterministic, unique, within limits. */
import { createHash } from 'node:crypto';
import type { EnvironmentName } from '../../shared/api/schemas.js';

const PG_IDENTIFIER_MAX = 63;

/** `shop_test`; a long slug is shortened and made unique with a hash of the whole slug. */
export function databaseName(slug: string, env: EnvironmentName): string {
  const base = slug.replace(/-/g, '_');
  const plain = `${base}_${env}`;
  if (plain.length <= PG_IDENTIFIER_MAX) return plain;
  const suffix = `_${shortHash(slug)}_${env}`;
  return `${base.slice(0, PG_IDENTIFIER_MAX - suffix.length)}${suffix}`;
}

function shortHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 8);
}
