/**
 * The shared test platform started once per run by test/global-setup/platform.ts. In a describe
 * block: `const platform = usePlatform();` then `platform().endpoint` in hooks and tests. When there
 * is none, the block's tests are skipped with the reason (no Docker, not started) — or fail with it
 * when starting it failed.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeEach, inject } from 'vitest';
import type { TestPlatform } from '../global-setup/platform.js';

export type { TestPlatform } from '../global-setup/platform.js';

function unavailableReason(): string {
  return inject('platformUnavailable') ?? 'no test platform was provided (is test/global-setup/platform.ts in vitest.config.ts?)';
}

export function usePlatform(): () => TestPlatform {
  const value = inject('platform');
  if (value) return () => value;
  const reason = unavailableReason();
  const failed = reason.startsWith('divio platform start failed');
  beforeEach((context) => {
    if (failed) throw new Error(`the shared test platform did not start: ${reason}`);
    context.skip(`no shared test platform: ${reason}`);
  });
  return () => {
    throw new Error(`the shared test platform is not available: ${reason}`);
  };
}

/** The platform, for code outside describe blocks; throws when there is none. */
export function testPlatform(): TestPlatform {
  const value = inject('platform');
  if (!value) throw new Error(`the shared test platform is not available: ${unavailableReason()}`);
  return value;
}

/** The operator's token, as `divio platform start` stored it in the platform's config dir. */
export async function operatorToken(): Promise<string> {
  const { configDir, endpoint } = testPlatform();
  const file = JSON.parse(await readFile(join(configDir, 'credentials.json'), 'utf8')) as {
    endpoints?: Record<string, { token?: string }>;
  };
  const token = file.endpoints?.[endpoint]?.token;
  if (!token) throw new Error(`${join(configDir, 'credentials.json')} has no token for ${endpoint}`);
  return token;
}
