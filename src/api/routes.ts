import { z } from 'zod';
import {
  adminModelParamsSchema,
  adminOfferRemovedSchema,
  adminOfferRequestSchema,
  adminOfferResponseSchema,
  ADMIN_OFFERS_PATH,
} from '../protocol/admin.js';
import {
  BATCH_PAGE_MAX,
  BINARY_TYPE,
  batchResponseSchema,
  bytes32,
  evidenceResponseSchema,
  inferHeadSchema,
  inferRequestSchema,
  inferResponseSchema,
  modelsResponseSchema,
  RECEIPT_HEADER,
  REQUEST_HEADER,
  signedVoucherJsonSchema,
  storedReceiptSchema,
  voucherAcceptedSchema,
} from '../protocol/api.js';
import { signedReceiptJsonSchema } from '../protocol/receipt.js';
import {
  chatCompletionRequestSchema,
  chatCompletionSchema,
  completionRequestSchema,
  completionSchema,
  openAiErrorSchema,
  openAiModelSchema,
  REQUEST_ID_HEADER,
  SSE_TYPE,
  VOUCHER_HEADER,
} from './openai.js';
import { healthSchema, nodeStatusSchema } from './schemas.js';

/*
 * The provider API, declared once (issue 12): every route's method, path, parameters, body and
 * answer as zod schemas. The node registers its handlers against these entries (src/node/routes),
 * so they are its validation and the check on what it answers; the typed client (./client.ts)
 * builds its requests from them and parses every answer with them; the OpenAPI document
 * (./openapi.ts, docs/api/openapi.json) is generated from them. Nothing here imports the node or
 * the SDK, so both may import it.
 */

/** A body or answer that is not JSON: its media type, and a header that travels with it. */
export type RawContent = {
  readonly type: string;
  readonly description: string;
  /** A header carrying JSON beside the bytes (the binary transport's request or receipt). */
  readonly header?: { readonly name: string; readonly schema: z.ZodType };
};

export type ApiRoute = {
  readonly method: 'GET' | 'POST' | 'DELETE';
  /** The path in fastify's syntax (`/v1/batches/:root`). */
  readonly path: `/${string}`;
  readonly summary: string;
  readonly description?: string;
  readonly params?: z.ZodType;
  readonly query?: z.ZodType;
  /** The JSON body. */
  readonly body?: z.ZodType;
  /** What an invalid body is called in error fields (`voucher.signature`): `body` unless said. */
  readonly bodyName?: string;
  /**
   * The body may instead be raw bytes of this type. The validator cannot pick a schema by content
   * type, so such a route validates its body itself, with `body` (or the header's schema).
   */
  readonly rawBody?: RawContent;
  /** The JSON answer, or raw bytes only (a blob, metrics). */
  readonly response: z.ZodType | RawContent;
  /** The answer may instead be raw bytes (asked for with `accept`). */
  readonly rawResponse?: RawContent;
  /** Statuses besides 200 that answer with the same body (a health check's 503). */
  readonly alsoAnswers?: readonly number[];
  /** The admin API's bearer token is required. */
  readonly admin?: boolean;
  /** Not counted by the rate limiter (health checks and scrapes). */
  readonly unlimited?: boolean;
  /** Request headers the route reads (documented as header parameters). */
  readonly headers?: z.ZodType;
  /** Authenticated by a client's session key (`Authorization: Bearer gbk.…`, src/protocol/session.ts). */
  readonly session?: boolean;
  /** Errors answer this shape instead of problem+json (the OpenAI routes answer OpenAI's). */
  readonly errors?: { readonly schema: z.ZodType; readonly description: string };
};

/** A path parameter that is a 32-byte hash. */
const hash = <K extends string>(name: K) => z.strictObject({ [name]: bytes32 } as Record<K, typeof bytes32>);

const queryInteger = (bounds: { min: number; max: number; fallback: number }) =>
  z.coerce
    .number({ error: 'is not a whole number' })
    .int('is not a whole number')
    .min(bounds.min, `must be at least ${bounds.min}`)
    .max(bounds.max, `must be at most ${bounds.max}`)
    .default(bounds.fallback);

/** How many of the latest samples, challenges and duties /v1/status lists, by default and at most. */
const STATUS_LIMIT = 100;
export const STATUS_LIMIT_MAX = 1000;

const binaryInputs: RawContent = {
  type: BINARY_TYPE,
  description:
    'the canonical tensor encoding of the inputs; the rest of the request as JSON in the glassbox-request header',
  header: { name: REQUEST_HEADER, schema: inferHeadSchema },
};
const binaryOutputs: RawContent = {
  type: BINARY_TYPE,
  description:
    'the canonical tensor encoding of the outputs (with accept: application/octet-stream); the signed receipt as JSON in the glassbox-receipt header',
  header: { name: RECEIPT_HEADER, schema: signedReceiptJsonSchema },
};

/** What the OpenAI-compatible routes share: their headers, auth and error shape. */
const openAi = {
  headers: z.object({
    [REQUEST_ID_HEADER]: bytes32
      .optional()
      .describe('the request id (bytes32): a retry with it is answered again, not charged again'),
    [VOUCHER_HEADER]: z
      .string()
      .optional()
      .describe("the client's latest cumulative voucher to this provider, as JSON (paid per token)"),
  }),
  session: true,
  errors: {
    schema: openAiErrorSchema,
    description: "an error in OpenAI's shape: {error: {message, type, param, code}}",
  },
} as const;

const sse = (what: string): RawContent => ({
  type: SSE_TYPE,
  description: `with stream: true, server-sent events: ${what} chunks (the first delta names the role, the last choice chunk has finish_reason), a usage chunk (choices: []) with stream_options.include_usage, then a chunk {choices: [], glassbox: {receipt, seed}}, then data: [DONE]; a failure mid-stream is data: {"error": {...}}`,
});

export const routes = {
  infer: {
    method: 'POST',
    path: '/v1/infer',
    summary: 'Run a model on inputs; answers the outputs and a signed receipt',
    description:
      'JSON, or the binary transport for large tensors. Every request is signed by its client; it may carry the latest cumulative voucher.',
    body: inferRequestSchema,
    bodyName: 'request',
    rawBody: binaryInputs,
    response: inferResponseSchema,
    rawResponse: binaryOutputs,
  },
  vouchers: {
    method: 'POST',
    path: '/v1/vouchers',
    summary: 'Hand the provider a cumulative voucher; answers what is paid and owed',
    body: signedVoucherJsonSchema,
    bodyName: 'voucher',
    response: voucherAcceptedSchema,
  },
  models: {
    method: 'GET',
    path: '/v1/models',
    summary: 'What this provider serves, at its effective on-chain prices, under which runtime',
    response: modelsResponseSchema,
  },
  modelById: {
    method: 'GET',
    path: '/v1/models/:id',
    summary: "One served model as OpenAI's model object, by id (CID) or by name",
    params: z.strictObject({ id: z.string().min(1).max(256) }),
    response: openAiModelSchema,
    errors: openAi.errors,
  },
  chatCompletions: {
    method: 'POST',
    path: '/v1/chat/completions',
    summary: "OpenAI's chat completions on an LLM model, with a signed token receipt",
    description:
      'OpenAI-compatible (the official clients work unchanged). Authenticated by a session key; the answer carries glassbox: {receipt, seed, promptTokenIds, outputTokenIds}.',
    body: chatCompletionRequestSchema,
    response: chatCompletionSchema,
    rawResponse: sse('chat.completion.chunk'),
    ...openAi,
  },
  completions: {
    method: 'POST',
    path: '/v1/completions',
    summary: "OpenAI's (legacy) completions on an LLM model, with a signed token receipt",
    description:
      'OpenAI-compatible; the prompt is tokenized as it is (no chat template). Authenticated by a session key.',
    body: completionRequestSchema,
    response: completionSchema,
    rawResponse: sse('text_completion'),
    ...openAi,
  },
  receipt: {
    method: 'GET',
    path: '/v1/receipts/:id',
    summary: 'A receipt by request id, with its batch proof once committed, and its data',
    params: hash('id'),
    response: storedReceiptSchema,
  },
  batch: {
    method: 'GET',
    path: '/v1/batches/:root',
    summary: "One page of a committed batch's receipts, with their proofs and data, for verifiers",
    params: hash('root'),
    query: z.strictObject({
      offset: queryInteger({ min: 0, max: Number.MAX_SAFE_INTEGER, fallback: 0 }),
      limit: queryInteger({ min: 1, max: BATCH_PAGE_MAX, fallback: BATCH_PAGE_MAX }),
    }),
    response: batchResponseSchema,
  },
  evidence: {
    method: 'GET',
    path: '/v1/evidence/:hash',
    summary: 'What this node, as a challenger, serves the committee of its challenge of that receipt',
    params: hash('hash'),
    response: evidenceResponseSchema,
  },
  status: {
    method: 'GET',
    path: '/v1/status',
    summary: "The node's roles, and the latest of what its verifier and committee member did",
    query: z.strictObject({
      limit: queryInteger({ min: 1, max: STATUS_LIMIT_MAX, fallback: STATUS_LIMIT }),
    }),
    response: nodeStatusSchema,
  },
  blob: {
    method: 'GET',
    path: '/v1/blobs/:cid',
    summary: 'A blob of the node store (model manifests and files) by its CIDv1',
    params: z.strictObject({ cid: z.string().min(1).max(128) }),
    response: { type: BINARY_TYPE, description: "the blob's bytes, which hash to its CID" },
  },
  openapi: {
    method: 'GET',
    path: '/v1/openapi.json',
    summary: 'This document: the provider API as OpenAPI 3.1',
    response: z.looseObject({ openapi: z.string(), paths: z.record(z.string(), z.unknown()) }),
  },
  offerModel: {
    method: 'POST',
    path: ADMIN_OFFERS_PATH,
    summary: 'Admin: fetch, verify and load a model, offer it on chain and serve it',
    body: adminOfferRequestSchema,
    response: adminOfferResponseSchema,
    admin: true,
  },
  withdrawModel: {
    method: 'DELETE',
    path: `${ADMIN_OFFERS_PATH}/:model`,
    summary: 'Admin: withdraw the offer of a model on chain and stop serving it',
    params: adminModelParamsSchema,
    response: adminOfferRemovedSchema,
    admin: true,
  },
  health: {
    method: 'GET',
    path: '/health',
    summary: 'Liveness: 200 while serving, 503 while starting or stopping',
    response: healthSchema,
    alsoAnswers: [503],
    unlimited: true,
  },
  metrics: {
    method: 'GET',
    path: '/metrics',
    summary: 'Prometheus metrics',
    response: { type: 'text/plain', description: 'the Prometheus text exposition format' },
    unlimited: true,
  },
} as const satisfies Record<string, ApiRoute>;

/** A route that answers JSON. */
export type JsonRoute = ApiRoute & { readonly response: z.ZodType };

export const isJsonAnswer = (route: ApiRoute): route is JsonRoute => route.response instanceof z.ZodType;
