/**
 * Which PostgreSQL roles the gateway lets through: the ones the platform makes for environments
 * (src/platform/api/resource-names.ts: `SLUG_test`, `SLUG_live`, shortened with a hash when long),
 * never the cluster's admin, PostgreSQL's own `pg_…` roles or the platform's `divio_…` names. The
 * check is by name only; the password is the cluster's to check.
 */
import { reservedDatabaseName } from '../api/resource-names.js';

const ENVIRONMENT_ROLE = /^[a-z0-9][a-z0-9_]{0,57}_(?:test|live)$/;

export function isEnvironmentRole(role: string): boolean {
  return role.length <= 63 && ENVIRONMENT_ROLE.test(role) && reservedDatabaseName(role) === undefined;
}
