/**
 * Errors that reach the user. Every failure the CLI reports says what failed (message) and what to
 * do next (hint); the exit code is decided here, in one place.
 */
export const ExitCode = {
  failure: 1,
  usage: 2,
  /** The environment lacks something: Docker not running, compose missing, not in a project. */
  environment: 3,
  /** Input from outside was refused: bad dump, bad manifest, bad name. */
  invalidInput: 4,
  /** A command run inside a container failed; `exec` passes the real code through instead. */
  childFailed: 5,
} as const;

export interface DivioErrorOptions {
  hint?: string;
  exitCode?: number;
  cause?: unknown;
}

export class DivioError extends Error {
  readonly hint?: string;
  readonly exitCode: number;

  constructor(message: string, options: DivioErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DivioError';
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? ExitCode.failure;
  }
}

/** Input from outside (a dump, a manifest, a name) that is refused. */
export class InvalidInputError extends DivioError {
  constructor(message: string, options: Omit<DivioErrorOptions, 'exitCode'> = {}) {
    super(message, { ...options, exitCode: ExitCode.invalidInput });
    this.name = 'InvalidInputError';
  }
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
