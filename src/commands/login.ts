import { Flags } from '@oclif/core';
import { BaseCommand } from '../base-command.js';
import { DivioError, ExitCode } from '../core/errors.js';
import { readSecretLine } from '../core/prompt.js';
import { login, type LoginResult } from '../services/auth/session.js';

export default class Login extends BaseCommand {
  static override summary = 'Log in to a divio platform';
  static override description =
    'Verifies the token against the platform, then stores it in ~/.config/divio/credentials.json (mode 0600). ' +
    'DIVIO_TOKEN and DIVIO_ENDPOINT override stored credentials for any command.';
  static override enableJsonFlag = true;
  static override flags = {
    token: Flags.string({ description: 'API token (default: DIVIO_TOKEN, or ask on a terminal)', helpValue: 'TOKEN' }),
    endpoint: Flags.string({ description: 'platform URL (default: DIVIO_ENDPOINT or the current one)', helpValue: 'URL' }),
    'expires-in': Flags.string({
      description: 'store a new token of the same scope that expires after this long (e.g. 12h, 30d), issued with the one given',
      helpValue: 'DURATION',
    }),
  };

  async run(): Promise<LoginResult> {
    const { flags } = await this.parse(Login);
    const token = flags.token ?? process.env.DIVIO_TOKEN ?? (await this.askToken());
    const result = await this.io.task('Checking the token', () => login({ endpoint: flags.endpoint, token, expiresIn: flags['expires-in'] }));
    const expiry = result.expiresAt ? `; this login expires ${result.expiresAt}` : '';
    this.log(`Logged in to ${result.endpoint} as ${result.user}${result.operator ? ' (operator)' : ''}${expiry}`);
    return result;
  }

  private async askToken(): Promise<string> {
    if (!process.stdin.isTTY) {
      throw new DivioError('No token given, and there is no terminal to ask for one', {
        exitCode: ExitCode.usage,
        hint: 'Pass --token TOKEN or set DIVIO_TOKEN.',
      });
    }
    return readSecretLine('API token: ');
  }
}
