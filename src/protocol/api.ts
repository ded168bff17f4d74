import { isAddress, isHex, type Address, type Hex } from 'viem';
import { z } from 'zod';
import type { JsonTensor } from './encoding.js';
import { GlassboxError } from './errors.js';
import { MAX_DATA_BYTES } from './limits.js';
import { parseWith } from './validate.js';
import { signedReceiptJsonSchema, type SignedReceiptJson } from './receipt.js';
import type { SignedVoucher } from './voucher.js';

/*
 * The provider HTTP API's wire shapes (docs/protocol.md, The provider API): what any client and any provider
 * exchange, so that a client works against every provider that speaks it. Bodies are JSON; bigints
 * travel as decimal strings, hashes and addresses as 0x-hex. Errors are problem+json:
 * {code, message, field?}. The routes that carry these shapes are declared in src/api/routes.ts,
 * and documented in docs/api/openapi.json (generated from it).
 *
 * Binary transport, for large tensors: POST /v1/infer with `content-type: application/octet-stream`,
 * the canonical tensor encoding of the inputs as the body, and the rest of the InferRequest (without
 * `inputs`) as JSON in the `glassbox-request` header. With `accept: application/octet-stream` the
 * answer's body is the canonical encoding of the outputs and the signed receipt is JSON in the
 * `glassbox-receipt` header.
 *
 * Every request is signed by its client (src/protocol/request.ts), so credit is extended to the
 * address that really asks. Payment is pay-after with bounded credit: each request may carry the
 * client's latest cumulative voucher to this provider, covering the receipts the client has received
 * so far. A provider serves while what it has delivered but not been paid for, plus this request's
 * price, stays within its credit limit, and while what it has delivered but not yet redeemed stays
 * within the client's escrow deposit (less a pending withdrawal); past either it answers 402
 * PAYMENT_REQUIRED. A client therefore never pays for an answer it did not get, and a provider risks
 * at most its credit limit per client, never more than the client's deposit.
 */

export const REQUEST_HEADER = 'glassbox-request';
/**
 * Every answer of a provider names it (its staking address) in this header, errors included, so a
 * client can tell an endpoint that now reaches another provider (a stale endpoint) before it reads
 * the body, whatever the route or status.
 */
export const PROVIDER_HEADER = 'glassbox-provider';
export const RECEIPT_HEADER = 'glassbox-receipt';
export const BINARY_TYPE = 'application/octet-stream';

// Template literals, so that the inferred types are Hex and Address rather than string; `meta`
// says in the OpenAPI document (src/api/openapi.ts) what the refinements check.
export const bytes32 = z
  .templateLiteral(['0x', z.string()], { error: 'is not 32 bytes of 0x-hex' })
  .refine((v) => isHex(v, { strict: true }) && v.length === 66, 'is not 32 bytes of 0x-hex')
  .meta({ pattern: '^0x[0-9a-fA-F]{64}$' });
export const address = z
  .templateLiteral(['0x', z.string()], { error: 'is not an address' })
  .refine((v) => isAddress(v, { strict: false }), 'is not an address')
  .meta({ pattern: '^0x[0-9a-fA-F]{40}$' });
export const amount = z.string().regex(/^\d{1,78}$/, 'is not a decimal amount of base units');

export const signedVoucherJsonSchema = z.strictObject({
  voucher: z.strictObject({ client: address, provider: address, amount }),
  signature: z.string().refine((v) => isHex(v, { strict: true }), 'is not 0x-hex'),
});
export type SignedVoucherJson = z.infer<typeof signedVoucherJsonSchema>;

/** Everything of an inference request but the inputs (the binary transport's header). */
export const inferHeadSchema = z.strictObject({
  /** Chosen by the client, unique per request: it binds the receipt to this request. */
  requestId: bytes32,
  /** The model id (CID string). */
  model: z.string().min(1).max(128),
  client: address,
  /** The most the client will pay for this answer, in base units. */
  maxPrice: amount,
  /** Take an execution trace and put its root in the receipt. */
  trace: z.boolean().optional(),
  voucher: signedVoucherJsonSchema.optional(),
  /**
   * The client's EIP-712 signature over this request for this provider (src/protocol/request.ts):
   * proves that `client` sent it, before any credit is extended on its account.
   */
  signature: z
    .string({
      error: (issue) =>
        issue.input === undefined
          ? 'is required: the client signs every request (src/protocol/request.ts)'
          : 'is not a string',
    })
    .regex(/^0x[0-9a-fA-F]{130}$/, 'is not a 65-byte 0x-hex signature'),
});
export type InferHead = z.infer<typeof inferHeadSchema>;

export const inferRequestSchema = inferHeadSchema.extend({
  /** Named tensors as {dtype, shape, data}, checked against the model's schema by the provider. */
  inputs: z.record(z.string(), z.unknown()),
});
export type InferRequest = InferHead & { inputs: Record<string, JsonTensor> };

export type InferResponse = {
  readonly outputs: Record<string, JsonTensor>;
  readonly receipt: SignedReceiptJson;
};

export const inferResponseSchema = z.object({
  outputs: z.record(z.string(), z.unknown()),
  receipt: signedReceiptJsonSchema,
});

/** A binary answer's receipt, from its header (the body is the outputs' canonical encoding). */
export const inferBinaryResponseSchema = z.object({ [RECEIPT_HEADER]: signedReceiptJsonSchema });

/** Validates an untrusted body against a schema, naming the first offending field. */
export function parseWire<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  return parseWith(schema, value, { code: 'REQUEST_INVALID', root: what });
}

export function voucherToJson({ voucher, signature }: SignedVoucher): SignedVoucherJson {
  return { voucher: { ...voucher, amount: voucher.amount.toString() }, signature };
}

export function voucherFromJson(json: SignedVoucherJson): SignedVoucher {
  return {
    voucher: {
      client: json.voucher.client as Address,
      provider: json.voucher.provider as Address,
      amount: BigInt(json.voucher.amount),
    },
    signature: json.signature as Hex,
  };
}

// ---- what providers answer ----
//
// Every answer is validated by whoever reads it (the SDK, a verifier, a committee member) with
// these schemas, so a provider that serves garbage gets a PROVIDER_ERROR naming the field, which a
// reader treats like no answer, instead of an exception from deep inside (audit: a malformed
// batch listing made the verifier retry for ever rather than challenge). Answers are z.object, not
// strictObject: a reader ignores fields it does not know, so a provider may add one without
// breaking older readers. The signed receipt inside stays strict. Types are the schemas' input
// (what a provider sends); `parse*` return their output (receipts with bigints, typed hex).

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'is not base64');
const count = z.number().int().nonnegative();

/**
 * The most receipts one page of GET /v1/batches/:root holds, and its default `limit`. A page also
 * stops before the receipt that would take its data (inputs plus outputs) past
 * BATCH_PAGE_DATA_BYTES, though it always holds one: so it stays within DEFAULT_MAX_RESPONSE_BYTES
 * (src/protocol/body.ts), whatever the batch's size and its receipts' sizes.
 */
export const BATCH_PAGE_MAX = 64;
/** The most data the receipts of one batch page carry, unless its one receipt carries more: 16 MiB. */
export const BATCH_PAGE_DATA_BYTES = MAX_DATA_BYTES;

export const voucherAcceptedSchema = z.object({
  /** What the provider holds a voucher for (paid), in base units. */
  amount,
  /** What the client owes beyond it. */
  owed: amount,
});
export type VoucherAccepted = z.input<typeof voucherAcceptedSchema>;

/** One model as a provider serves it. Its schemas and policy are informational: the manifest counts. */
export const servedModelSchema = z.object({
  id: z.string().min(1).max(128),
  name: z.string(),
  version: z.string(),
  inputs: z.array(z.unknown()),
  outputs: z.array(z.unknown()),
  policy: z.unknown(),
  /**
   * The provider's effective price now, in base units: per inference for a tensor model, per
   * output token for an LLM.
   */
  price: amount,
  /** The effective price per input (prompt) token, in base units: `0` for a tensor model. */
  inputPrice: amount,
  /**
   * The runtime its receipts name, when it is not the provider's `runtime` (an LLM model runs on
   * the token engine, under that engine's admitted profile).
   */
  runtime: bytes32.optional(),
});
export type ServedModel = z.input<typeof servedModelSchema>;

export const modelsResponseSchema = z.object({
  provider: address,
  signer: address,
  chainId: z.number().int().positive(),
  /** keccak256 of the runtime profile its receipts name. */
  runtime: bytes32,
  /** The profile itself: checked by the reader against `runtime` (a bad one is reported, not fatal). */
  profile: z.unknown(),
  models: z.array(servedModelSchema),
  /**
   * The same models as OpenAI's list (`object: "list"`, `data: [{id, object: "model", created,
   * owned_by}]`), so that one answer serves both Glassbox and OpenAI clients (`models.list()`).
   * Optional for readers: older providers don't send it.
   */
  object: z.literal('list').optional(),
  data: z
    .array(
      z.object({
        id: z.string(),
        object: z.literal('model'),
        created: z.number().int().nonnegative(),
        owned_by: z.string(),
        name: z.string().optional(),
      }),
    )
    .optional(),
});
export type ModelsResponse = z.input<typeof modelsResponseSchema>;

export const storedReceiptSchema = z.object({
  receipt: signedReceiptJsonSchema,
  /** The root of the batch that committed it, once committed. */
  batch: z
    .object({
      root: bytes32,
      proof: z.array(bytes32).max(64).readonly(),
      id: z
        .string()
        .regex(/^\d{1,78}$/, 'is not a decimal batch id')
        .optional(),
    })
    .optional(),
  /** The inputs behind it (canonical encoding, base64), kept for the challenge window. */
  inputs: base64.optional(),
  /** The outputs it answered with (canonical encoding, base64): for policies other than exact. */
  outputs: base64.optional(),
  /** A traced run's step hashes (their Merkle root is the receipt's traceRoot), for bisection. */
  trace: z.array(bytes32).readonly().optional(),
});
export type StoredReceipt = z.input<typeof storedReceiptSchema>;

/** One page of a committed batch: `count` is the whole batch's, `offset` where this page starts. */
export const batchResponseSchema = z
  .object({
    root: bytes32,
    count,
    offset: count,
    receipts: z.array(storedReceiptSchema).max(BATCH_PAGE_MAX).readonly(),
  })
  .refine((page) => page.offset + page.receipts.length <= page.count, {
    path: ['receipts'],
    message: 'run past the batch count',
  });
export type BatchResponse = z.input<typeof batchResponseSchema>;

/** What a challenger serves its committee: the receipt and the data to re-execute it. */
export const evidenceResponseSchema = z.object({
  /** The provider's signed receipt, when the challenger has it (the chain has the receipt anyway). */
  receipt: signedReceiptJsonSchema.optional(),
  /** Canonical encoding of the inputs, base64; their dataHash is the receipt's inputHash. */
  inputs: base64,
  /** The provider's outputs (canonical encoding, base64), when the challenger has them. */
  outputs: base64.optional(),
});
export type EvidenceResponse = z.input<typeof evidenceResponseSchema>;

/**
 * Validates a provider's answer: the value, or PROVIDER_ERROR naming the first offending field
 * (`response.receipts.3.receipt.signature`). The reader says who answered in its own message.
 */
export function parseProviderJson<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  return parseWith(schema, value, { code: 'PROVIDER_ERROR', root: 'response' });
}

export const parseBatchResponse = (json: unknown) => parseProviderJson(batchResponseSchema, json);
export const parseEvidenceResponse = (json: unknown) => parseProviderJson(evidenceResponseSchema, json);
export const parseStoredReceipt = (json: unknown) => parseProviderJson(storedReceiptSchema, json);

export type ParsedStoredReceipt = z.output<typeof storedReceiptSchema>;
export type BatchPage = z.output<typeof batchResponseSchema>;
export type BatchListing = {
  readonly root: Hex;
  readonly count: number;
  readonly receipts: ParsedStoredReceipt[];
};

/**
 * Reads a whole batch listing page by page: `fetchPage(offset)` answers
 * GET /v1/batches/:root?offset=…, parsed with its schema (the typed client, src/api/client.ts, does).
 * Every page must be of the committed root and count (read from the chain, so a provider can't make
 * the reader loop by claiming more), start where asked, and carry at least one receipt until the
 * count is reached. PROVIDER_ERROR, naming the field, otherwise.
 */
export async function readBatchPages(
  committed: { readonly root: Hex; readonly count: number },
  fetchPage: (offset: number) => Promise<BatchPage>,
): Promise<BatchListing> {
  const receipts: ParsedStoredReceipt[] = [];
  while (receipts.length < committed.count) {
    const page = await fetchPage(receipts.length);
    const wrong = (field: string, message: string) =>
      new GlassboxError('PROVIDER_ERROR', `response.${field}: ${message}`, { field: `response.${field}` });
    if (page.root.toLowerCase() !== committed.root.toLowerCase())
      throw wrong('root', `is ${page.root}, not the committed ${committed.root}`);
    if (page.count !== committed.count)
      throw wrong('count', `is ${page.count}, but ${committed.count} receipts were committed`);
    if (page.offset !== receipts.length) throw wrong('offset', `is ${page.offset}, not ${receipts.length}`);
    if (page.receipts.length === 0)
      throw wrong('receipts', `is empty before the batch's end (${page.count})`);
    receipts.push(...page.receipts);
  }
  return { root: committed.root, count: committed.count, receipts };
}
