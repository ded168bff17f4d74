import { getAddress, isAddress, isAddressEqual, type Address, type Hex } from 'viem';
import type { z } from 'zod';
import {
  BINARY_TYPE,
  PROVIDER_HEADER,
  RECEIPT_HEADER,
  REQUEST_HEADER,
  inferBinaryResponseSchema,
  inferResponseSchema,
  modelsResponseSchema,
  parseProviderJson,
  voucherAcceptedSchema,
  voucherToJson,
  type InferHead,
  type InferRequest,
  type ModelsResponse,
  type VoucherAccepted,
} from '../protocol/api.js';
import { readBody, readJsonBody } from '../protocol/body.js';
import { decodeTensors, type EncodedTensors } from '../protocol/encoding.js';
import { dataHash } from '../protocol/data.js';
import { ErrorCodes, GlassboxError, isGlassboxError, type ErrorCode } from '../protocol/errors.js';
import { runtimeHash, runtimeProfileSchema, type RuntimeProfile } from '../protocol/runtime-profile.js';
import type { SignedReceipt } from '../protocol/receipt.js';
import type { TensorMap } from '../protocol/tensor.js';
import type { SignedVoucher } from '../protocol/voucher.js';
import type { Client } from './client.js';

/*
 * HTTP to providers, following src/protocol/api.ts. Every failure is a GlassboxError naming the
 * provider: PROVIDER_UNAVAILABLE (connection refused, reset, DNS, or an endpoint that answers as
 * another provider: see staleEndpoint), PROVIDER_TIMEOUT, the provider's own problem+json code when it sends a known
 * one (PAYMENT_REQUIRED, PRICE_TOO_HIGH, INPUT_*...), RESPONSE_TOO_LARGE (an answer past the
 * client's maxResponseBytes), and PROVIDER_ERROR for anything else (5xx without a code, a body
 * that does not follow the API; `field` names where). Every answer is read with a size cap and
 * validated against its schema before anything of it is used.
 *
 * Inference has two transports (src/protocol/api.ts): JSON, and binary for large tensors, where the
 * inputs' canonical encoding is the body, streamed from its parts (headers and views of the
 * tensors' own data: the encoding is never built whole), and the outputs come back as their
 * canonical encoding with the receipt in a header. src/sdk/infer.ts picks one per request
 * (BINARY_TRANSPORT_MIN_BYTES).
 */

/**
 * From this many bytes of canonical encoding up, inputs travel binary, and outputs expected to
 * reach it are asked for binary: below it JSON costs little (64 KiB of float32 is 16 K values,
 * about 5 ms of JSON each way here) and stays readable on the wire; above it JSON's number arrays
 * cost about 0.6 s per million float32 values each way, against about 15 ms binary.
 */
export const BINARY_TRANSPORT_MIN_BYTES = 64 * 1024;

export type ProviderRef = { readonly address: Address; readonly endpoint: string };

type RequestOptions = {
  readonly method?: 'GET' | 'POST';
  /** A JSON body, or binary: the canonical encoding and the JSON request header that goes with it. */
  readonly body?: unknown;
  readonly binary?: { readonly encoded: EncodedTensors; readonly head: string };
  /** What to accept (default JSON). */
  readonly accept?: string;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
};

/** The body of a binary request: the encoding's parts, one chunk each, pulled as the socket takes them. */
function partsStream({ parts }: EncodedTensors): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (next < parts.length) controller.enqueue(parts[next++]!);
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
}

/** The fetch body and content headers of a request. */
function bodyOf(options: RequestOptions): { headers: Record<string, string>; init: RequestInit } {
  if (options.binary)
    return {
      headers: { 'content-type': BINARY_TYPE, [REQUEST_HEADER]: options.binary.head },
      // duplex: what fetch requires of a streamed body (undici; not yet in TypeScript's RequestInit).
      init: { body: partsStream(options.binary.encoded), duplex: 'half' } as RequestInit,
    };
  if (options.body === undefined) return { headers: {}, init: {} };
  return {
    headers: { 'content-type': 'application/json' },
    init: { body: JSON.stringify(options.body) },
  };
}

function url(provider: ProviderRef, path: string): string {
  return `${provider.endpoint.replace(/\/+$/, '')}${path}`;
}

async function request(
  client: Client,
  provider: ProviderRef,
  path: string,
  options: RequestOptions = {},
): Promise<Response> {
  const timeoutMs = options.timeoutMs ?? client.options.timeoutMs;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const details = { provider: provider.address, endpoint: provider.endpoint, path };
  let response: Response;
  try {
    const body = bodyOf(options);
    response = await client.options.fetch(url(provider, path), {
      method: options.method ?? 'GET',
      headers: {
        ...client.options.headers,
        accept: options.accept ?? 'application/json',
        ...body.headers,
      },
      ...body.init,
      signal,
    });
  } catch (cause) {
    if (timeout.aborted && !options.signal?.aborted)
      throw new GlassboxError(
        'PROVIDER_TIMEOUT',
        `provider ${provider.address} did not answer in ${timeoutMs} ms`,
        {
          details: { ...details, timeoutMs },
          cause,
        },
      );
    if (options.signal?.aborted) throw abortError(provider, cause);
    throw new GlassboxError('PROVIDER_UNAVAILABLE', `provider ${provider.address} could not be reached`, {
      metaMessages: [`${provider.endpoint}: ${describeCause(cause)}`],
      details,
      cause,
    });
  }
  // The provider's name on its answer: a stale endpoint is told apart before the body is read.
  const answeredAs = response.headers.get(PROVIDER_HEADER);
  if (answeredAs !== null && !sameAddress(answeredAs, provider.address)) {
    await response.body?.cancel().catch(() => undefined);
    throw staleEndpoint(provider, answeredAs);
  }
  return response;
}

function abortError(provider: ProviderRef, cause: unknown): GlassboxError {
  return new GlassboxError('PROVIDER_UNAVAILABLE', `the request to ${provider.address} was cancelled`, {
    details: { provider: provider.address, aborted: true },
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

/**
 * Reads a JSON body, at most the client's maxResponseBytes of it; a non-2xx answer becomes the
 * GlassboxError its problem+json names.
 */
async function readJson(
  client: Client,
  provider: ProviderRef,
  response: Response,
  signal?: AbortSignal,
): Promise<unknown> {
  let body: unknown;
  try {
    body = await readJsonBody(response, {
      maxBytes: client.options.maxResponseBytes,
      from: `provider ${provider.address}`,
    });
  } catch (cause) {
    throw readError(provider, response, cause, signal);
  }
  if (response.ok) {
    if (body === undefined)
      throw new GlassboxError('PROVIDER_ERROR', `provider ${provider.address} answered an empty body`, {
        field: 'body',
        details: { provider: provider.address, status: response.status },
      });
    return body;
  }
  throw problemError(provider, response.status, body);
}

/** Why reading a body failed: cancelled by us, over the cap or not JSON (as is), or broken off. */
function readError(
  provider: ProviderRef,
  response: Response,
  cause: unknown,
  signal?: AbortSignal,
): GlassboxError {
  if (signal?.aborted) return abortError(provider, cause);
  if (isGlassboxError(cause)) return cause;
  return new GlassboxError('PROVIDER_ERROR', `provider ${provider.address} broke off its answer`, {
    details: { provider: provider.address, status: response.status },
    cause,
  });
}

/** A non-2xx answer: its problem+json code when it is one we know, else PROVIDER_ERROR. */
function problemError(provider: ProviderRef, status: number, body: unknown): GlassboxError {
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
  return new GlassboxError(code, `provider ${provider.address} answered ${status}: ${message}`, {
    ...(typeof problem.field === 'string' ? { field: problem.field } : {}),
    details: {
      provider: provider.address,
      status,
      ...(typeof problem.details === 'object' && problem.details !== null ? problem.details : {}),
    },
  });
}

/**
 * Validates an answer against its schema: PROVIDER_ERROR naming the provider and the field
 * (`response.receipt.signature`), which fails over like a provider that is down.
 */
function parseAnswer<S extends z.ZodType>(provider: ProviderRef, schema: S, json: unknown): z.output<S> {
  try {
    return parseProviderJson(schema, json);
  } catch (cause) {
    const message = isGlassboxError(cause) ? cause.shortMessage : String(cause);
    throw new GlassboxError(
      'PROVIDER_ERROR',
      `provider ${provider.address} answered a malformed body: ${message}`,
      {
        ...(isGlassboxError(cause) && cause.field !== undefined ? { field: cause.field } : {}),
        ...(isGlassboxError(cause) ? { metaMessages: cause.metaMessages } : {}),
        details: { provider: provider.address },
        cause,
      },
    );
  }
}

/**
 * An endpoint that answers as another provider (in its PROVIDER_HEADER, its /v1/models or its
 * receipt): the one asked moved and its registered endpoint now reaches someone else (a stale
 * endpoint; in tests, a port the kernel handed to the next server). The provider asked is not
 * there, which is PROVIDER_UNAVAILABLE, not a verification failure of an answer it never gave nor
 * the other provider's refusal of a request signed for someone else: the client fails over, and
 * nothing is blamed on either.
 */
function staleEndpoint(provider: ProviderRef, answeredAs: string): GlassboxError {
  return new GlassboxError(
    'PROVIDER_UNAVAILABLE',
    `provider ${provider.address} is not at its endpoint: ${provider.endpoint} answers as ${answeredAs}`,
    {
      metaMessages: ['a stale endpoint: the provider moved, and another one serves at its old address'],
      details: { provider: provider.address, endpoint: provider.endpoint, answeredAs, staleEndpoint: true },
    },
  );
}

const sameAddress = (a: string, b: Address) => isAddress(a, { strict: false }) && isAddressEqual(a, b);

function assertSameProvider(provider: ProviderRef, answeredAs: string): void {
  if (!sameAddress(answeredAs, provider.address)) throw staleEndpoint(provider, answeredAs);
}

export type InferAnswer = {
  /**
   * The outputs as they came: JSON tensors (decoded and checked by the caller), or from a binary
   * answer the decoded tensors with the keccak256 of the bytes they came in (their outputHash:
   * decoding is the exact inverse of the canonical encoding).
   */
  readonly outputs:
    | { readonly transport: 'json'; readonly json: unknown }
    | { readonly transport: 'binary'; readonly tensors: TensorMap; readonly outputHash: Hex };
  readonly receipt: SignedReceipt;
};

/** An inference request whose inputs travel binary: their canonical encoding, as parts. */
export type BinaryInferRequest = InferHead & { readonly encoded: EncodedTensors };

export type PostInferOptions = {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  /** Ask for the outputs binary (always so for a binary request). */
  readonly binaryOutputs?: boolean;
};

/**
 * POST /v1/infer, JSON or binary (a request with `encoded` inputs). The answer is validated; an
 * answer in the binary transport is read with the same cap, its receipt header is validated like a
 * JSON receipt (field `glassbox-receipt...`) and a body that is not a canonical encoding is
 * PROVIDER_ERROR naming `body` and what is wrong with it.
 */
export async function postInfer(
  client: Client,
  provider: ProviderRef,
  body: InferRequest | BinaryInferRequest,
  options: PostInferOptions = {},
): Promise<InferAnswer> {
  const { signal, timeoutMs } = options;
  const binary = 'encoded' in body;
  const accept = binary || options.binaryOutputs ? `${BINARY_TYPE}, application/json;q=0.5` : undefined;
  const response = await request(client, provider, '/v1/infer', {
    method: 'POST',
    ...(binary ? { binary: { encoded: body.encoded, head: JSON.stringify(headOf(body)) } } : { body }),
    ...(accept ? { accept } : {}),
    ...(signal ? { signal } : {}),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
  if (response.ok && isBinaryAnswer(response)) return readBinaryAnswer(client, provider, response, signal);
  const json = await readJson(client, provider, response, signal);
  const { outputs, receipt } = parseAnswer(provider, inferResponseSchema, json);
  assertSameProvider(provider, receipt.receipt.provider);
  return { outputs: { transport: 'json', json: outputs }, receipt };
}

function headOf(body: BinaryInferRequest): InferHead {
  const { encoded: _inputs, ...head } = body;
  return head;
}

function isBinaryAnswer(response: Response): boolean {
  return (response.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase() === BINARY_TYPE;
}

/** A binary answer: the receipt from its header, the outputs decoded from the body. */
async function readBinaryAnswer(
  client: Client,
  provider: ProviderRef,
  response: Response,
  signal: AbortSignal | undefined,
): Promise<InferAnswer> {
  let bytes: Uint8Array;
  try {
    bytes = await readBody(response, {
      maxBytes: client.options.maxResponseBytes,
      from: `provider ${provider.address}`,
    });
  } catch (cause) {
    throw readError(provider, response, cause, signal);
  }
  const header = response.headers.get(RECEIPT_HEADER);
  let receiptJson: unknown;
  try {
    receiptJson = header === null ? undefined : (JSON.parse(header) as unknown);
  } catch {
    receiptJson = header; // not JSON: the schema names it
  }
  const receipt = parseAnswer(provider, inferBinaryResponseSchema, { [RECEIPT_HEADER]: receiptJson })[
    RECEIPT_HEADER
  ];
  assertSameProvider(provider, receipt.receipt.provider);
  let tensors: TensorMap;
  try {
    tensors = decodeTensors(bytes);
  } catch (cause) {
    const message = isGlassboxError(cause) ? cause.shortMessage : String(cause);
    throw new GlassboxError(
      'PROVIDER_ERROR',
      `provider ${provider.address} answered outputs that are not a canonical tensor encoding: ${message}`,
      { field: 'body', details: { provider: provider.address, bytes: bytes.byteLength }, cause },
    );
  }
  const outputHash = dataHash(bytes);
  return { outputs: { transport: 'binary', tensors, outputHash }, receipt };
}

/** POST /v1/vouchers: hands the provider a cumulative voucher. */
export async function postVoucher(
  client: Client,
  provider: ProviderRef,
  voucher: SignedVoucher,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<VoucherAccepted> {
  const response = await request(client, provider, '/v1/vouchers', {
    method: 'POST',
    body: voucherToJson(voucher),
    ...options,
  });
  return parseAnswer(
    provider,
    voucherAcceptedSchema,
    await readJson(client, provider, response, options.signal),
  );
}

/** What a provider publishes at /v1/models, with its runtime profile checked against its hash. */
export type ProviderModels = {
  readonly raw: ModelsResponse;
  readonly provider: Address;
  readonly signer: Address;
  readonly runtime: Hex;
  /** The profile, when it parses as a runtime profile and hashes to `runtime`. */
  readonly profile: RuntimeProfile | undefined;
  /** Why the profile is not usable, when it is not. */
  readonly profileProblem: string | undefined;
};

export async function getModels(
  client: Client,
  provider: ProviderRef,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<ProviderModels> {
  const response = await request(client, provider, '/v1/models', options);
  const json = await readJson(client, provider, response, options.signal);
  const raw = parseAnswer(provider, modelsResponseSchema, json);
  assertSameProvider(provider, raw.provider);
  const parsed = runtimeProfileSchema.safeParse(raw.profile);
  let profileProblem: string | undefined;
  if (!parsed.success)
    profileProblem = `its profile is not a runtime profile (${parsed.error.issues[0]?.message})`;
  else if (runtimeHash(parsed.data) !== raw.runtime)
    profileProblem = `its profile hashes to ${runtimeHash(parsed.data)}, not ${raw.runtime}`;
  return {
    raw,
    provider: getAddress(raw.provider),
    signer: getAddress(raw.signer),
    runtime: raw.runtime,
    profile: parsed.success && profileProblem === undefined ? parsed.data : undefined,
    profileProblem,
  };
}

/**
 * GET /v1/blobs/:cid: the bytes, at most `maxBytes` of them (a blob's size is known before it is
 * fetched: a manifest names its files' sizes, and a manifest is at most MAX_MANIFEST_BYTES). The
 * caller verifies them against the CID.
 */
export async function getBlob(
  client: Client,
  provider: ProviderRef,
  cid: string,
  options: { maxBytes: number; signal?: AbortSignal; timeoutMs?: number },
): Promise<Uint8Array> {
  const response = await request(client, provider, `/v1/blobs/${encodeURIComponent(cid)}`, options);
  if (!response.ok) await readJson(client, provider, response, options.signal);
  try {
    return await readBody(response, { maxBytes: options.maxBytes, from: `provider ${provider.address}` });
  } catch (cause) {
    throw readError(provider, response, cause, options.signal);
  }
}
