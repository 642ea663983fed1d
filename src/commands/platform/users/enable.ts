import { Args } from '@oclif/core';
import { BaseCommand } from '../../../base-command.js';
import { setUserDisabled } from '../../../services/auth/users.js';
import type { User } from '../../../shared/api/schemas.js';

export default class PlatformUsersEnable extends BaseCommand {
  static override summary = 'Enable a disabled user again (operator only)';
  static override description = 'Their tokens that are neither revoked nor expired work again at once.';
  static override enableJsonFlag = true;
  static override args = { name: Args.string({ description: 'user name', required: true }) };

  async run(): Promise<User> {
    const { args } = await this.parse(PlatformUsersEnable);
    const user = await setUserDisabled(args.name, false);
    this.log(`Enabled ${user.name}.`);
    return user;
  }
}
