import { isAddress, isAddressEqual, type Address } from 'viem';
import type { z } from 'zod';
import { parseProviderJson, PROVIDER_HEADER } from '../protocol/api.js';
import { readBody, readJsonBody } from '../protocol/body.js';
import { ErrorCodes, GlassboxError, isGlassboxError, type ErrorCode } from '../protocol/errors.js';
import type { ApiRoute, JsonRoute, RawContent } from './routes.js';

/*
 * The one typed client of the provider API (./routes.ts), shared by the SDK, the node's verifier
 * and committee member, and the CLI. Every failure is a GlassboxError naming who answered:
 * PROVIDER_UNAVAILABLE (connection refused, reset, DNS; an endpoint that answers as another
 * provider: see staleEndpoint), PROVIDER_TIMEOUT, the answer's own problem+json code when it is one
 * we know (PAYMENT_REQUIRED, PRICE_TOO_HIGH, INPUT_*...), RESPONSE_TOO_LARGE (past the reader's
 * cap, read chunk by chunk and never buffered whole), and PROVIDER_ERROR for anything else: a 5xx
 * without a code, or a body that does not follow its route's schema, with `field` naming where
 * (`response.receipts.3.receipt.signature`). Nothing of an answer is used before it is validated.
 */

/** Whom a request goes to, and how it is read. */
export type ApiTarget = {
  /** The base URL (`http://127.0.0.1:8080`). */
  readonly endpoint: string;
  /** Who answers, in messages: `provider 0x…`, `the node at http://…`. */
  readonly name: string;
  /**
   * The provider expected to answer: an answer naming another in its PROVIDER_HEADER is a stale
   * endpoint (PROVIDER_UNAVAILABLE), told apart before its body is read.
   */
  readonly provider?: Address;
  readonly timeoutMs: number;
  /** The most bytes of one answer read; past it, RESPONSE_TOO_LARGE. */
  readonly maxResponseBytes: number;
  readonly fetch?: typeof fetch;
  readonly headers?: Readonly<Record<string, string>>;
};

export type CallOptions = {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
};

/** What a route takes: its path parameters, query and body, typed by its schemas. */
export type CallInput<R extends ApiRoute> = (R['params'] extends z.ZodType
  ? { readonly params: z.input<R['params']> }
  : { readonly params?: undefined }) &
  (R['query'] extends z.ZodType ? { readonly query?: z.input<R['query']> } : { readonly query?: undefined }) &
  (R['body'] extends z.ZodType
    ? // a route that also takes raw bytes is sent them instead (SendOptions.raw)
      R['rawBody'] extends RawContent
      ? { readonly body?: z.input<R['body']> }
      : { readonly body: z.input<R['body']> }
    : { readonly body?: undefined });

/** A request as it goes out: JSON or a streamed body, with its own headers. */
export type SendOptions = CallOptions & {
  readonly accept?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** A raw body (the binary transport), instead of `body` as JSON. */
  readonly raw?: ReadableStream<Uint8Array>;
};

/** The URL of a route for these parameters and query (each parameter URL-encoded). */
export function routeUrl(
  endpoint: string,
  route: ApiRoute,
  input: { readonly params?: unknown; readonly query?: unknown },
): string {
  const params = (input.params ?? {}) as Record<string, string>;
  const path = route.path.replace(/:(\w+)/g, (_m, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`routeUrl: ${route.path} needs :${name}`);
    return encodeURIComponent(value);
  });
  const query = Object.entries((input.query ?? {}) as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');
  return `${endpoint.replace(/\/+$/, '')}${path}${query ? `?${query}` : ''}`;
}

/** Calls a JSON route: its answer parsed with the route's schema. */
export async function call<R extends JsonRoute>(
  target: ApiTarget,
  route: R,
  input: CallInput<R>,
  options: CallOptions = {},
): Promise<z.output<R['response']>> {
  const response = await send(target, route, input, options);
  const schema: R['response'] = route.response;
  return parseAnswer(target, schema, await readJson(target, response, options.signal));
}

/**
 * GET of a JSON answer at any URL (a challenger's evidence URI, which it chooses), parsed with
 * `schema`; no redirects are followed.
 */
export async function fetchJson<S extends z.ZodType>(
  target: ApiTarget,
  url: string,
  schema: S,
  options: CallOptions = {},
): Promise<z.output<S>> {
  const response = await exchange(target, url, { method: 'GET' }, options);
  return parseAnswer(target, schema, await readJson(target, response, options.signal));
}

/** Sends a request to a route; the answer's body is not read yet (see readJson, readBytes). */
export function send<R extends ApiRoute>(
  target: ApiTarget,
  route: R,
  input: CallInput<R>,
  options: SendOptions = {},
): Promise<Response> {
  const json = input.body !== undefined && !options.raw;
  return exchange(
    target,
    routeUrl(target.endpoint, route, input),
    {
      method: route.method,
      headers: {
        ...(json ? { 'content-type': 'application/json' } : {}),
        ...options.headers,
      },
      // duplex: what fetch requires of a streamed body (undici; not yet in TypeScript's RequestInit).
      ...(options.raw ? ({ body: options.raw, duplex: 'half' } as Pick<RequestInit, 'body'>) : {}),
      ...(json ? { body: JSON.stringify(input.body) } : {}),
    },
    options,
  );
}

async function exchange(
  target: ApiTarget,
  url: string,
  init: Omit<RequestInit, 'headers'> & { headers?: Record<string, string> },
  options: SendOptions,
): Promise<Response> {
  const timeoutMs = options.timeoutMs ?? target.timeoutMs;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const details = { ...who(target), endpoint: target.endpoint, url };
  let response: Response;
  try {
    response = await (target.fetch ?? fetch)(url, {
      ...init,
      headers: { ...target.headers, accept: options.accept ?? 'application/json', ...init.headers },
      redirect: 'error',
      signal,
    });
  } catch (cause) {
    if (timeout.aborted && !options.signal?.aborted)
      throw new GlassboxError('PROVIDER_TIMEOUT', `${target.name} did not answer in ${timeoutMs} ms`, {
        details: { ...details, timeoutMs },
        cause,
      });
    if (options.signal?.aborted) throw abortError(target, cause);
    throw new GlassboxError('PROVIDER_UNAVAILABLE', `${target.name} could not be reached`, {
      metaMessages: [`${url}: ${describeCause(cause)}`],
      details,
      cause,
    });
  }
  const answeredAs = response.headers.get(PROVIDER_HEADER);
  if (target.provider && answeredAs !== null && !sameAddress(answeredAs, target.provider)) {
    await response.body?.cancel().catch(() => undefined);
    throw staleEndpoint(target, answeredAs);
  }
  return response;
}

/**
 * A JSON body, at most the target's maxResponseBytes of it; a non-2xx answer becomes the
 * GlassboxError its problem+json names, and an empty 2xx body is PROVIDER_ERROR.
 */
export async function readJson(
  target: ApiTarget,
  response: Response,
  signal?: AbortSignal,
): Promise<unknown> {
  let body: unknown;
  try {
    body = await readJsonBody(response, { maxBytes: target.maxResponseBytes, from: target.name });
  } catch (cause) {
    throw readError(target, response, cause, signal);
  }
  if (!response.ok) throw problemError(target, response.status, body);
  if (body === undefined)
    throw new GlassboxError('PROVIDER_ERROR', `${target.name} answered an empty body`, {
      field: 'body',
      details: { ...who(target), status: response.status },
    });
  return body;
}

/** A raw body, at most `maxBytes` (default the target's cap); a non-2xx answer is its problem. */
export async function readBytes(
  target: ApiTarget,
  response: Response,
  options: { readonly maxBytes?: number; readonly signal?: AbortSignal } = {},
): Promise<Uint8Array> {
  if (!response.ok) await readJson(target, response, options.signal);
  try {
    return await readBody(response, {
      maxBytes: options.maxBytes ?? target.maxResponseBytes,
      from: target.name,
    });
  } catch (cause) {
    throw readError(target, response, cause, options.signal);
  }
}

/**
 * Validates an answer against its schema: PROVIDER_ERROR naming who answered and the field
 * (`response.receipt.signature`), which a reader treats like no answer.
 */
export function parseAnswer<S extends z.ZodType>(target: ApiTarget, schema: S, json: unknown): z.output<S> {
  try {
    return parseProviderJson(schema, json);
  } catch (cause) {
    if (!isGlassboxError(cause)) throw cause;
    throw new GlassboxError(
      'PROVIDER_ERROR',
      `${target.name} answered a malformed body: ${cause.shortMessage}`,
      {
        ...(cause.field === undefined ? {} : { field: cause.field }),
        metaMessages: cause.metaMessages,
        details: who(target),
        cause,
      },
    );
  }
}

/** Checks that a signed part of an answer (a receipt, /v1/models) names the provider asked. */
export function assertAnsweredBy(target: ApiTarget, answeredAs: string): void {
  if (target.provider && !sameAddress(answeredAs, target.provider)) throw staleEndpoint(target, answeredAs);
}

const who = (target: ApiTarget) => (target.provider ? { provider: target.provider } : {});

function abortError(target: ApiTarget, cause: unknown): GlassboxError {
  return new GlassboxError('PROVIDER_UNAVAILABLE', `the request to ${target.name} was cancelled`, {
    details: { ...who(target), aborted: true },
    cause,
  });
}

function describeCause(cause: unknown): string {
  // undici wraps the socket error (TypeError: fetch failed, cause: {code}); node:http throws it as is.
  const outer = cause as { code?: unknown; cause?: { code?: string; message?: string } } | undefined;
  const inner = outer?.cause;
  if (typeof outer?.code === 'string') return outer.code;
  return inner?.code ?? inner?.message ?? (cause instanceof Error ? cause.message : String(cause));
}

/** Why reading a body failed: cancelled by us, over the cap or not JSON (as is), or broken off. */
function readError(
  target: ApiTarget,
  response: Response,
  cause: unknown,
  signal?: AbortSignal,
): GlassboxError {
  if (signal?.aborted) return abortError(target, cause);
  if (isGlassboxError(cause)) return cause;
  return new GlassboxError('PROVIDER_ERROR', `${target.name} broke off its answer`, {
    details: { ...who(target), status: response.status },
    cause,
  });
}

/** A non-2xx answer: its problem+json code when it is one we know, else PROVIDER_ERROR. */
function problemError(target: ApiTarget, status: number, body: unknown): GlassboxError {
  const problem = (typeof body === 'object' && body !== null ? body : {}) as {
    code?: unknown;
    message?: unknown;
    field?: unknown;
    details?: unknown;
  };
  const known = typeof problem.code === 'string' && problem.code in ErrorCodes;
  const code: ErrorCode = known ? (problem.code as ErrorCode) : 'PROVIDER_ERROR';
  const message =
    typeof problem.message === 'string' ? problem.message.slice(0, 500) : `HTTP ${status} without a problem`;
  return new GlassboxError(code, `${target.name} answered ${status}: ${message}`, {
    ...(typeof problem.field === 'string' ? { field: problem.field } : {}),
    details: {
      ...who(target),
      status,
      ...(typeof problem.details === 'object' && problem.details !== null ? problem.details : {}),
    },
  });
}

/**
 * An endpoint that answers as another provider (in its PROVIDER_HEADER, its /v1/models or its
 * receipt): the one asked moved and its registered endpoint now reaches someone else (a stale
 * endpoint; in tests, a port the kernel handed to the next server). The provider asked is not
 * there, which is PROVIDER_UNAVAILABLE, not a verification failure of an answer it never gave nor
 * the other provider's refusal of a request signed for someone else: the client fails over, and
 * nothing is blamed on either.
 */
function staleEndpoint(target: ApiTarget, answeredAs: string): GlassboxError {
  return new GlassboxError(
    'PROVIDER_UNAVAILABLE',
    `${target.name} is not at its endpoint: ${target.endpoint} answers as ${answeredAs}`,
    {
      metaMessages: ['a stale endpoint: the provider moved, and another one serves at its old address'],
      details: { ...who(target), endpoint: target.endpoint, answeredAs, staleEndpoint: true },
    },
  );
}

const sameAddress = (a: string, b: Address) => isAddress(a, { strict: false }) && isAddressEqual(a, b);
