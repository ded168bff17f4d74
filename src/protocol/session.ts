import {
  getAddress,
  hashTypedData,
  isAddress,
  isAddressEqual,
  type Address,
  type Hex,
  type LocalAccount,
} from 'viem';
import { glassboxDomain, type GlassboxDomain } from './domain.js';
import { flatStruct, typedDataDigest } from './eip712.js';
import { GlassboxError } from './errors.js';
import { recoverDigestSigner, signatureProblem, signDigestWith } from './secp256k1.js';

/**
 * The API key of the OpenAI-compatible routes (docs/protocol.md, Session keys). OpenAI clients send
 * one static bearer token and cannot sign each request, so a client signs once, off line, a session
 * that names the provider and an expiry, and the key is that signature in text:
 * `gbk.<client>.<expiresAt>.<signature>`. The provider recovers the client from it and serves on
 * that client's bounded credit, as for signed /v1/infer requests. EIP-712 under the receipts' domain
 * (like InferRequest): a key for one provider or chain recovers to another address anywhere else.
 */
export const SESSION_TYPES = {
  Session: [
    { name: 'client', type: 'address' },
    { name: 'provider', type: 'address' },
    { name: 'expiresAt', type: 'uint64' },
  ],
} as const;

export type SessionMessage = {
  readonly client: Address;
  /** The provider the key is for (its staking address). */
  readonly provider: Address;
  /** Unix time in milliseconds after which the key is refused. */
  readonly expiresAt: bigint;
};

/** What a key carries: the provider is not in it, the provider checking it supplies its own. */
export type SessionKey = { readonly client: Address; readonly expiresAt: bigint; readonly signature: Hex };

export const SESSION_KEY_PREFIX = 'gbk';
const UINT64_MAX = (1n << 64n) - 1n;

const sessionStruct = flatStruct('Session', SESSION_TYPES.Session);

/** The EIP-712 digest that is signed. */
export function sessionDigest(message: SessionMessage, domain: GlassboxDomain): Hex {
  const hash = sessionStruct.hash(message);
  if (hash) return typedDataDigest(domain, hash);
  return hashTypedData({
    domain: glassboxDomain(domain),
    types: SESSION_TYPES,
    primaryType: 'Session',
    message,
  });
}

/** Signs a session for `provider` until `expiresAt` (ms) with the client's account. */
export async function signSession(
  account: LocalAccount,
  session: { readonly provider: Address; readonly expiresAt: bigint },
  domain: GlassboxDomain,
): Promise<SessionKey> {
  if (session.expiresAt < 0n || session.expiresAt > UINT64_MAX)
    throw new GlassboxError('REQUEST_INVALID', `expiresAt ${session.expiresAt} is not a uint64`, {
      field: 'expiresAt',
    });
  const message: SessionMessage = {
    client: account.address,
    provider: getAddress(session.provider),
    expiresAt: session.expiresAt,
  };
  const signature =
    (await signDigestWith(account, sessionDigest(message, domain))) ??
    (await account.signTypedData({
      domain: glassboxDomain(domain),
      types: SESSION_TYPES,
      primaryType: 'Session',
      message,
    }));
  return { client: message.client, expiresAt: message.expiresAt, signature };
}

/** The key as text: `gbk.<client (checksummed)>.<expiresAt (decimal ms)>.<signature (0x-hex)>`. */
export function formatSessionKey(key: SessionKey): string {
  return [SESSION_KEY_PREFIX, getAddress(key.client), key.expiresAt.toString(), key.signature].join('.');
}

function malformed(why: string): GlassboxError {
  return new GlassboxError('REQUEST_INVALID', `the API key is not a Glassbox session key: ${why}`, {
    field: 'authorization',
    metaMessages: ['expected gbk.<client address>.<expiresAt ms>.<signature>, as createSessionKey makes'],
  });
}

/** The parts of a key's text; REQUEST_INVALID (field `authorization`) saying which part is malformed. */
export function parseSessionKey(text: string): SessionKey {
  const parts = text.trim().split('.');
  if (parts.length !== 4 || parts[0] !== SESSION_KEY_PREFIX)
    throw malformed(`it does not have the four dot-separated parts of gbk.…`);
  const [, client, expiresAt, signature] = parts as [string, string, string, string];
  if (!isAddress(client, { strict: false })) throw malformed(`the client ${client} is not an address`);
  if (!/^(0|[1-9]\d{0,19})$/.test(expiresAt) || BigInt(expiresAt) > UINT64_MAX)
    throw malformed(`expiresAt ${expiresAt} is not a uint64 of milliseconds`);
  if (!/^0x[0-9a-fA-F]+$/.test(signature)) throw malformed('the signature is not 0x-hex');
  return { client: getAddress(client), expiresAt: BigInt(expiresAt), signature: signature as Hex };
}

/**
 * The client a session key lets the provider serve. REQUEST_INVALID (field `authorization`) when it
 * is malformed or expired; SIGNATURE_INVALID when the signature is not canonical or does not recover
 * to the key's client for this provider and chain (a key for another provider or chain, or signed by
 * another key, recovers to someone else).
 */
export async function verifySessionKey(
  key: string | SessionKey,
  context: { readonly provider: Address; readonly domain: GlassboxDomain; readonly now: number },
): Promise<Address> {
  const parsed = typeof key === 'string' ? parseSessionKey(key) : key;
  if (parsed.expiresAt <= BigInt(Math.floor(context.now)))
    throw new GlassboxError(
      'REQUEST_INVALID',
      `the session key expired at ${new Date(Number(parsed.expiresAt)).toISOString()}: make a new one`,
      { field: 'authorization', details: { expiresAt: parsed.expiresAt.toString(), now: context.now } },
    );
  const problem = signatureProblem(parsed.signature);
  if (problem)
    throw new GlassboxError('SIGNATURE_INVALID', `the session key's signature is not canonical: ${problem}`, {
      field: 'authorization',
    });
  const message: SessionMessage = {
    client: parsed.client,
    provider: getAddress(context.provider),
    expiresAt: parsed.expiresAt,
  };
  let signer: Address;
  try {
    signer = await recoverDigestSigner(sessionDigest(message, context.domain), parsed.signature);
  } catch (cause) {
    throw new GlassboxError('SIGNATURE_INVALID', "the session key's signature is malformed", {
      field: 'authorization',
      cause,
    });
  }
  if (!isAddressEqual(signer, parsed.client))
    throw new GlassboxError(
      'SIGNATURE_INVALID',
      `the session key is not signed by its client ${parsed.client} for provider ${message.provider} on chain ${context.domain.chainId}: it is for another provider or chain, or signed by another key`,
      { field: 'authorization', details: { client: parsed.client, signer } },
    );
  return parsed.client;
}
