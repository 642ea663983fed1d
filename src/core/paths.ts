import { homedir } from 'node:os';
import { join } from 'node:path';

/** Where divio keeps per-user state (credentials, known projects). */
export function userConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DIVIO_CONFIG_DIR) return env.DIVIO_CONFIG_DIR;
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'divio');
}
