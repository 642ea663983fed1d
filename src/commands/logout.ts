import { BaseCommand } from '../base-command.js';
import { logout, type LogoutResult } from '../services/auth/session.js';

export default class Logout extends BaseCommand {
  static override summary = 'Log out: revoke the stored token on the platform and forget it';
  static override enableJsonFlag = true;

  async run(): Promise<LogoutResult> {
    await this.parse(Logout);
    const result = await logout();
    if (!result.endpoint) this.log('Not logged in.');
    else if (result.revoked) this.log(`Logged out of ${result.endpoint}; the token is revoked.`);
    else this.log(`Forgot the token for ${result.endpoint}; the platform did not answer, so it is not revoked there.`);
    return result;
  }
}
