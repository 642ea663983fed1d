/**
 * Docker Compose, v2 (`docker compose`) or v1 (`docker-compose`): detected with v2 preferred, or
 * chosen with DIVIO_COMPOSE. Callers get one interface whatever the version.
 */
import { execa, type Options as ExecaOptions, type ResultPromise } from 'execa';
import { DivioError, ExitCode } from './errors.js';

export interface ComposeTool {
  kind: 'v2' | 'v1';
  /** Program and leading arguments, e.g. ["docker", "compose"]. */
  argv: [string, ...string[]];
  version: string;
}

async function probe(argv: [string, ...string[]]): Promise<string | undefined> {
  try {
    const result = await execa(argv[0], [...argv.slice(1), 'version', '--short'], { timeout: 20_000 });
    return result.stdout.trim().replace(/^v/, '') || undefined;
  } catch {
    return undefined;
  }
}

function kindOf(argv: string[], version: string): 'v1' | 'v2' {
  if (argv.length > 1 && argv[1] === 'compose') return 'v2';
  return version.startsWith('1.') ? 'v1' : 'v2';
}

const detected = new Map<string, Promise<ComposeTool>>();

export function detectCompose(env: NodeJS.ProcessEnv = process.env): Promise<ComposeTool> {
  const key = env.DIVIO_COMPOSE ?? '';
  let found = detected.get(key);
  if (!found) {
    found = detectComposeUncached(env);
    detected.set(key, found);
  }
  return found;
}

async function detectComposeUncached(env: NodeJS.ProcessEnv): Promise<ComposeTool> {
  const override = env.DIVIO_COMPOSE?.trim();
  if (override) {
    // A program name plus fixed words ("docker compose"), split on spaces, never given to a shell.
    const argv = override.split(/\s+/) as [string, ...string[]];
    const version = await probe(argv);
    if (!version) {
      throw new DivioError(`DIVIO_COMPOSE="${override}" does not answer \`${override} version\``, {
        exitCode: ExitCode.environment,
        hint: 'Set DIVIO_COMPOSE to "docker compose" or "docker-compose", or unset it to detect one.',
      });
    }
    return { kind: kindOf(argv, version), argv, version };
  }
  const v2 = await probe(['docker', 'compose']);
  if (v2) return { kind: 'v2', argv: ['docker', 'compose'], version: v2 };
  const v1 = await probe(['docker-compose']);
  if (v1) return { kind: kindOf(['docker-compose'], v1), argv: ['docker-compose'], version: v1 };
  throw new DivioError('neither Docker Compose v2 (`docker compose`) nor v1 (`docker-compose`) was found', {
    exitCode: ExitCode.environment,
    hint: 'Install the Compose plugin (https://docs.docker.com/compose/install/) and run `divio doctor`.',
  });
}

export interface ComposeProjectOptions {
  tool: ComposeTool;
  /** Compose project name (-p). */
  name: string;
  cwd: string;
  files: string[];
  /** Variables for interpolation in the compose files (e.g. DIVIO_WEB_PORT). */
  variables?: Record<string, string>;
}

export class ComposeProject {
  constructor(readonly options: ComposeProjectOptions) {}

  get tool(): ComposeTool {
    return this.options.tool;
  }

  args(rest: string[]): string[] {
    const { tool, name, files } = this.options;
    return [...tool.argv.slice(1), '-p', name, ...files.flatMap((f) => ['-f', f]), ...rest];
  }

  run<O extends ExecaOptions>(rest: string[], options?: O): ResultPromise<O & ExecaOptions> {
    const { tool, cwd, variables } = this.options;
    return execa(tool.argv[0], this.args(rest), {
      cwd,
      ...options,
      env: { ...variables, ...(options?.env ?? {}) },
    } as O & ExecaOptions) as ResultPromise<O & ExecaOptions>;
  }
}
