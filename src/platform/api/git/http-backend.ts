/**
 * Git's smart HTTP protocol, served by git's own CGI program `git http-backend`: a Fetch API Request
 * goes in as a CGI environment plus stdin, the CGI output comes back as a streaming Response.
 *
 * Only the three smart-protocol endpoints are accepted. Which of them a request reaches decides the
 * access it needs, and http-backend is then told to run exactly that service, so neither a query
 * parameter nor a path trick can make a push pass as a fetch.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { SLUG_PATTERN } from '../../../shared/project-config.js';
import { bareRepositoryPath, gitProcessEnv } from './repositories.js';

export type GitService = 'git-upload-pack' | 'git-receive-pack';
export type GitAccess = 'read' | 'write';

export interface GitAccessRequirement {
  service: GitService;
  access: GitAccess;
}

const ACCESS_BY_SERVICE: Record<GitService, GitAccess> = {
  'git-upload-pack': 'read',
  'git-receive-pack': 'write',
};

/** The smart-protocol subpaths; dumb HTTP (HEAD, objects/..., info/packs) is never served. */
export const GIT_SUBPATHS = ['info/refs', 'git-upload-pack', 'git-receive-pack'] as const;
export type GitSubpath = (typeof GIT_SUBPATHS)[number];

function isGitService(value: string | undefined): value is GitService {
  return value === 'git-upload-pack' || value === 'git-receive-pack';
}

function isGitSubpath(value: string): value is GitSubpath {
  return (GIT_SUBPATHS as readonly string[]).includes(value);
}

/**
 * What a request needs, or null when it is not one of the smart-protocol requests:
 * `GET info/refs?service=S` (the advertisement for S) and `POST S`. For POST the path alone decides;
 * a query string is ignored. Exactly one `service` parameter is allowed, because parsers disagree on
 * which of several wins.
 */
export function gitAccessFor(method: string, subpath: string, query: URLSearchParams): GitAccessRequirement | null {
  if (method === 'GET' && subpath === 'info/refs') {
    const services = query.getAll('service');
    const service = services.length === 1 ? services[0] : undefined;
    return isGitService(service) ? { service, access: ACCESS_BY_SERVICE[service] } : null;
  }
  if (method === 'POST' && isGitService(subpath)) return { service: subpath, access: ACCESS_BY_SERVICE[subpath] };
  return null;
}

/** The URL path after `/git/`: `SLUG.git/SUBPATH`. Anything looser than this is not a git request. */
export const gitPathPattern = /^([^/]+)\.git\/(info\/refs|git-upload-pack|git-receive-pack)$/;

export function parseGitPath(path: string): { slug: string; subpath: GitSubpath } | null {
  const match = gitPathPattern.exec(path);
  const slug = match?.[1];
  const subpath = match?.[2];
  if (slug === undefined || subpath === undefined) return null;
  if (!SLUG_PATTERN.test(slug) || !isGitSubpath(subpath)) return null;
  return { slug, subpath };
}

export interface ServeGitOptions {
  /** The directory holding SLUG.git repositories. */
  projectRoot: string;
  slug: string;
  /** One of GIT_SUBPATHS; anything else is answered 404. */
  subpath: string;
  /** What the caller was granted; a write service with 'read' is answered 403. */
  access: GitAccess;
  /** Who is asking; git records it as the committer of reflog entries. */
  remoteUser: string;
  remoteAddr?: string;
  /** Told why git failed (its exit status and stderr), for the server log; the client never sees it. */
  onError?: (message: string) => void;
}

/** CGI headers are a few hundred bytes; more than this is not http-backend talking. */
const MAX_CGI_HEAD_BYTES = 64 * 1024;
const MAX_STDERR_BYTES = 8 * 1024;
/** `version=2`, and whatever later key=value pairs git adds; nothing that needs quoting. */
const GIT_PROTOCOL_PATTERN = /^[A-Za-z0-9._=:-]{1,256}$/;
/** Framing belongs to the HTTP server in front, not to the CGI program. */
const HOP_BY_HOP_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding']);
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

type BackendProcess = ChildProcessByStdio<Writable, Readable, Readable>;

export async function serveGit(request: Request, opts: ServeGitOptions): Promise<Response> {
  const requirement = gitAccessFor(request.method, opts.subpath, new URL(request.url).searchParams);
  if (!requirement || !SLUG_PATTERN.test(opts.slug)) return plainResponse(404, 'Not a git endpoint');
  if (requirement.access === 'write' && opts.access !== 'write') return plainResponse(403, 'Push is not allowed with these credentials');
  const projectRoot = resolve(opts.projectRoot);
  if (!(await isDirectory(bareRepositoryPath(projectRoot, opts.slug)))) return plainResponse(404, 'Repository not found');
  if (request.signal.aborted) return plainResponse(499, 'Client closed request');
  // A middleware that read or wrapped-and-drained the body (a body limit, a logger) leaves git nothing to read.
  if (request.bodyUsed) return plainResponse(500, 'The request body was consumed before git could read it');
  return runBackend(request, { ...opts, projectRoot }, requirement);
}

async function runBackend(request: Request, opts: ServeGitOptions, requirement: GitAccessRequirement): Promise<Response> {
  let child: BackendProcess;
  try {
    child = spawnBackend(request, opts, requirement);
  } catch (error) {
    // spawn throws synchronously on an unusable environment value, e.g. a NUL in remoteUser.
    opts.onError?.(`git http-backend could not start: ${error instanceof Error ? error.message : String(error)}`);
    return plainResponse(500, 'git failed to start');
  }
  const diagnostics = collectDiagnostics(child, opts.onError);
  const stop = (): void => {
    child.kill('SIGTERM');
  };
  request.signal.addEventListener('abort', stop, { once: true });
  child.once('close', () => request.signal.removeEventListener('abort', stop));

  const output = child.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  try {
    feedRequestBody(request, child.stdin);
    const head = await readCgiHead(output);
    if (!head) {
      diagnostics.report('git http-backend ended before answering');
      return plainResponse(500, 'git failed to answer');
    }
    const { status, headers } = parseCgiHead(head.text);
    if (NULL_BODY_STATUSES.has(status)) {
      stop();
      return new Response(null, { status, headers });
    }
    return new Response(streamBody(head.rest, output, stop), { status, headers });
  } catch (error) {
    stop();
    diagnostics.report(`git http-backend answered badly: ${error instanceof Error ? error.message : String(error)}`);
    return plainResponse(500, 'git failed to answer');
  }
}

function spawnBackend(request: Request, opts: ServeGitOptions, requirement: GitAccessRequirement): BackendProcess {
  // -c outranks any repository or global setting: upload-pack is always on, receive-pack only for a
  // caller granted write. (http-backend would otherwise enable receive-pack whenever REMOTE_USER is set.)
  const args = [
    '-c',
    'http.uploadpack=true',
    '-c',
    `http.receivepack=${opts.access === 'write' ? 'true' : 'false'}`,
    // The repository's own hooks (the platform's branch protection), whatever a global config says.
    '-c',
    `core.hooksPath=${join(bareRepositoryPath(opts.projectRoot, opts.slug), 'hooks')}`,
    'http-backend',
  ];
  return spawn('git', args, {
    cwd: opts.projectRoot,
    env: cgiEnvironment(request, opts, requirement),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

function cgiEnvironment(request: Request, opts: ServeGitOptions, requirement: GitAccessRequirement): Record<string, string> {
  const env: Record<string, string> = {
    ...gitProcessEnv(),
    GIT_PROJECT_ROOT: opts.projectRoot,
    GIT_HTTP_EXPORT_ALL: '1',
    PATH_INFO: `/${opts.slug}.git/${opts.subpath}`,
    REQUEST_METHOD: request.method,
    // Rebuilt rather than passed through: http-backend lets the last of repeated parameters win,
    // URLSearchParams the first, so the service it runs is exactly the one access was granted for.
    QUERY_STRING: request.method === 'GET' ? `service=${requirement.service}` : '',
    REMOTE_USER: opts.remoteUser,
  };
  setIfPresent(env, 'REMOTE_ADDR', opts.remoteAddr);
  // Absent for a chunked body (large pushes); http-backend then reads stdin to its end.
  const length = request.headers.get('content-length');
  if (length && /^\d{1,15}$/.test(length)) env.CONTENT_LENGTH = length;
  setIfPresent(env, 'CONTENT_TYPE', request.headers.get('content-type'));
  // Clients gzip large upload-pack requests; http-backend inflates them when told.
  setIfPresent(env, 'HTTP_CONTENT_ENCODING', request.headers.get('content-encoding'));
  const protocol = request.headers.get('git-protocol');
  if (protocol && GIT_PROTOCOL_PATTERN.test(protocol)) env.GIT_PROTOCOL = protocol;
  return env;
}

function setIfPresent(env: Record<string, string>, name: string, value: string | null | undefined): void {
  if (value) env[name] = value;
}

/** Streamed, never buffered: a push can be as big as the repository. */
function feedRequestBody(request: Request, stdin: Writable): void {
  // A child that exits without reading (a refusal) makes writes fail with EPIPE; its answer says why.
  stdin.on('error', () => {});
  if (!request.body) {
    stdin.end();
    return;
  }
  const body = Readable.fromWeb(request.body as unknown as NodeReadableStream<Uint8Array>);
  pipeline(body, stdin).catch(() => {
    // Either the client went away (the abort signal stops the child) or the child ended first.
  });
}

function collectDiagnostics(child: BackendProcess, onError: ServeGitOptions['onError']): { report: (message: string) => void } {
  let stderr = '';
  let reported = false;
  child.stderr.on('data', (chunk: Buffer) => {
    if (stderr.length < MAX_STDERR_BYTES) stderr += chunk.toString('utf8').slice(0, MAX_STDERR_BYTES - stderr.length);
  });
  const report = (message: string): void => {
    if (reported || !onError) return;
    reported = true;
    onError(stderr.trim() ? `${message}: ${stderr.trim()}` : message);
  };
  child.on('error', (error) => report(`git http-backend could not run: ${error.message}`));
  child.on('close', (code, signal) => {
    if (code !== 0 && signal === null) report(`git http-backend exited with status ${code}`);
  });
  return { report };
}

async function readCgiHead(output: AsyncIterator<Buffer>): Promise<{ text: string; rest: Buffer } | null> {
  let buffered = Buffer.alloc(0);
  for (;;) {
    const next = await output.next();
    if (next.done) return null;
    buffered = Buffer.concat([buffered, next.value]);
    const end = headEnd(buffered);
    if (end) return { text: buffered.subarray(0, end.at).toString('latin1'), rest: buffered.subarray(end.at + end.length) };
    if (buffered.length > MAX_CGI_HEAD_BYTES) throw new Error(`no end of headers in the first ${MAX_CGI_HEAD_BYTES} bytes`);
  }
}

/** CGI allows bare LF line ends; http-backend writes CRLF. Whichever blank line comes first ends the head. */
function headEnd(buffer: Buffer): { at: number; length: number } | null {
  const crlf = buffer.indexOf('\r\n\r\n');
  const lf = buffer.indexOf('\n\n');
  if (crlf === -1 && lf === -1) return null;
  if (lf === -1 || (crlf !== -1 && crlf < lf)) return { at: crlf, length: 4 };
  return { at: lf, length: 2 };
}

function parseCgiHead(text: string): { status: number; headers: Headers } {
  let status = 200;
  const headers = new Headers();
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`malformed header line ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') status = parseStatus(value);
    else if (!HOP_BY_HOP_HEADERS.has(name.toLowerCase())) headers.append(name, value);
  }
  return { status, headers };
}

function parseStatus(value: string): number {
  const status = Number(/^(\d{3})(?:\s|$)/.exec(value)?.[1]);
  if (!Number.isInteger(status) || status < 200 || status > 599) throw new Error(`bad Status ${JSON.stringify(value)}`);
  return status;
}

/** Pulled chunk by chunk, so a slow client slows git down instead of filling memory. */
function streamBody(first: Buffer, output: AsyncIterator<Buffer>, stop: () => void): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (first.length > 0) controller.enqueue(first);
    },
    async pull(controller) {
      try {
        const next = await output.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      } catch (error) {
        controller.error(error);
      }
    },
    cancel() {
      stop();
    },
  });
}

function plainResponse(status: number, message: string): Response {
  return new Response(`${message}\n`, { status, headers: { 'content-type': 'text/plain; charset=utf-8' } });
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
