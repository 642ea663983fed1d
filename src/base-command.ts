/**
 * The base of every command: builds the IO for this run, renders DivioErrors as "what failed" plus
 * "what to do", in JSON under --json, and maps them to exit codes in one place.
 */
import { Args, Command, Errors, Flags } from '@oclif/core';
import { createIO, type IO } from './core/io.js';
import { DivioError } from './core/errors.js';

export abstract class BaseCommand extends Command {
  private cachedIO?: IO;

  protected get io(): IO {
    this.cachedIO ??= createIO({ quiet: this.jsonEnabled() });
    return this.cachedIO;
  }

  override async catch(error: Error & { exitCode?: number }): Promise<unknown> {
    if (error instanceof Errors.ExitError) throw error;
    if (!(error instanceof DivioError)) return super.catch(error);
    if (this.jsonEnabled()) {
      // A transfer that failed part-way still reports what it did (files, bytes, failures).
      const result = (error as { result?: unknown }).result;
      this.logJson({ error: { message: error.message, hint: error.hint ?? null, exitCode: error.exitCode }, ...(result === undefined ? {} : { result }) });
    } else {
      const io = this.io;
      io.stderr.write(`${io.color.red('Error:')} ${error.message}\n`);
      if (error.hint) io.stderr.write(`${io.color.dim('→')} ${error.hint}\n`);
    }
    return this.exit(error.exitCode);
  }
}

/** The platform environment a command acts on, as its first argument (default test). */
export const environmentArg = () => Args.string({ description: 'test or live', options: ['test', 'live'], default: 'test' });

/** The platform environment a command acts on, as a flag. */
export const environmentFlag = Flags.string({ char: 'e', description: 'test or live', options: ['test', 'live'], default: 'test' });

/** Flags of every command that acts on one project. */
export const projectFlags = {
  app: Flags.string({
    description: 'app slug (default: the project in the current directory or a parent)',
    helpValue: 'SLUG',
  }),
};
