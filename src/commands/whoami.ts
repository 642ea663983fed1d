import { BaseCommand } from '../base-command.js';
import { noPlatformYet } from '../core/platform-pending.js';

export default class Whoami extends BaseCommand {
  static override summary = 'Show who you are logged in as';
  static override enableJsonFlag = true;
  static override flags = {
  };

  async run(): Promise<void> {
    await this.parse(Whoami);
    throw noPlatformYet('`divio whoami`');
  }
}
