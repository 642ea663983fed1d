import { DivioError, ExitCode } from './errors.js';

/** Commands that need the platform, until `divio platform start` exists to provide one. */
export function noPlatformYet(what: string): DivioError {
  return new DivioError(`${what} needs a divio platform, and this version of divio has none yet`, {
    exitCode: ExitCode.environment,
    hint: 'The local environment works without one: `divio project create NAME`, then `divio project up`.',
  });
}
