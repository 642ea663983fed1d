/**
 * Long-running child processes (compose up, builds, release commands) shown the same way everywhere:
 * on a TTY a spinner with the latest line, the full output only if it fails; otherwise every line as
 * it comes, for CI logs.
 */
import { execa, type ResultPromise } from 'execa';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { DivioError, ExitCode } from './errors.js';
import type { IO } from './io.js';

const KEPT_LINES = 200;

export interface ChildFailure {
  exitCode: number | undefined;
  output: string[];
}

export async function runShown(
  io: IO,
  title: string,
  child: ResultPromise,
  describeFailure: (failure: ChildFailure) => DivioError,
): Promise<string[]> {
  const lines: string[] = [];
  return io.task(title, async (task) => {
    const collect = (stream: Readable | null) => {
      if (!stream) return Promise.resolve();
      const rl = createInterface({ input: stream, crlfDelay: Infinity });
      rl.on('line', (raw) => {
        // Compose v2 redraws progress with carriage returns; keep the last state of each line.
        const line = raw.split('\r').pop() ?? '';
        if (line.trim() === '') return;
        lines.push(line);
        if (lines.length > KEPT_LINES) lines.shift();
        if (io.fancy) task.update(line.length > 100 ? `${line.slice(0, 97)}...` : line);
        else io.info(`  ${line}`);
      });
      return new Promise<void>((resolve) => rl.once('close', resolve));
    };
    const streams = Promise.all([collect(child.stdout), collect(child.stderr)]);
    try {
      await child;
      await streams;
      return lines;
    } catch (error) {
      await streams.catch(() => {});
      if (io.fancy) for (const line of lines) io.stderr.write(`  ${line}\n`);
      const exitCode = (error as { exitCode?: number }).exitCode;
      throw describeFailure({ exitCode, output: lines });
    }
  });
}

export function childFailed(message: string, hint: string, failure: ChildFailure): DivioError {
  const code = failure.exitCode === undefined ? '' : ` (exit code ${failure.exitCode})`;
  return new DivioError(`${message}${code}`, { hint, exitCode: ExitCode.childFailed });
}

/**
 * A child that talks to the user directly (exec, shell, logs -f): the terminal is handed over when
 * the IO is the process's own; under tests the IO's streams are used instead. Returns the exit code.
 */
export async function runAttached(io: IO, file: string, args: string[], options: { cwd?: string; stdin?: boolean } = {}): Promise<number> {
  const own = (stream: unknown, processStream: unknown) => stream === processStream;
  const stdin = options.stdin === false ? 'ignore' : own(io.stdin, process.stdin) ? 'inherit' : io.stdin;
  const result = await execa(file, args, {
    cwd: options.cwd,
    stdin,
    stdout: own(io.stdout, process.stdout) ? 'inherit' : 'pipe',
    stderr: own(io.stderr, process.stderr) ? 'inherit' : 'pipe',
    reject: false,
  });
  if (typeof result.stdout === 'string' && result.stdout) io.stdout.write(result.stdout);
  if (typeof result.stderr === 'string' && result.stderr) io.stderr.write(result.stderr);
  return result.exitCode ?? 1;
}
