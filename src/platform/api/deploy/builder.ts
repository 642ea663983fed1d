/**
 * The builder: one commit of an app's bare repository becomes an image in the app instance's own
 * repository, pushed under `REPO:COMMIT` and returned as `REPO@sha256:…`, the digest the push
 * produced. The build context is `git archive` of that commit, never a working tree, so what is
 * deployed is exactly what was pushed. A commit is built once: when the caller has the digest an
 * earlier build of it recorded (test built it, live is being deployed) and the registry still holds
 * it, that image is reused. A tag is never looked up: anyone with the registry's account could have
 * pushed over it.
 *
 * Builds are confined: the Dockerfile may only build from public base images and the app's own
 * images (dockerfile-references.ts), RUN steps get a memory limit and the build network (no way to
 * the host or the platform's services), and the whole build a time limit.
 */
import { PassThrough, addAbortSignal, type Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { stripVTControlCharacters } from 'node:util';
import type Docker from 'dockerode';
import { execa } from 'execa';
import { errorMessage } from '../../../core/errors.js';
import { gitProcessEnv } from '../git/repositories.js';
import { ForbiddenImageReference, LABEL_APP_ID, checkImageReferences } from './dockerfile-references.js';
import {
  DIGEST_PATTERN,
  digestReference,
  engineAuth,
  imageReference,
  imageRepository,
  manifestDigest,
  manifestExists,
  recordedDigest,
  type RegistryAccess,
} from './registry.js';

export interface BuildOptions {
  /** The app's bare repository. */
  repositoryPath: string;
  /** A full 40-hex commit id, already resolved from the environment's branch by the caller. */
  commit: string;
  slug: string;
  /** The app instance's id: part of its repository's name and the `divio.app-id` label of its images. */
  appId: string;
  registry: RegistryAccess;
  /** The image an earlier build of this commit recorded (`ADDRESS/REPO@sha256:…`), if any. */
  recorded?: string;
  limits?: BuildLimits;
  /** The network RUN steps use (the platform's build network); the engine's default when absent. */
  network?: string;
  docker: Docker;
  /** Receives the build's and push's progress, one plain-text line at a time, as it happens. */
  log: (line: string) => void;
  signal?: AbortSignal;
}

export interface BuildLimits {
  /** The whole build and push. */
  timeoutMs?: number;
  /** Memory of each RUN step's container (no swap on top). */
  memoryBytes?: number;
}

export interface BuildResult {
  /** `ADDRESS/REPO@sha256:…`: what to deploy. */
  image: string;
  /** False when an earlier build's recorded image was reused. */
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
  const { repositoryPath, commit, slug, appId, registry, signal } = options;
  const timeoutMs = options.limits?.timeoutMs;
  const deadline = timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined;
  const limited = deadline ? (signal ? AbortSignal.any([signal, deadline]) : deadline) : signal;
  try {
    const repository = imageRepository(slug, appId);
    const tag = imageReference(registry.address, repository, commit);
    signal?.throwIfAborted();
    await requireCommit(repositoryPath, commit);
    const reused = await reusable(options, repository);
    if (reused) {
      log.line(`Image for ${commit} already built; reusing it`);
      return { image: reused, built: false, seconds: elapsed() };
    }
    const dockerfile = await readDockerfile(repositoryPath, commit);
    await checkImageReferences(options.docker, dockerfile, { registryAddress: registry.address, ownRepository: repository, appId });
    log.line(`Building ${tag} from commit ${commit}`);
    await buildFromArchive({ ...options, signal: limited, image: tag }, log);
    log.line(`Pushing ${tag}`);
    const digest = await pushImage(options.docker, tag, registry, log, limited);
    await confirmPushed(registry, repository, digest, limited);
    const image = digestReference(registry.address, repository, digest);
    log.line(`Built and pushed ${image} in ${elapsed()}s`);
    return { image, built: true, seconds: elapsed() };
  } catch (error) {
    if (error instanceof ForbiddenImageReference) throw new BuildError(error.message, log.tail(), { cause: error });
    throw asBuildError(error, log, signal, deadline, timeoutMs);
  }
}

/** The recorded image of this commit, when it is in this app's repository and the registry still holds it. */
async function reusable(options: BuildOptions, repository: string): Promise<string | undefined> {
  if (!options.recorded) return undefined;
  const digest = recordedDigest(options.recorded, options.registry.address, repository);
  if (!digest) return undefined;
  return (await manifestExists(options.registry, repository, digest, options.signal)) ? options.recorded : undefined;
}

function asBuildError(error: unknown, log: BuildLog, signal: AbortSignal | undefined, deadline: AbortSignal | undefined, timeoutMs: number | undefined): BuildError {
  if (error instanceof BuildError) return error;
  let reason: string;
  if (signal?.aborted) reason = 'the build was cancelled';
  else if (deadline?.aborted) reason = `the build took longer than the platform's limit of ${formatDuration(timeoutMs ?? 0)} and was stopped`;
  else reason = firstLine(errorMessage(error));
  return new BuildError(reason, log.tail(), { cause: error });
}

function formatDuration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  return seconds % 60 === 0 ? `${seconds / 60} min` : `${seconds} s`;
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

/** A Dockerfile larger than this is refused rather than parsed (real ones are a few KiB). */
const DOCKERFILE_MAX_BYTES = 1024 * 1024;

/**
 * Read before the engine is involved: its own message for a missing Dockerfile names no commit, and
 * the images it names are checked first.
 */
async function readDockerfile(repositoryPath: string, commit: string): Promise<string> {
  const type = await gitIn(repositoryPath, ['cat-file', '-t', `${commit}:Dockerfile`]);
  if (type.exitCode !== 0 || String(type.stdout).trim() !== 'blob') {
    throw new Error(`no Dockerfile at ${commit}: the image is built from the Dockerfile at the root of the repository; add one and push`);
  }
  const size = await gitIn(repositoryPath, ['cat-file', '-s', `${commit}:Dockerfile`]);
  if (Number(String(size.stdout).trim()) > DOCKERFILE_MAX_BYTES) throw new Error(`the Dockerfile at ${commit} is larger than 1 MiB`);
  const blob = await gitIn(repositoryPath, ['cat-file', 'blob', `${commit}:Dockerfile`]);
  if (blob.exitCode !== 0) throw new Error(`cannot read the Dockerfile at ${commit}: ${firstLine(String(blob.stderr))}`);
  return String(blob.stdout);
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
  const { repositoryPath, commit, slug, appId, image, signal } = options;
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
    const memory = options.limits?.memoryBytes;
    const progress = await options.docker.buildImage(context, {
      t: image,
      // The app id label is what tells this app's images from others' (dockerfile-references.ts).
      labels: { 'divio.app': slug, [LABEL_APP_ID]: appId, 'divio.commit': commit },
      rm: true,
      forcerm: true,
      ...(memory ? { memory, memswap: memory } : {}),
      ...(options.network ? { networkmode: options.network } : {}),
      ...(signal ? { abortSignal: signal } : {}),
    });
    await followBuild(abortable(progress, signal), log, memory);
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
  aux?: { ID?: string; Digest?: string };
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

async function followBuild(progress: NodeJS.ReadableStream, log: BuildLog, memoryBytes?: number): Promise<void> {
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
      // 137: SIGKILL, which is what the kernel's OOM killer sends at the memory limit.
      const killed = memoryBytes && /non-zero code: 137\b/.test(failure) ? ` (killed: it may have used up the build's ${Math.round(memoryBytes / 1024 / 1024)} MiB of memory)` : '';
      throw new Error(step ? `${step} failed: ${firstLine(failure)}${killed}` : `${firstLine(failure)}${killed}`);
    }
  }
  logOutput(output.flush());
  if (!imageId) throw new Error('the Docker engine ended the build without producing an image');
}

// --- the push -----------------------------------------------------------------------------------

/** Pushes with the platform's registry account; resolves with the digest the registry stored. */
async function pushImage(docker: Docker, image: string, registry: RegistryAccess, log: BuildLog, signal: AbortSignal | undefined): Promise<string> {
  const progress = await docker.getImage(image).push({
    // Per request: the engine keeps no credentials of its own for this registry.
    authconfig: engineAuth(registry),
    ...(signal ? { abortSignal: signal } : {}),
  });
  const layers = new LayerStates(log);
  let digest: string | undefined;
  for await (const message of progressMessages(abortable(progress, signal))) {
    const failure = failureOf(message);
    if (failure) throw new Error(`pushing ${image} failed: ${firstLine(failure)}`);
    if (message.aux?.Digest && DIGEST_PATTERN.test(message.aux.Digest)) digest = message.aux.Digest;
    layers.report(message);
  }
  if (!digest) throw new Error(`the Docker engine pushed ${image} without reporting its digest`);
  return digest;
}

/** Reuse depends on it: the engine's registry address and this process's registry URL must be one registry. */
async function confirmPushed(registry: RegistryAccess, repository: string, digest: string, signal: AbortSignal | undefined): Promise<void> {
  if ((await manifestDigest(registry, repository, digest, signal)) === digest) return;
  throw new Error(
    `the engine pushed ${repository}@${digest}, but the registry at ${registry.url} does not hold it: the registry address and URL name different registries`,
  );
}
