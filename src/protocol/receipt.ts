import {
  bytesToHex,
  hashStruct,
  hashTypedData,
  isAddress,
  isHex,
  type Address,
  type Hex,
  type LocalAccount,
} from 'viem';
import { z } from 'zod';
import { glassboxDomain, type GlassboxDomain } from './domain.js';
import { flatStruct, typedDataDigest } from './eip712.js';
import { GlassboxError } from './errors.js';
import { recoverDigestSigner, signDigestWith } from './secp256k1.js';
import { parseWith } from './validate.js';

/**
 * The receipt a provider signs for every answer (docs/protocol.md, Receipts): EIP-712 typed data under
 * the domain `Glassbox` v1 whose verifying contract is the ReceiptLedger. This one definition is
 * what the SDK checks, what batches commit and what DisputeManager recovers on chain.
 */
export const RECEIPT_TYPES = {
  Receipt: [
    { name: 'requestId', type: 'bytes32' },
    { name: 'provider', type: 'address' },
    { name: 'client', type: 'address' },
    { name: 'model', type: 'bytes32' },
    { name: 'inputHash', type: 'bytes32' },
    { name: 'outputHash', type: 'bytes32' },
    { name: 'paramsHash', type: 'bytes32' },
    { name: 'runtime', type: 'bytes32' },
    { name: 'traceRoot', type: 'bytes32' },
    { name: 'price', type: 'uint256' },
    { name: 'timestamp', type: 'uint64' },
  ],
} as const;

export type Receipt = {
  /** Unique per request; chosen by the client, so a provider can't pass one answer off as another. */
  readonly requestId: Hex;
  /** The provider's registered (staking) address; the signature recovers to its signing key. */
  readonly provider: Address;
  readonly client: Address;
  /** The model id's 32-byte digest (see `modelDigest`). */
  readonly model: Hex;
  readonly inputHash: Hex;
  readonly outputHash: Hex;
  /** keccak256 of the request's parameters (zero for models that take none). */
  readonly paramsHash: Hex;
  /** keccak256 of the runtime profile (see `runtimeHash`). */
  readonly runtime: Hex;
  /** Merkle root of the execution trace, or zero when none was taken. */
  readonly traceRoot: Hex;
  /** What the client pays for this answer, in token base units. */
  readonly price: bigint;
  /** When the provider signed, in ms since the epoch. */
  readonly timestamp: bigint;
};

export type SignedReceipt = { readonly receipt: Receipt; readonly signature: Hex };

export const ZERO_HASH: Hex = `0x${'0'.repeat(64)}`;

export type ReceiptDomain = GlassboxDomain;

/** The domain of receipts: verifying contract = the ReceiptLedger. */
export const receiptDomain = glassboxDomain;

// viem's EIP-712 hashing, field by field, ~20x faster (src/protocol/eip712.ts; same bytes).
const receiptStruct = flatStruct('Receipt', RECEIPT_TYPES.Receipt);

/** The EIP-712 struct hash: the leaf content of batches. */
export function receiptHash(receipt: Receipt): Hex {
  const hash = receiptStruct.hash(receipt);
  if (hash) return bytesToHex(hash);
  return hashStruct({ data: receipt, primaryType: 'Receipt', types: RECEIPT_TYPES });
}

/** The EIP-712 digest that is signed. */
export function receiptDigest(receipt: Receipt, domain: ReceiptDomain): Hex {
  const hash = receiptStruct.hash(receipt);
  if (hash) return typedDataDigest(domain, hash);
  return hashTypedData({
    domain: receiptDomain(domain),
    types: RECEIPT_TYPES,
    primaryType: 'Receipt',
    message: receipt,
  });
}

export async function signReceipt(
  account: LocalAccount,
  receipt: Receipt,
  domain: ReceiptDomain,
): Promise<SignedReceipt> {
  const signature =
    (await signDigestWith(account, receiptDigest(receipt, domain))) ??
    (await account.signTypedData({
      domain: receiptDomain(domain),
      types: RECEIPT_TYPES,
      primaryType: 'Receipt',
      message: receipt,
    }));
  return { receipt, signature };
}

/** The address whose key signed the receipt; SIGNATURE_INVALID if the signature is malformed. */
export async function recoverReceiptSigner(signed: SignedReceipt, domain: ReceiptDomain): Promise<Address> {
  try {
    return await recoverDigestSigner(receiptDigest(signed.receipt, domain), signed.signature);
  } catch (cause) {
    throw new GlassboxError('SIGNATURE_INVALID', 'the receipt signature is malformed', {
      field: 'signature',
      cause,
    });
  }
}

// Checked strings come out typed (Hex, Address), so a parsed receipt is a Receipt without a cast.
const bytes32 = z
  .string()
  .meta({ pattern: '^0x[0-9a-fA-F]{64}$' }) // for the OpenAPI document: what the refinement checks
  .refine((v) => isHex(v, { strict: true }) && v.length === 66, 'is not 32 bytes of 0x-hex')
  .transform((v) => v as Hex);
const address = z
  .string()
  .meta({ pattern: '^0x[0-9a-fA-F]{40}$' })
  .refine((v) => isAddress(v, { strict: false }), 'is not an address')
  .transform((v) => v as Address);
const uint = (bits: number) =>
  z
    .string()
    .regex(/^\d+$/, 'is not a decimal integer string')
    .transform((v) => BigInt(v))
    .refine((v) => v < 2n ** BigInt(bits), `exceeds uint${bits}`);

/** JSON transport of a signed receipt: hex strings as they are, integers as decimal strings. */
export const signedReceiptJsonSchema = z.strictObject({
  receipt: z.strictObject({
    requestId: bytes32,
    provider: address,
    client: address,
    model: bytes32,
    inputHash: bytes32,
    outputHash: bytes32,
    paramsHash: bytes32,
    runtime: bytes32,
    traceRoot: bytes32,
    price: uint(256),
    timestamp: uint(64),
  }),
  signature: z
    .string()
    .refine((v) => isHex(v, { strict: true }), 'is not 0x-hex')
    .transform((v) => v as Hex),
});

export type SignedReceiptJson = z.input<typeof signedReceiptJsonSchema>;

export function signedReceiptToJson({ receipt, signature }: SignedReceipt): SignedReceiptJson {
  return {
    receipt: { ...receipt, price: receipt.price.toString(), timestamp: receipt.timestamp.toString() },
    signature,
  };
}

export function signedReceiptFromJson(json: unknown): SignedReceipt {
  return parseWith(signedReceiptJsonSchema, json, { code: 'RECEIPT_INVALID' });
}
