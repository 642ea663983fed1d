import { BaseCommand } from '../base-command.js';
import { whoami, type WhoamiResult } from '../services/auth/session.js';

export default class Whoami extends BaseCommand {
  static override summary = 'Show who you are logged in as, and where';
  static override enableJsonFlag = true;

  async run(): Promise<WhoamiResult> {
    await this.parse(Whoami);
    const result = await whoami();
    const role = result.user.operator ? ', operator' : '';
    const from = result.source === 'environment' ? ' (token from DIVIO_TOKEN)' : '';
    const expiry = result.token.expiresAt ? `, expires ${result.token.expiresAt}` : '';
    this.log(`${result.user.name} on ${result.endpoint} (${result.token.scope} token${role}${expiry})${from}`);
    return result;
  }
}
