import { Args } from '@oclif/core';
import { BaseCommand } from '../../../base-command.js';
import { setUserDisabled } from '../../../services/auth/users.js';
import type { User } from '../../../shared/api/schemas.js';

export default class PlatformUsersDisable extends BaseCommand {
  static override summary = 'Disable a user: their next request, git included, is refused (operator only)';
  static override description =
    'Nothing of theirs is removed: apps keep running, and `divio platform users enable NAME` makes their tokens work again.';
  static override enableJsonFlag = true;
  static override args = { name: Args.string({ description: 'user name', required: true }) };

  async run(): Promise<User> {
    const { args } = await this.parse(PlatformUsersDisable);
    const user = await setUserDisabled(args.name, true);
    this.log(`Disabled ${user.name}: their tokens are refused until \`divio platform users enable ${user.name}\`.`);
    return user;
  }
}
