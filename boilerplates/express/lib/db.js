import pg from 'pg';
import { config } from './config.js';

// One pool per process. Without DATABASE_URL the app still starts; /healthz then answers 503.
export const pool = config.databaseUrl
  ? new pg.Pool({
      connectionString: config.databaseUrl,
      max: Number.parseInt(process.env.DATABASE_POOL_SIZE || '10', 10),
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 30000,
    })
  : null;

// An idle client whose connection drops (database restart) must not crash the process.
pool?.on('error', (error) => console.error(`database: idle client error: ${error.message}`));

export async function query(text, params) {
  if (!pool) throw new Error('DATABASE_URL is not set');
  return pool.query(text, params);
}

/** Resolves when the database answers within timeoutMs; rejects otherwise. */
export async function ping(timeoutMs = 3000) {
  if (!pool) throw new Error('DATABASE_URL is not set');
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([pool.query('SELECT 1'), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
