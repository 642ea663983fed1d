import { BaseCommand } from '../base-command.js';
import { noPlatformYet } from '../core/platform-pending.js';

export default class Logout extends BaseCommand {
  static override summary = 'Forget the stored credentials of a divio platform';
  static override enableJsonFlag = true;
  static override flags = {
  };

  async run(): Promise<void> {
    await this.parse(Logout);
    throw noPlatformYet('`divio logout`');
  }
}
