import { getAddress, type Address, type Hex } from 'viem';
import {
  assertAnsweredBy,
  call,
  parseAnswer,
  readBytes,
  readJson,
  send,
  type ApiTarget,
  type CallOptions,
} from '../api/client.js';
import { routes } from '../api/routes.js';
import {
  BINARY_TYPE,
  RECEIPT_HEADER,
  REQUEST_HEADER,
  inferBinaryResponseSchema,
  voucherToJson,
  type InferHead,
  type InferRequest,
  type ModelsResponse,
  type VoucherAccepted,
} from '../protocol/api.js';
import { decodeTensors, type EncodedTensors } from '../protocol/encoding.js';
import { dataHash } from '../protocol/data.js';
import { GlassboxError, isGlassboxError } from '../protocol/errors.js';
import { runtimeHash, runtimeProfileSchema, type RuntimeProfile } from '../protocol/runtime-profile.js';
import type { SignedReceipt } from '../protocol/receipt.js';
import type { TensorMap } from '../protocol/tensor.js';
import type { SignedVoucher } from '../protocol/voucher.js';
import type { Client } from './client.js';

/*
 * The SDK's calls to providers, through the API's typed client (src/api/client.ts: its errors, the
 * size cap on every answer, every answer validated against its route's schema before anything of
 * it is used), with this client's options: its fetch, headers, time limit and maxResponseBytes.
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

/** The typed client's view of a provider, read with this client's options. */
export function target(client: Client, provider: ProviderRef): ApiTarget {
  return {
    endpoint: provider.endpoint,
    name: `provider ${provider.address}`,
    provider: provider.address,
    timeoutMs: client.options.timeoutMs,
    maxResponseBytes: client.options.maxResponseBytes,
    fetch: client.options.fetch,
    headers: client.options.headers,
  };
}

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
  const to = target(client, provider);
  const binary = 'encoded' in body;
  const accept = binary || options.binaryOutputs ? `${BINARY_TYPE}, application/json;q=0.5` : undefined;
  const response = await send(to, routes.infer, binary ? {} : { body }, {
    ...(binary
      ? {
          raw: partsStream(body.encoded),
          headers: { 'content-type': BINARY_TYPE, [REQUEST_HEADER]: JSON.stringify(headOf(body)) },
        }
      : {}),
    ...(accept ? { accept } : {}),
    ...(signal ? { signal } : {}),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
  if (response.ok && isBinaryAnswer(response)) return readBinaryAnswer(to, response, signal);
  const json = await readJson(to, response, signal);
  const { outputs, receipt } = parseAnswer(to, routes.infer.response, json);
  assertAnsweredBy(to, receipt.receipt.provider);
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
  to: ApiTarget,
  response: Response,
  signal: AbortSignal | undefined,
): Promise<InferAnswer> {
  const bytes = await readBytes(to, response, signal ? { signal } : {});
  const header = response.headers.get(RECEIPT_HEADER);
  let receiptJson: unknown;
  try {
    receiptJson = header === null ? undefined : (JSON.parse(header) as unknown);
  } catch {
    receiptJson = header; // not JSON: the schema names it
  }
  const receipt = parseAnswer(to, inferBinaryResponseSchema, { [RECEIPT_HEADER]: receiptJson })[
    RECEIPT_HEADER
  ];
  assertAnsweredBy(to, receipt.receipt.provider);
  let tensors: TensorMap;
  try {
    tensors = decodeTensors(bytes);
  } catch (cause) {
    const message = isGlassboxError(cause) ? cause.shortMessage : String(cause);
    throw new GlassboxError(
      'PROVIDER_ERROR',
      `${to.name} answered outputs that are not a canonical tensor encoding: ${message}`,
      { field: 'body', details: { provider: to.provider, bytes: bytes.byteLength }, cause },
    );
  }
  const outputHash = dataHash(bytes);
  return { outputs: { transport: 'binary', tensors, outputHash }, receipt };
}

/** POST /v1/vouchers: hands the provider a cumulative voucher. */
export function postVoucher(
  client: Client,
  provider: ProviderRef,
  voucher: SignedVoucher,
  options: CallOptions = {},
): Promise<VoucherAccepted> {
  return call(target(client, provider), routes.vouchers, { body: voucherToJson(voucher) }, options);
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
  options: CallOptions = {},
): Promise<ProviderModels> {
  const to = target(client, provider);
  const raw = await call(to, routes.models, {}, options);
  assertAnsweredBy(to, raw.provider);
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
  options: CallOptions & { maxBytes: number },
): Promise<Uint8Array> {
  const { maxBytes, ...rest } = options;
  const to = target(client, provider);
  const response = await send(to, routes.blob, { params: { cid } }, { ...rest, accept: BINARY_TYPE });
  return readBytes(to, response, { maxBytes, ...(rest.signal ? { signal: rest.signal } : {}) });
}
