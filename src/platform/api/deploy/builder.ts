/**
 * The builder: one commit of an app's bare repository becomes the image `REGISTRY/SLUG:COMMIT`.
 * The build context is `git archive` of that commit, never a working tree, so what is deployed is
 * exactly what was pushed. A commit is built once: when the registry already holds its image (test
 * built it, live is being deployed), the image is reused as it is.
 */
import { PassThrough, addAbortSignal, type Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { stripVTControlCharacters } from 'node:util';
import type Docker from 'dockerode';
import { execa } from 'execa';
import { errorMessage } from '../../../core/errors.js';
import { gitProcessEnv } from '../git/repositories.js';
import { imageReference, manifestExists } from './registry.js';

export interface BuildOptions {
  /** The app's bare repository. */
  repositoryPath: string;
  /** A full 40-hex commit id, already resolved from the environment's branch by the caller. */
  commit: string;
  slug: string;
  /** The registry as the Docker engine reaches it (the image's name prefix), e.g. 127.0.0.1:8600. */
  registryAddress: string;
  /** The registry as this process reaches it over HTTP, e.g. http://divio-registry:5000. */
  registryUrl: string;
  docker: Docker;
  /** Receives the build's and push's progress, one plain-text line at a time, as it happens. */
  log: (line: string) => void;
  signal?: AbortSignal;
}

export interface BuildResult {
  image: string;
  /** False when the registry already held the image for this commit. */
  built: boolean;
  seconds: number;
}

/** How many of the last log lines a BuildError carries: enough to show the failing step and its output. */
const LOG_TAIL_LINES = 20;

export class BuildError extends Error {
  /** One line: what failed, e.g. the failing Dockerfile step and the engine's message. */
  readonly reason: string;
  /** The last lines logged before the failure. */
  readonly logTail: readonly string[];

  constructor(reason: string, logTail: readonly string[], options?: { cause?: unknown }) {
    super(reason, options);
    this.name = 'BuildError';
    this.reason = reason;
    this.logTail = logTail;
  }
}

/** Passes lines on to the caller's log and keeps the last few for a BuildError. */
class BuildLog {
  private readonly lines: string[] = [];

  constructor(private readonly sink: (line: string) => void) {}

  line(text: string): void {
    this.lines.push(text);
    if (this.lines.length > LOG_TAIL_LINES) this.lines.shift();
    this.sink(text);
  }

  tail(): string[] {
    return [...this.lines];
  }
}

export async function buildAppImage(options: BuildOptions): Promise<BuildResult> {
  const started = performance.now();
  const elapsed = () => Math.round((performance.now() - started) / 100) / 10;
  const log = new BuildLog(options.log);
  const { repositoryPath, commit, slug, registryUrl, signal } = options;
  try {
    const image = imageReference(options.registryAddress, slug, commit);
    signal?.throwIfAborted();
    await requireCommit(repositoryPath, commit);
    if (await manifestExists(registryUrl, slug, commit, signal)) {
      log.line(`Image for ${commit} already built; reusing it`);
      return { image, built: false, seconds: elapsed() };
    }
    await requireDockerfile(repositoryPath, commit);
    log.line(`Building ${image} from commit ${commit}`);
    await buildFromArchive({ ...options, image }, log);
    log.line(`Pushing ${image}`);
    await pushImage(options.docker, image, log, signal);
    await confirmPushed(registryUrl, slug, commit, signal);
    log.line(`Built and pushed ${image} in ${elapsed()}s`);
    return { image, built: true, seconds: elapsed() };
  } catch (error) {
    throw asBuildError(error, log, signal);
  }
}

function asBuildError(error: unknown, log: BuildLog, signal: AbortSignal | undefined): BuildError {
  if (error instanceof BuildError) return error;
  const reason = signal?.aborted ? 'the build was cancelled' : firstLine(errorMessage(error));
  return new BuildError(reason, log.tail(), { cause: error });
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0]?.trim() || 'unknown error';
}

// --- the repository -----------------------------------------------------------------------------

function gitIn(repositoryPath: string, args: string[]) {
  // --git-dir names the repository outright, so no discovery from the current directory happens.
  return execa('git', ['--git-dir', repositoryPath, ...args], {
    env: gitProcessEnv(),
    extendEnv: false,
    stdin: 'ignore',
    reject: false,
  });
}

async function requireCommit(repositoryPath: string, commit: string): Promise<void> {
  const result = await gitIn(repositoryPath, ['cat-file', '-e', `${commit}^{commit}`]);
  if (result.exitCode === 0) return;
  if (/not a git repository/i.test(String(result.stderr))) throw new Error(`there is no git repository at ${repositoryPath}`);
  throw new Error(`commit ${commit} is not in the app's repository (push it first)`);
}

/** Checked before the engine is involved: its own message for a missing Dockerfile names no commit. */
async function requireDockerfile(repositoryPath: string, commit: string): Promise<void> {
  const result = await gitIn(repositoryPath, ['cat-file', '-t', `${commit}:Dockerfile`]);
  if (result.exitCode === 0 && String(result.stdout).trim() === 'blob') return;
  throw new Error(`no Dockerfile at ${commit}: the image is built from the Dockerfile at the root of the repository; add one and push`);
}

function startArchive(repositoryPath: string, commit: string, signal: AbortSignal | undefined) {
  return execa('git', ['--git-dir', repositoryPath, 'archive', '--format=tar', commit], {
    env: gitProcessEnv(),
    extendEnv: false,
    stdin: 'ignore',
    // stdout is the build context, streamed to the engine; only stderr is kept, for the error.
    buffer: { stdout: false },
    ...(signal ? { cancelSignal: signal } : {}),
  });
}

// --- the build ----------------------------------------------------------------------------------

async function buildFromArchive(options: BuildOptions & { image: string }, log: BuildLog): Promise<void> {
  const { repositoryPath, commit, slug, image, signal } = options;
  const archive = startArchive(repositoryPath, commit, signal);
  // Piped at once: execa sets an unbuffered stdout flowing on the next tick if nobody reads it yet,
  // and dockerode only starts reading once it has connected, so the start of the archive would be lost.
  const context = archive.stdout.pipe(new PassThrough());
  let buildFailure: unknown = null;
  // An archive that fails while the build still runs is the cause (the engine saw a cut-off context);
  // one that fails after the build did only lost its reader. Attached at once, so it is never unhandled.
  let archiveFailure: unknown = null;
  const archiveDone = archive.then(
    () => {},
    (error: unknown) => {
      if (buildFailure === null) archiveFailure = error;
    },
  );
  try {
    const progress = await options.docker.buildImage(context, {
      t: image,
      labels: { 'divio.app': slug, 'divio.commit': commit },
      rm: true,
      forcerm: true,
      ...(signal ? { abortSignal: signal } : {}),
    });
    await followBuild(abortable(progress, signal), log);
  } catch (error) {
    buildFailure = error;
    archive.kill();
  }
  await archiveDone;
  if (archiveFailure) throw archiveError(commit, archiveFailure);
  if (buildFailure) throw buildFailure;
}

function archiveError(commit: string, failure: unknown): Error {
  const stderr = String((failure as { stderr?: unknown }).stderr ?? '').trim();
  return new Error(`git archive of ${commit} failed: ${firstLine(stderr || errorMessage(failure))}`, { cause: failure });
}

/** Destroys a progress stream when the caller aborts, so reading it stops at once. */
function abortable(stream: NodeJS.ReadableStream, signal: AbortSignal | undefined): NodeJS.ReadableStream {
  if (signal) addAbortSignal(signal, stream as Readable);
  return stream;
}

/** One message of the engine's newline-delimited JSON progress (build and push alike). */
interface ProgressMessage {
  stream?: string;
  status?: string;
  id?: string;
  error?: string;
  errorDetail?: { message?: string };
  aux?: { ID?: string };
}

async function* progressMessages(stream: NodeJS.ReadableStream): AsyncGenerator<ProgressMessage> {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  const parse = (line: string): ProgressMessage => {
    try {
      return JSON.parse(line) as ProgressMessage;
    } catch {
      throw new Error(`the Docker engine sent an unreadable progress line: ${line.slice(0, 200)}`);
    }
  };
  for await (const chunk of stream) {
    pending += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) yield parse(line);
  }
  pending += decoder.end();
  if (pending.trim()) yield parse(pending);
}

function failureOf(message: ProgressMessage): string | undefined {
  return message.errorDetail?.message ?? message.error;
}

/**
 * A build step's output arrives in arbitrary chunks; lines are logged whole, as plain text: colours
 * and cursor moves stripped, a line redrawn with carriage returns logged as it finally read.
 */
class OutputLines {
  private pending = '';

  push(chunk: string): string[] {
    const lines = (this.pending + chunk).split('\n');
    this.pending = lines.pop() ?? '';
    return lines.map(plainText).filter((line) => line.length > 0);
  }

  flush(): string[] {
    const rest = plainText(this.pending);
    this.pending = '';
    return rest ? [rest] : [];
  }
}

function plainText(line: string): string {
  const segments = line.split('\r').filter((segment) => segment.trim().length > 0);
  return stripVTControlCharacters(segments.at(-1) ?? '').trimEnd();
}

/** Progress of layers (pulls, pushes): a line when a layer's state changes, not for every byte. */
class LayerStates {
  private readonly states = new Map<string, string>();

  constructor(private readonly log: BuildLog) {}

  report(message: ProgressMessage): void {
    const status = message.status?.trim();
    if (!status) return;
    if (!message.id) {
      this.log.line(status);
      return;
    }
    if (this.states.get(message.id) === status) return;
    this.states.set(message.id, status);
    this.log.line(`${message.id}: ${status}`);
  }
}

const STEP_LINE = /^Step \d+\/\d+ : /;

async function followBuild(progress: NodeJS.ReadableStream, log: BuildLog): Promise<void> {
  const output = new OutputLines();
  const layers = new LayerStates(log);
  let step: string | undefined;
  let imageId: string | undefined;
  const logOutput = (lines: string[]) => {
    for (const line of lines) {
      if (STEP_LINE.test(line)) step = line;
      log.line(line);
    }
  };
  for await (const message of progressMessages(progress)) {
    if (message.stream) logOutput(output.push(message.stream));
    layers.report(message);
    if (message.aux?.ID) imageId = message.aux.ID;
    const failure = failureOf(message);
    if (failure) {
      logOutput(output.flush());
      throw new Error(step ? `${step} failed: ${firstLine(failure)}` : firstLine(failure));
    }
  }
  logOutput(output.flush());
  if (!imageId) throw new Error('the Docker engine ended the build without producing an image');
}

// --- the push -----------------------------------------------------------------------------------

async function pushImage(docker: Docker, image: string, log: BuildLog, signal: AbortSignal | undefined): Promise<void> {
  const progress = await docker.getImage(image).push({
    // The engine refuses a push that carries no credentials header at all; the embedded registry needs none.
    authconfig: { serveraddress: image.slice(0, image.indexOf('/')) },
    ...(signal ? { abortSignal: signal } : {}),
  });
  const layers = new LayerStates(log);
  for await (const message of progressMessages(abortable(progress, signal))) {
    const failure = failureOf(message);
    if (failure) throw new Error(`pushing ${image} failed: ${firstLine(failure)}`);
    layers.report(message);
  }
}

/** Reuse depends on it: the engine's registry address and this process's registry URL must be one registry. */
async function confirmPushed(registryUrl: string, slug: string, commit: string, signal: AbortSignal | undefined): Promise<void> {
  if (await manifestExists(registryUrl, slug, commit, signal)) return;
  throw new Error(
    `the engine pushed ${slug}:${commit}, but the registry at ${registryUrl} does not hold it: the registry address and URL name different registries`,
  );
}
