/**
 * Confirmation before overwriting test or live (SPEC): on a terminal the user types the app's slug
 * (live) or answers y (test); a run without a terminal must pass --yes, or nothing happens.
 */
import { createInterface } from 'node:readline';
import { DivioError, ExitCode } from './errors.js';
import type { IO } from './io.js';

export async function confirmOverwrite(
  io: IO,
  options: { yes: boolean; action: string; slug: string; typeSlug: boolean; platform: string },
): Promise<void> {
  if (options.yes) return;
  // Which platform, too: the same slug on a colleague's or a staging platform is another app.
  const action = `${options.action}, on the platform at ${options.platform}`;
  if (!io.interactive) {
    throw new DivioError(`${action} needs confirmation, and there is no terminal to ask`, {
      exitCode: ExitCode.usage,
      hint: 'Pass --yes to confirm (nothing was changed).',
    });
  }
  const question = options.typeSlug
    ? `${action}. Type the app's slug (${options.slug}) to confirm: `
    : `${action}. Continue? [y/N] `;
  const rl = createInterface({ input: io.stdin, output: io.stderr });
  const answer = await new Promise<string>((resolve) => rl.question(question, (a) => resolve(a.trim())));
  rl.close();
  const ok = options.typeSlug ? answer === options.slug : /^y(es)?$/i.test(answer);
  if (!ok) throw new DivioError('Not confirmed; nothing was changed', { exitCode: ExitCode.failure });
}
