/** The git credential-helper protocol (`get`): key=value lines in, key=value lines out. */
import { currentCredentials } from '../../core/credentials.js';

export async function gitCredentialAnswer(request: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const fields = new Map<string, string>();
  for (const line of request.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const credentials = await currentCredentials(env);
  if (!credentials) return '';
  const endpoint = new URL(credentials.endpoint);
  // Only ever hand the token to the platform it belongs to.
  if (fields.get('protocol') !== endpoint.protocol.replace(':', '') || fields.get('host') !== endpoint.host) return '';
  return `username=divio\npassword=${credentials.token}\n`;
}
