import { getAddress, type Address, type LocalAccount } from 'viem';
import type { Deployment } from '../chain/deployment.js';
import { GlassboxError } from '../protocol/errors.js';
import { formatSessionKey, signSession } from '../protocol/session.js';

/*
 * An API key for a provider's OpenAI-compatible routes (docs/protocol.md, Session keys): the
 * client's EIP-712 signature over `Session {client, provider, expiresAt}` under the receipts'
 * domain, as `gbk.<client>.<expiresAt>.<signature>`. Any OpenAI client sends it as its API key
 * (`new OpenAI({ baseURL: provider + '/v1', apiKey })`); the provider serves it on the client's
 * credit until it expires. It names one provider, so a key leaked by one can't be spent at another.
 */

export type CreateSessionKeyParameters = {
  /** The provider's staking address (what GET /v1/models names `provider`). */
  readonly provider: Address;
  /** How long the key is valid, from now. */
  readonly ttlMs: number;
  /** Now, in ms (tests). */
  readonly now?: number;
};

export type CreateSessionKeyReturnType = {
  /** The API key: `gbk.<client>.<expiresAt>.<signature>`. */
  readonly key: string;
  readonly client: Address;
  readonly provider: Address;
  /** When it expires, in ms since the epoch. */
  readonly expiresAt: number;
};

/** What signing a key needs of a client: its account and the chain's receipt ledger (the SDK client has both). */
export type SessionSigner = {
  readonly account: LocalAccount;
  readonly chainId: number;
  readonly deployment: Pick<Deployment, 'contracts'>;
};

export async function createSessionKey(
  client: SessionSigner,
  { provider, ttlMs, now = Date.now() }: CreateSessionKeyParameters,
): Promise<CreateSessionKeyReturnType> {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0)
    throw new GlassboxError('REQUEST_INVALID', `ttlMs ${ttlMs} is not a positive whole number of ms`, {
      field: 'ttlMs',
    });
  const expiresAt = now + ttlMs;
  const domain = { chainId: client.chainId, verifyingContract: client.deployment.contracts.receiptLedger };
  const signed = await signSession(
    client.account,
    { provider: getAddress(provider), expiresAt: BigInt(expiresAt) },
    domain,
  );
  return {
    key: formatSessionKey(signed),
    client: client.account.address,
    provider: getAddress(provider),
    expiresAt,
  };
}
