/**
 * Terminal I/O, abstracted so services and commands can be driven by tests: data goes to stdout,
 * status and progress to stderr; spinners only on a TTY; colour only when wanted (NO_COLOR).
 */
import { Chalk, type ChalkInstance } from 'chalk';
import type { Readable, Writable } from 'node:stream';

export interface Task {
  /** Replace the task's text (e.g. with progress). */
  update(text: string): void;
}

export interface IO {
  readonly stdin: Readable & { isTTY?: boolean };
  readonly stdout: Writable & { isTTY?: boolean };
  readonly stderr: Writable & { isTTY?: boolean };
  /** A person is at the terminal: prompts and raw TTY for `exec` are allowed. */
  readonly interactive: boolean;
  /** Spinners and progress bars may redraw stderr. */
  readonly fancy: boolean;
  readonly color: ChalkInstance;
  /** A line of data (stdout). */
  out(line: string): void;
  /** A line of status (stderr). Suppressed when `quiet`. */
  info(line: string): void;
  warn(line: string): void;
  /** Run `work` under a spinner on a TTY, or between plain start/end lines otherwise. */
  task<T>(title: string, work: (task: Task) => Promise<T>): Promise<T>;
}

export interface IOOptions {
  stdin?: IO['stdin'];
  stdout?: IO['stdout'];
  stderr?: IO['stderr'];
  env?: NodeJS.ProcessEnv;
  /** No status lines at all (e.g. `--json`): only data and errors. */
  quiet?: boolean;
}

export function colorWanted(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true && env.TERM !== 'dumb';
}

export function createIO(options: IOOptions = {}): IO {
  const env = options.env ?? process.env;
  const stdin = options.stdin ?? process.stdin;
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const quiet = options.quiet ?? false;
  const color = new Chalk({ level: colorWanted(stderr, env) ? 1 : 0 });
  // A terminal that reports 0 columns (e.g. `script` without a size) sends ora's line wrapping into
  // an endless loop: treat it as no terminal.
  const columns = (stderr as { columns?: number }).columns;
  const fancy = stderr.isTTY === true && !quiet && env.CI === undefined && env.TERM !== 'dumb' && columns !== 0;
  const interactive = stdin.isTTY === true && stdout.isTTY === true && env.CI === undefined;

  const writeLine = (stream: Writable, line: string) => {
    stream.write(line.endsWith('\n') ? line : `${line}\n`);
  };

  return {
    stdin,
    stdout,
    stderr,
    interactive,
    fancy,
    color,
    out: (line) => writeLine(stdout, line),
    info: (line) => {
      if (!quiet) writeLine(stderr, line);
    },
    warn: (line) => writeLine(stderr, `${color.yellow('Warning:')} ${line}`),
    async task(title, work) {
      if (!fancy) {
        if (!quiet) writeLine(stderr, `${title}...`);
        const started = Date.now();
        const result = await work({ update: () => {} });
        if (!quiet) writeLine(stderr, `${title}: done (${formatSeconds(Date.now() - started)})`);
        return result;
      }
      const { default: ora } = await import('ora');
      const spinner = ora({ text: title, stream: stderr, color: 'cyan' }).start();
      const started = Date.now();
      try {
        const result = await work({ update: (text) => (spinner.text = `${title}: ${text}`) });
        spinner.succeed(`${title} ${color.dim(`(${formatSeconds(Date.now() - started)})`)}`);
        return result;
      } catch (error) {
        spinner.fail(title);
        throw error;
      }
    },
  };
}

export function formatSeconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Rows under a header, each column as wide as its widest cell, two spaces apart. */
export function formatTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}
