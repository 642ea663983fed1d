/** `exec` and `shell`: a command in a running service's container, exit code passed through. */
import { execa } from 'execa';
import type { IO } from '../../core/io.js';
import type { LocalEnvironment } from './local-environment.js';

export interface ExecOptions {
  service: string;
  command: string[];
  /** Allocate a TTY; default: when stdin and stdout are terminals. */
  tty?: boolean;
}

export async function execInService(local: LocalEnvironment, io: IO, options: ExecOptions): Promise<number> {
  const container = await local.requireRunning(options.service);
  const tty = options.tty ?? (io.stdin.isTTY === true && io.stdout.isTTY === true);
  const args = ['exec', '-i'];
  if (tty) args.push('-t');
  args.push(container.id, ...options.command);
  const result = await execa('docker', args, {
    stdin: io.stdin === process.stdin ? 'inherit' : io.stdin,
    stdout: io.stdout === process.stdout ? 'inherit' : 'pipe',
    stderr: io.stderr === process.stderr ? 'inherit' : 'pipe',
    reject: false,
  });
  if (io.stdout !== process.stdout && typeof result.stdout === 'string') io.stdout.write(result.stdout);
  if (io.stderr !== process.stderr && typeof result.stderr === 'string') io.stderr.write(result.stderr);
  return result.exitCode ?? 1;
}

/** A login-ish shell: bash where the image has it, else sh. Fixed text; nothing of the user's in it. */
export const SHELL_COMMAND = ['sh', '-c', 'if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi'];
