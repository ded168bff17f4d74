import { isAddress, isHex, type Address, type Hex } from 'viem';
import { z } from 'zod';
import type { JsonTensor } from './encoding.js';
import { parseWith } from './validate.js';
import { signedReceiptJsonSchema, type SignedReceiptJson } from './receipt.js';
import type { SignedVoucher } from './voucher.js';

/*
 * The provider HTTP API (DESIGN.md, Data flow): what any client and any provider exchange, so that
 * a client works against every provider that speaks it. Bodies are JSON; bigints travel as decimal
 * strings, hashes and addresses as 0x-hex. Errors are problem+json: {code, message, field?}.
 *
 *   POST /v1/infer          InferRequest -> InferResponse   (JSON, or binary tensors: see below)
 *   POST /v1/vouchers       SignedVoucherJson -> VoucherAccepted
 *   GET  /v1/models         -> ModelsResponse
 *   GET  /v1/receipts/:id   -> StoredReceipt (a request id)
 *   GET  /v1/batches/:root  -> BatchResponse
 *   GET  /v1/evidence/:hash -> EvidenceResponse (a verifier's, for the committee of its challenge)
 *   GET  /v1/status         -> NodeStatus (roles, and what the verifier and committee member did)
 *   GET  /v1/blobs/:cid     -> the blob's bytes
 *   GET  /health, GET /metrics (Prometheus)
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
export const RECEIPT_HEADER = 'glassbox-receipt';
export const BINARY_TYPE = 'application/octet-stream';

const bytes32 = z
  .string()
  .refine((v) => isHex(v, { strict: true }) && v.length === 66, 'is not 32 bytes of 0x-hex');
const address = z.string().refine((v) => isAddress(v, { strict: false }), 'is not an address');
const amount = z.string().regex(/^\d{1,78}$/, 'is not a decimal amount of base units');

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

export const inferResponseSchema = z.strictObject({
  outputs: z.record(z.string(), z.unknown()),
  receipt: signedReceiptJsonSchema,
});

export type VoucherAccepted = { readonly amount: string; readonly owed: string };

/** One model as a provider serves it. */
export type ServedModel = {
  readonly id: string;
  readonly name: string;
  readonly version: string;
  readonly inputs: unknown[];
  readonly outputs: unknown[];
  readonly policy: unknown;
  /** The provider's effective price now, in base units. */
  readonly price: string;
};

export type ModelsResponse = {
  readonly provider: Address;
  readonly signer: Address;
  readonly chainId: number;
  readonly runtime: Hex;
  readonly profile: unknown;
  readonly models: readonly ServedModel[];
};

export type StoredReceipt = {
  readonly receipt: SignedReceiptJson;
  /** The root of the batch that committed it, once committed. */
  readonly batch?: { readonly root: Hex; readonly proof: readonly Hex[]; readonly id?: string };
  /** The inputs behind it (canonical encoding, base64), kept for the challenge window. */
  readonly inputs?: string;
  /** The outputs it answered with (canonical encoding, base64): for policies other than exact. */
  readonly outputs?: string;
  /** A traced run's step hashes (their Merkle root is the receipt's traceRoot), for bisection. */
  readonly trace?: readonly Hex[];
};

/** What a challenger serves its committee: the receipt and the data to re-execute it. */
export type EvidenceResponse = {
  /** The provider's signed receipt, when the challenger has it (the chain has the receipt anyway). */
  readonly receipt?: SignedReceiptJson;
  /** Canonical encoding of the inputs, base64; their keccak256 is the receipt's inputHash. */
  readonly inputs: string;
  /** The provider's outputs (canonical encoding, base64), when the challenger has them. */
  readonly outputs?: string;
};

export type BatchResponse = {
  readonly root: Hex;
  readonly count: number;
  readonly receipts: readonly StoredReceipt[];
};

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
