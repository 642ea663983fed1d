/** Errors the API answers with: one envelope, `{ error: { code, message, field?, hint? } }`. */
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ErrorEnvelope } from '../../shared/api/schemas.js';

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly extra: { field?: string; hint?: string } = {},
  ) {
    super(message);
  }

  envelope(): ErrorEnvelope {
    return { error: { code: this.code, message: this.message, ...this.extra } };
  }
}

export const notFound = (what: string) => new ApiError(404, 'not_found', `${what} not found`);
export const unauthorized = (message = 'A valid API token is required') =>
  new ApiError(401, 'unauthorized', message, { hint: 'Send `Authorization: Bearer TOKEN`; `divio login` stores one.' });
export const forbidden = (message: string) => new ApiError(403, 'forbidden', message);
export const conflict = (message: string, field?: string) =>
  new ApiError(409, 'conflict', message, field ? { field } : {});
