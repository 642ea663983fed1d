/**
 * Docker-backed suites run when an engine answers; otherwise they are skipped with the reason
 * printed, and under REQUIRE_DOCKER=1 (CI) they fail instead of skipping.
 */
import { execFileSync } from 'node:child_process';
import { describe, it } from 'vitest';

function engineAnswers(): boolean {
  try {
    execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'pipe', timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
}

export const dockerAvailable = engineAnswers();
export const dockerRequired = process.env.REQUIRE_DOCKER === '1';

export function describeWithDocker(name: string, body: () => void): void {
  if (dockerAvailable) {
    describe(name, body);
    return;
  }
  if (dockerRequired) {
    describe(name, () => {
      it('needs a Docker engine', () => {
        throw new Error('REQUIRE_DOCKER=1 but no Docker engine answers (run ../shared/ci/docker-up.sh)');
      });
    });
    return;
  }
  console.warn(`[skipped] ${name}: no Docker engine answers (run ../shared/ci/docker-up.sh, or set REQUIRE_DOCKER=1 to fail instead)`);
  describe.skipIf(true)(`${name} (skipped: no Docker engine answers)`, body);
}

/** Compose versions installed here; both are required under REQUIRE_DOCKER=1. */
export function composeVersions(): { name: 'v2' | 'v1'; env: string }[] {
  const found: { name: 'v2' | 'v1'; env: string }[] = [];
  const probe = (argv: string[]) => {
    try {
      execFileSync(argv[0]!, [...argv.slice(1), 'version'], { stdio: 'pipe', timeout: 15_000 });
      return true;
    } catch {
      return false;
    }
  };
  if (probe(['docker', 'compose'])) found.push({ name: 'v2', env: 'docker compose' });
  if (probe(['docker-compose'])) found.push({ name: 'v1', env: 'docker-compose' });
  return found;
}
