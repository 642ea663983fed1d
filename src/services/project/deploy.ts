/**
 * `project deploy`: ask the platform to deploy, then follow the deployment's log until it ends.
 * The outcome is the deployment's final state; its log lines are printed as they arrive.
 */
import { neutraliseControls } from '../../core/terminal-text.js';
import { ApiClient } from '../../core/api-client.js';
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

export async function followLog(client: ApiClient, slug: string, id: string, onLog: (line: string) => void, follow = true): Promise<void> {
  const response = await client.stream(routes.getDeploymentLog, { params: { slug, id }, query: { follow: follow ? '1' : '0' } });
  if (!response.body) return;
  const decoder = new TextDecoder();
  let pending = '';
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) onLog(neutraliseControls(line));
  }
  if (pending) onLog(neutraliseControls(pending));
}

export function deploymentFailed(deployment: Deployment): DivioError {
  return new DivioError(`Deployment ${deployment.id} of ${deployment.app} to ${deployment.environment} failed: ${neutraliseControls(deployment.reason ?? 'no reason recorded')}`, {
    exitCode: ExitCode.failure,
    hint: `The previous release keeps serving. The whole log: divio project deploy-log ${deployment.id} --app ${deployment.app}`,
  });
}
