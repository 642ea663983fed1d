import { runAttached } from '../../core/child-output.js';
import type { IO } from '../../core/io.js';
import type { LocalEnvironment } from './local-environment.js';

export interface LogsOptions {
  follow?: boolean;
  service?: string;
  tail?: number;
}

/** Compose's own logs (both versions take these flags), straight to the terminal. */
export async function showLogs(local: LocalEnvironment, io: IO, options: LogsOptions = {}): Promise<number> {
  if (options.service) {
    const known = new Set((await local.containers()).map((c) => c.service));
    if (known.size > 0 && !known.has(options.service)) await local.requireRunning(options.service);
  }
  const args = ['logs'];
  if (options.follow) args.push('--follow');
  if (options.tail !== undefined) args.push('--tail', String(options.tail));
  if (io.color.level === 0) args.push('--no-color');
  if (options.service) args.push(options.service);
  const compose = await local.compose();
  return runAttached(io, compose.tool.argv[0], compose.args(args), { cwd: local.project.root, stdin: false });
}
