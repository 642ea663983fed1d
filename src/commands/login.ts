import { Flags } from '@oclif/core';
import { BaseCommand } from '../base-command.js';
import { noPlatformYet } from '../core/platform-pending.js';

export default class Login extends BaseCommand {
  static override summary = 'Log in to a divio platform';
  static override enableJsonFlag = true;
  static override flags = {
    token: Flags.string({ description: 'API token (default: ask)' }),
    endpoint: Flags.string({ description: 'platform API URL' }),
  };

  async run(): Promise<void> {
    await this.parse(Login);
    throw noPlatformYet('`divio login`');
  }
}
