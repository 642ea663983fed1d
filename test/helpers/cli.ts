/** Run the built CLI (bin/run.js) as a user would, in a chosen directory and environment. */
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

export const REPO_ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');
export const BIN = join(REPO_ROOT, 'bin', 'run.js');

/** A per-run config dir so tests never touch the developer's own ~/.config/divio. */
export const TEST_CONFIG_DIR = mkdtempSync(join(tmpdir(), 'divio-test-config-'));

export interface CliOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string | Buffer;
  inputFile?: string;
  timeout?: number;
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function divio(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const result = await execa('node', [BIN, ...args], {
    cwd: options.cwd ?? REPO_ROOT,
    env: { DIVIO_CONFIG_DIR: TEST_CONFIG_DIR, NO_COLOR: '1', CI: 'true', ...options.env },
    input: options.input,
    inputFile: options.inputFile,
    stdin: options.input === undefined && options.inputFile === undefined ? 'ignore' : undefined,
    reject: false,
    timeout: options.timeout ?? 600_000,
  });
  return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
}

export function json<T = any>(result: CliResult): T {
  try {
    return JSON.parse(String(result.stdout)) as T;
  } catch {
    throw new Error(`not JSON (exit ${result.exitCode}):\nstdout: ${String(result.stdout)}\nstderr: ${String(result.stderr)}`);
  }
}

export function uniqueSlug(prefix: string): string {
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}
