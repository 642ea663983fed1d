/**
 * The migration that seals secrets stored before they were encrypted at rest: every environment's
 * database password, media keys and SECRET_KEY, and every variable value. It runs inside the
 * migration's transaction, so a platform is either wholly sealed or not at all.
 */
import type pg from 'pg';
import { SealedValueRefused, type SecretBox, type SecretPurpose } from './secrets.js';

const ENVIRONMENT_COLUMNS = ['db_password', 'media_access_key', 'media_secret_key', 'secret_key'] as const;

export async function sealStoredSecrets(client: pg.ClientBase, box: SecretBox): Promise<void> {
  const environments = await client.query<Record<(typeof ENVIRONMENT_COLUMNS)[number], string | null> & { id: string }>(
    `SELECT id, ${ENVIRONMENT_COLUMNS.join(', ')} FROM environments FOR UPDATE`,
  );
  for (const row of environments.rows) {
    const sealed = ENVIRONMENT_COLUMNS.map((column) => sealOnce(box, row[column], `environments.${column}`));
    await client.query(
      `UPDATE environments SET ${ENVIRONMENT_COLUMNS.map((column, i) => `${column} = $${i + 2}`).join(', ')} WHERE id = $1`,
      [row.id, ...sealed],
    );
  }
  const variables = await client.query<{ environment_id: string; name: string; value: string }>(
    'SELECT environment_id, name, value FROM env_vars FOR UPDATE',
  );
  for (const row of variables.rows) {
    await client.query('UPDATE env_vars SET value = $3 WHERE environment_id = $1 AND name = $2', [
      row.environment_id,
      row.name,
      sealOnce(box, row.value, 'env_vars.value'),
    ]);
  }
}

/** A value that already opens under this key is left as it is, so running twice changes nothing. */
function sealOnce(box: SecretBox, value: string | null, purpose: SecretPurpose): string | null {
  if (value === null) return null;
  try {
    box.open(value, purpose);
    return value;
  } catch (error) {
    if (!(error instanceof SealedValueRefused)) throw error;
    return box.seal(value, purpose);
  }
}
