import type { FastifyError } from 'fastify';
import { GlassboxError, isGlassboxError, type ErrorCode } from '../protocol/errors.js';

/*
 * What a Glassbox server answers for an error: the HTTP status of each code, and what fastify and
 * its plugins throw mapped to our codes. The provider (src/node/problem.ts answers problem+json,
 * src/node/routes/openai.ts OpenAI's error body) and the gateway (src/gateway) share it, so the
 * same refusal has the same status wherever it is answered.
 */

const STATUS: Partial<Record<ErrorCode, number>> = {
  ADMIN_UNAUTHORIZED: 401,
  PAYMENT_REQUIRED: 402,
  NOT_FOUND: 404,
  MODEL_NOT_FOUND: 404,
  BLOB_NOT_FOUND: 404,
  PRICE_TOO_HIGH: 409,
  MODEL_REFUSED: 409,
  REQUEST_CONFLICT: 409,
  REQUEST_TOO_LARGE: 413,
  INPUT_TOO_LARGE: 413,
  // The inputs passed the schema but the runtime could not run them: the request's fault as far as
  // we can tell (a provider-side failure would be a bug or exhaustion, and clients fail over anyway).
  RUN_FAILED: 422,
  OUTPUT_TOO_LARGE: 422,
  RATE_LIMITED: 429,
  // nginx's "client closed request": only logged, the client that aborted is gone
  ABORTED: 499,
  BLOB_CORRUPT: 500,
  INTERNAL: 500,
  CHAIN_RPC: 502,
  CHAIN_REVERTED: 502,
  NODE_UNAVAILABLE: 503,
  RUN_TIMEOUT: 504,
};

/**
 * The status of an error. A request whose own signature does not prove its client (field
 * `signature`, src/protocol/request.ts) is unauthenticated: 401. Any other bad signature (a
 * voucher's, `voucher.signature`) is a bad payment from a proven client: 400.
 */
export function statusOf(code: ErrorCode, field?: string): number {
  if (code === 'SIGNATURE_INVALID' && field === 'signature') return 401;
  return STATUS[code] ?? 400;
}

/** What the error answers name of the node's own limits. */
export type ProblemLimits = { readonly bodyLimitBytes: number };

/**
 * Maps what fastify and its plugins throw to our codes. A request that fails its route's schema
 * names the field under the part it is in (`params.root`, `query.offset`, and the body by its
 * route's `bodyName`: `voucher.signature`).
 */
export function toGlassboxError(error: unknown, limits: ProblemLimits, bodyName = 'body'): GlassboxError {
  if (isGlassboxError(error)) return error;
  const e = error as Partial<FastifyError> & { message?: string };
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || status === 413)
    return new GlassboxError(
      'REQUEST_TOO_LARGE',
      `the request body is larger than this provider accepts (${limits.bodyLimitBytes} bytes)`,
      { field: 'body', details: { limitBytes: limits.bodyLimitBytes } },
    );
  if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || status === 415)
    return new GlassboxError(
      'REQUEST_INVALID',
      'unsupported content-type: send application/json or application/octet-stream',
      { field: 'content-type' },
    );
  if (e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || e.code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH')
    return new GlassboxError('REQUEST_INVALID', e.message ?? 'bad body', { field: 'body' });
  if (error instanceof SyntaxError || e.code === 'FST_ERR_CTP_INVALID_JSON_BODY')
    return new GlassboxError('REQUEST_INVALID', `the body is not valid JSON: ${e.message ?? ''}`, {
      field: 'body',
    });
  if (e.validation !== undefined) {
    // fastify-type-provider-zod's issues: instancePath `/inputs/0`, an unknown key in params.keys
    const first = e.validation[0] as
      { instancePath?: string; message?: string; keyword?: string; params?: { keys?: unknown } } | undefined;
    const context = e.validationContext;
    const part = context === 'querystring' ? 'query' : context === 'body' ? bodyName : context;
    const path = (first?.instancePath ?? '').split('/').filter(Boolean);
    const keys = first?.params?.keys;
    if (first?.keyword === 'unrecognized_keys' && Array.isArray(keys) && typeof keys[0] === 'string')
      path.push(keys[0]);
    const field = [part ?? 'request', ...path].join('.');
    return new GlassboxError('REQUEST_INVALID', `${field}: ${first?.message ?? e.message}`, { field });
  }
  if (status === 429) return new GlassboxError('RATE_LIMITED', e.message ?? 'rate limited');
  if (status >= 400 && status < 500) return new GlassboxError('REQUEST_INVALID', e.message ?? 'bad request');
  return new GlassboxError('INTERNAL', 'internal error', { cause: error });
}
