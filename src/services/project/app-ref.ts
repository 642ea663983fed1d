/** Which app a platform command acts on: --app SLUG, else the project in this directory or a parent. */
import { InvalidInputError, DivioError, ExitCode } from '../../core/errors.js';
import { findProjectRoot, readProjectConfig } from '../../core/project.js';
import { PROJECT_CONFIG_PATH, SLUG_PATTERN } from '../../shared/project-config.js';

export async function appSlug(options: { app?: string; cwd?: string }): Promise<string> {
  if (options.app !== undefined) {
    if (!SLUG_PATTERN.test(options.app)) {
      throw new InvalidInputError(`"${options.app}" is not a valid app slug`, {
        hint: 'Slugs are 2-63 lower-case letters, digits and "-", starting with a letter.',
      });
    }
    return options.app;
  }
  const cwd = options.cwd ?? process.cwd();
  const root = await findProjectRoot(cwd);
  if (!root) {
    throw new DivioError(`${cwd} is not inside a divio project (no ${PROJECT_CONFIG_PATH} here or in a parent)`, {
      exitCode: ExitCode.environment,
      hint: 'cd into the project, or pass --app SLUG.',
    });
  }
  return (await readProjectConfig(root)).app;
}
