import { getAddress, hashTypedData, isAddressEqual, type Address, type Hex, type LocalAccount } from 'viem';
import { glassboxDomain, type GlassboxDomain } from './domain.js';
import { flatStruct, typedDataDigest } from './eip712.js';
import { GlassboxError } from './errors.js';
import { modelDigest } from './manifest.js';
import { recoverDigestSigner, signatureProblem, signDigestWith } from './secp256k1.js';

/**
 * The client's signature over an inference request (docs/protocol.md, Signed requests). A provider
 * extends credit to the address a request names; without proof that the address's key sent it,
 * anyone could be served on another client's credit or get it locked out. EIP-712 under the domain
 * of receipts (`Glassbox` v1, verifying contract = the ReceiptLedger): a request is only ever
 * checked off chain, next to the receipt that answers it, so it shares that domain. It names the
 * provider, so a request signed for one provider can't be spent at another, and covers the inputs
 * (by hash), the model, the price cap and whether a trace is asked for.
 */
export const INFER_REQUEST_TYPES = {
  InferRequest: [
    { name: 'requestId', type: 'bytes32' },
    { name: 'client', type: 'address' },
    { name: 'provider', type: 'address' },
    { name: 'model', type: 'bytes32' },
    { name: 'inputHash', type: 'bytes32' },
    { name: 'maxPrice', type: 'uint256' },
    { name: 'trace', type: 'bool' },
  ],
} as const;

/** What a client signs for one request (the typed-data message). */
export type InferRequestMessage = {
  readonly requestId: Hex;
  readonly client: Address;
  /** The provider the request is sent to (its staking address). */
  readonly provider: Address;
  /** The model id's 32-byte digest (see `modelDigest`). */
  readonly model: Hex;
  /** The dataHash of the canonical encoding of the inputs (`hashTensors`). */
  readonly inputHash: Hex;
  readonly maxPrice: bigint;
  readonly trace: boolean;
};

export type RequestDomain = GlassboxDomain;

/** The domain of signed requests: the receipts' (verifying contract = the ReceiptLedger). */
export const requestDomain = glassboxDomain;

// viem's EIP-712 hashing, field by field (src/protocol/eip712.ts; same bytes).
const requestStruct = flatStruct('InferRequest', INFER_REQUEST_TYPES.InferRequest);

/** The EIP-712 digest that is signed. */
export function requestDigest(message: InferRequestMessage, domain: RequestDomain): Hex {
  const hash = requestStruct.hash(message);
  if (hash) return typedDataDigest(domain, hash);
  return hashTypedData({
    domain: requestDomain(domain),
    types: INFER_REQUEST_TYPES,
    primaryType: 'InferRequest',
    message,
  });
}

/**
 * The message of a request as it travels (src/protocol/api.ts: the model as its CID, maxPrice as a
 * decimal string, trace optional) for the provider it is sent to and the hash of its inputs.
 */
export function requestMessage(
  head: {
    readonly requestId: string;
    readonly client: string;
    readonly model: string;
    readonly maxPrice: string | bigint;
    readonly trace?: boolean | undefined;
  },
  to: { readonly provider: Address; readonly inputHash: Hex },
): InferRequestMessage {
  return {
    requestId: head.requestId as Hex,
    client: getAddress(head.client),
    provider: getAddress(to.provider),
    model: modelDigest(head.model),
    inputHash: to.inputHash,
    maxPrice: BigInt(head.maxPrice),
    trace: head.trace === true,
  };
}

export async function signRequest(
  account: LocalAccount,
  message: InferRequestMessage,
  domain: RequestDomain,
): Promise<Hex> {
  return (
    (await signDigestWith(account, requestDigest(message, domain))) ??
    (await account.signTypedData({
      domain: requestDomain(domain),
      types: INFER_REQUEST_TYPES,
      primaryType: 'InferRequest',
      message,
    }))
  );
}

/** The address whose key signed the request; SIGNATURE_INVALID (field `signature`) if malformed. */
export async function recoverRequestSigner(
  message: InferRequestMessage,
  signature: Hex,
  domain: RequestDomain,
): Promise<Address> {
  try {
    return await recoverDigestSigner(requestDigest(message, domain), signature);
  } catch (cause) {
    throw new GlassboxError('SIGNATURE_INVALID', 'the request signature is malformed', {
      field: 'signature',
      cause,
    });
  }
}

/**
 * Proves that the request's `client` sent it: the signature must be canonical (as the chain would
 * accept it) and recover to `client` over exactly this message. SIGNATURE_INVALID naming the field
 * `signature` otherwise; the message says whether it was malformed or signed by someone else (or
 * over other inputs, another provider, model, price cap, trace flag or chain: that recovers to
 * another address too).
 */
export async function verifyRequestSignature(
  message: InferRequestMessage,
  signature: Hex,
  domain: RequestDomain,
): Promise<Address> {
  const problem = signatureProblem(signature);
  if (problem)
    throw new GlassboxError('SIGNATURE_INVALID', `the request signature is not canonical: ${problem}`, {
      field: 'signature',
    });
  const signer = await recoverRequestSigner(message, signature, domain);
  if (!isAddressEqual(signer, message.client))
    throw new GlassboxError(
      'SIGNATURE_INVALID',
      `the request is not signed by its client ${message.client}: the signature is for another request, provider or chain, or by another key`,
      { field: 'signature', details: { client: message.client, signer } },
    );
  return message.client;
}
