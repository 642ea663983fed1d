/**
 * The CLI's client of the platform API, typed by and validated against the same route objects the
 * server registers (src/shared/api/routes.ts): a change to a schema changes both sides at once.
 */
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import type { z } from 'zod';
import type { RouteConfig } from '@hono/zod-openapi';
import { errorEnvelope } from '../shared/api/schemas.js';
import { DivioError, ExitCode } from './errors.js';
import { requireCredentials, type Credentials } from './credentials.js';
import { localhostLookup } from './localhost-lookup.js';

type JsonSchemaOf<T> = T extends { content: { 'application/json': { schema: infer S extends z.ZodType } } } ? S : never;
type SuccessStatus<R extends RouteConfig> = Extract<keyof R['responses'], 200 | 201 | 202 | 204>;

/** What a route's success answer holds (undefined for 204). */
export type ResponseOf<R extends RouteConfig> = {
  [C in SuccessStatus<R>]: JsonSchemaOf<R['responses'][C]> extends never ? undefined : z.output<JsonSchemaOf<R['responses'][C]>>;
}[SuccessStatus<R>];

type ParamsOf<R extends RouteConfig> = R['request'] extends { params: infer P extends z.ZodType } ? z.input<P> : undefined;
type BodyOf<R extends RouteConfig> = R['request'] extends { body: infer B } ? z.input<JsonSchemaOf<B>> : undefined;

export type CallInput<R extends RouteConfig> = (ParamsOf<R> extends undefined ? { params?: undefined } : { params: ParamsOf<R> }) &
  (BodyOf<R> extends undefined ? { body?: unknown } : { body: BodyOf<R> }) & { query?: Record<string, string> };

/** The API answered with an error: status, the envelope's code and field. */
export class ApiRequestError extends DivioError {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly field: string | undefined,
    hint: string | undefined,
  ) {
    super(message, { hint, exitCode: status === 401 || status === 403 ? ExitCode.environment : ExitCode.failure });
    this.name = 'ApiRequestError';
  }
}

export class ApiClient {
  constructor(
    readonly endpoint: string,
    private readonly token: string | undefined,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  static async fromCredentials(env: NodeJS.ProcessEnv = process.env): Promise<ApiClient> {
    const credentials: Credentials = await requireCredentials(env);
    return new ApiClient(credentials.endpoint, credentials.token);
  }

  async call<R extends RouteConfig>(route: R, input: CallInput<R> = {} as CallInput<R>): Promise<ResponseOf<R>> {
    const response = await this.send(route, input, {
      accept: 'application/json',
      timeoutMs: 120_000,
    });
    if (!successSchema(route, response.status)) return undefined as ResponseOf<R>;
    return this.answer(route, response.status, await response.json().catch(() => undefined));
  }

  /** Ask a route whose answer is not JSON (a streamed log): the response, already checked for errors. */
  async stream<R extends RouteConfig>(
    route: R,
    input: CallInput<R>,
  ): Promise<Response> {
    return this.send(route, input, { accept: 'text/plain', timeoutMs: undefined });
  }

  /**
   * A route whose answer is a byte stream of any size (a database dump): Node's HTTP client, so the
   * body streams with back-pressure into wherever it goes. Errors come back as for `call`.
   */
  async download<R extends RouteConfig>(
    route: R,
    input: CallInput<R>,
    options: { signal?: AbortSignal } = {},
  ): Promise<{ body: IncomingMessage; headers: IncomingHttpHeaders }> {
    const response = await whileRefused(() => this.nodeRequest(route, input, { accept: 'application/octet-stream', signal: options.signal }));
    if ((response.statusCode ?? 0) >= 300) throw await nodeError(response, this.endpoint);
    return { body: response, headers: response.headers };
  }

  /** A route whose request body is a byte stream of any size (a database dump); the answer is JSON. */
  async upload<R extends RouteConfig>(
    route: R,
    input: CallInput<R>,
    body: Readable,
    options: { signal?: AbortSignal } = {},
  ): Promise<ResponseOf<R>> {
    const response = await this.nodeRequest(route, input, { accept: 'application/json', signal: options.signal, body });
    const status = response.statusCode ?? 0;
    if (status >= 300) throw await nodeError(response, this.endpoint);
    const text = await readText(response);
    if (!successSchema(route, status)) return undefined as ResponseOf<R>;
    return this.answer(route, status, parseJson(text));
  }

  /** A success answer checked against the route's schema (shared with the platform). */
  private answer<R extends RouteConfig>(route: R, status: number, json: unknown): ResponseOf<R> {
    const parsed = successSchema(route, status)?.safeParse(json);
    if (!parsed?.success) {
      throw new DivioError(`The platform at ${this.endpoint} gave an answer this divio does not understand`, {
        hint: 'The platform and the CLI may be different versions; update the older one.',
      });
    }
    return parsed.data as ResponseOf<R>;
  }

  private nodeRequest<R extends RouteConfig>(
    route: R,
    input: CallInput<R>,
    options: { accept: string; signal?: AbortSignal; body?: Readable },
  ): Promise<IncomingMessage> {
    const url = new URL(this.url(route, input));
    const headers: Record<string, string> = { accept: options.accept };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (options.body) headers['content-type'] = 'application/octet-stream';
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, { method: route.method.toUpperCase(), headers, signal: options.signal, lookup: localhostLookup }, resolve);
      req.on('error', (error) => {
        reject(
          options.signal?.aborted
            ? options.signal.reason
            : new DivioError(`The connection to the platform at ${this.endpoint} failed: ${error.message}`, {
                exitCode: ExitCode.environment,
                hint: 'Check the endpoint and that the platform runs (`divio platform status` on its host); then try again.',
                cause: error,
              }),
        );
      });
      if (!options.body) {
        req.end();
        return;
      }
      options.body.on('error', (error) => req.destroy(error));
      options.body.pipe(req);
    });
  }

  private url<R extends RouteConfig>(route: R, input: CallInput<R>): string {
    const query = input.query ? `?${new URLSearchParams(input.query).toString()}` : '';
    return this.endpoint.replace(/\/+$/, '') + fillPath(route.path, (input.params ?? {}) as Record<string, string>) + query;
  }

  private async send<R extends RouteConfig>(
    route: R,
    input: CallInput<R>,
    options: { accept: string; timeoutMs: number | undefined },
  ): Promise<Response> {
    const url = this.url(route, input);
    const headers: Record<string, string> = { accept: options.accept };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (input.body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      const request = () =>
        this.fetchImpl(url, {
          method: route.method.toUpperCase(),
          headers,
          body: input.body === undefined ? undefined : JSON.stringify(input.body),
          signal: options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs),
        });
      response = await whileRefused(request, REFUSED_RETRY_MS, route.method === 'get');
    } catch (error) {
      throw new DivioError(`Cannot reach the divio platform at ${this.endpoint}`, {
        exitCode: ExitCode.environment,
        hint: 'Check the endpoint and that the platform runs (`divio platform status` on its host).',
        cause: error,
      });
    }
    if (!response.ok) throw await toError(response, this.endpoint);
    return response;
  }
}

function fillPath(template: string, params: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`missing path parameter ${name}`);
    return encodeURIComponent(value);
  });
}

/**
 * How long a request is tried again while the platform refuses connections. The router restarts
 * for a few seconds when it joins a new environment's network (environment-networks.ts); a refused
 * connection never reached the platform, so trying again is safe for any request.
 */
export const REFUSED_RETRY_MS = 15_000;

/** A connection the other side closed before answering: only a read may simply be asked again. */
const CUT_OFF = new Set(['ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE']);

async function whileRefused<T>(attempt: () => Promise<T>, windowMs = REFUSED_RETRY_MS, idempotent = false): Promise<T> {
  const deadline = Date.now() + windowMs;
  for (let delay = 250; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await attempt();
    } catch (error) {
      const code = (error as { cause?: { code?: string } }).cause?.code ?? (error as { code?: string }).code;
      const retryable = code === 'ECONNREFUSED' || (idempotent && CUT_OFF.has(code ?? ''));
      if (!retryable || Date.now() + delay > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

function successSchema(route: RouteConfig, status: number): z.ZodType | undefined {
  const response = (route.responses as Record<number, { content?: Record<string, { schema?: z.ZodType }> }>)[status];
  return response?.content?.['application/json']?.schema;
}

async function toError(response: Response, endpoint: string): Promise<ApiRequestError> {
  return errorFrom(response.status, await response.text().catch(() => ''), endpoint);
}

async function nodeError(response: IncomingMessage, endpoint: string): Promise<ApiRequestError> {
  return errorFrom(response.statusCode ?? 0, await readText(response).catch(() => ''), endpoint);
}

async function readText(response: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function errorFrom(status: number, text: string, endpoint: string): ApiRequestError {
  const body = errorEnvelope.safeParse(parseJson(text));
  // A gateway error without our envelope is the router saying the API itself did not answer.
  const gateway = !body.success && status >= 502 && status <= 504;
  const message = body.success
    ? body.data.error.message
    : gateway
      ? `The platform's API did not answer (HTTP ${status} from its router): it may be restarting`
      : `The platform answered HTTP ${status}`;
  const code = body.success ? body.data.error.code : 'http_error';
  let hint = body.success ? body.data.error.hint : undefined;
  if (gateway) hint = 'Try again in a moment; `divio platform status` on its host shows whether the API runs.';
  // A disabled account cannot log in again: its own hint (ask the operator) says what to do.
  if (status === 401 && code !== 'account_disabled') hint = `Log in again: \`divio login --endpoint ${endpoint}\` (or set DIVIO_TOKEN).`;
  if (status === 403) hint ??= 'Ask the platform operator for a token that allows this.';
  return new ApiRequestError(message, status, code, body.success ? body.data.error.field : undefined, hint);
}
