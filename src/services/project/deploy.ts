/**
 * `project deploy`: ask the platform to deploy, then follow the deployment's log until it ends.
 * The outcome is the deployment's final state; its log lines are printed as they arrive.
 */
import { neutraliseControls } from '../../core/terminal-text.js';
import { ApiClient, ApiRequestError } from '../../core/api-client.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import * as routes from '../../shared/api/routes.js';
import type { Deployment, EnvironmentName } from '../../shared/api/schemas.js';

export interface DeployOptions {
  slug: string;
  environment: EnvironmentName;
  commit?: string;
  wait: boolean;
  /** Receives each log line as it arrives. */
  onLog: (line: string) => void;
}

export async function deploy(client: ApiClient, options: DeployOptions): Promise<Deployment> {
  const started = await client.call(routes.createDeployment, {
    params: { slug: options.slug, env: options.environment },
    body: options.commit ? { commit: options.commit } : {},
  });
  if (!options.wait) return started;
  return followDeployment(client, options.slug, started.id, options.onLog);
}

/** Print a deployment's log until it ends; its final record when it succeeded, else the error to show. */
export async function followDeployment(client: ApiClient, slug: string, id: string, onLog: (line: string) => void): Promise<Deployment> {
  await followLog(client, slug, id, onLog);
  const final = await client.call(routes.getDeployment, { params: { slug, id } });
  if (final.state !== 'succeeded') throw deploymentFailed(final);
  return final;
}

/**
 * How long a follower keeps trying to get back to a log after the connection to the platform broke.
 * The router restarts when it joins a new environment's network, cutting every stream through it
 * for a few seconds; the deployment goes on, so the log must too.
 */
export const RECONNECT_WINDOW_MS = 120_000;

/**
 * Print a deployment's log. With `follow`, until the deployment ends; a broken connection is taken
 * up again (within RECONNECT_WINDOW_MS) and only the lines not yet printed are printed.
 */
export async function followLog(
  client: ApiClient,
  slug: string,
  id: string,
  onLog: (line: string) => void,
  follow = true,
  options: { reconnectWindowMs?: number; retryDelayMs?: number } = {},
): Promise<void> {
  const windowMs = options.reconnectWindowMs ?? RECONNECT_WINDOW_MS;
  let printed = 0;
  let brokenSince: number | undefined;
  for (;;) {
    let seen = 0;
    const emit = (line: string): void => {
      seen += 1;
      if (seen <= printed) return;
      printed = seen;
      brokenSince = undefined;
      onLog(neutraliseControls(line));
    };
    try {
      await readLog(client, slug, id, follow, emit);
      return;
    } catch (error) {
      if (!follow || !isConnectionLoss(error)) throw error;
      brokenSince ??= Date.now();
      if (Date.now() - brokenSince > windowMs) throw error;
      await new Promise((resolve) => setTimeout(resolve, options.retryDelayMs ?? 1_000));
    }
  }
}

async function readLog(client: ApiClient, slug: string, id: string, follow: boolean, emit: (line: string) => void): Promise<void> {
  const response = await client.stream(routes.getDeploymentLog, { params: { slug, id }, query: { follow: follow ? '1' : '0' } });
  if (!response.body) return;
  const decoder = new TextDecoder();
  let pending = '';
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) emit(line);
  }
  // A line without its newline is whole only when the log ended; a cut stream may have cut it.
  if (pending) emit(pending);
}

/** The platform went away mid-answer or could not be reached, or a proxy in front of it said so. */
function isConnectionLoss(error: unknown): boolean {
  if (error instanceof ApiRequestError) return error.status >= 502 && error.status <= 504;
  if (error instanceof DivioError) return error.exitCode === ExitCode.environment && /reach|connection/i.test(error.message);
  // fetch's body stream breaking: "terminated", ECONNRESET and the like.
  return error instanceof TypeError || (error as NodeJS.ErrnoException)?.code === 'ECONNRESET';
}

export function deploymentFailed(deployment: Deployment): DivioError {
  return new DivioError(`Deployment ${deployment.id} of ${deployment.app} to ${deployment.environment} failed: ${neutraliseControls(deployment.reason ?? 'no reason recorded')}`, {
    exitCode: ExitCode.failure,
    hint: `The previous release keeps serving. The whole log: divio project deploy-log ${deployment.id} --app ${deployment.app}`,
  });
}
