/** Runtime logs of test or live, streamed from the platform as they come. */
import type { ApiClient } from '../../core/api-client.js';
import { neutraliseControls } from '../../core/terminal-text.js';
import * as routes from '../../shared/api/routes.js';
import type { EnvironmentName } from '../../shared/api/schemas.js';

export async function streamRuntimeLogs(
  client: ApiClient,
  slug: string,
  env: EnvironmentName,
  options: { follow?: boolean; tail?: number },
  onChunk: (text: string) => void,
): Promise<void> {
  const query: Record<string, string> = { follow: options.follow ? '1' : '0' };
  if (options.tail !== undefined) query.tail = String(options.tail);
  const response = await client.stream(routes.getRuntimeLogs, { params: { slug, env }, query });
  if (!response.body) return;
  const decoder = new TextDecoder();
  // Controls are single code units, so a chunk boundary never splits one; a CR-LF split across two
  // chunks leaves a visible ^M at worst.
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) onChunk(neutraliseControls(decoder.decode(chunk, { stream: true })));
}
