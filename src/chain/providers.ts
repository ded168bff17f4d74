import { keccak256, toBytes, type Address, type Hex } from 'viem';
import { secondsToMs, type GlassboxClient, type TxResult } from './client.js';
import { readFrom, sendTo, toModelDigest, type ModelRef } from './contracts.js';
import { getEvents } from './events.js';
import { withAllowance } from './token.js';

export type RegisterProviderParameters = {
  readonly endpoint: string;
  /** The key that signs receipts; may differ from the staking account. */
  readonly signer: Address;
  readonly stake: bigint;
};

/** Registers the account as a provider, approving the stake first if needed. */
export async function registerProvider(
  client: GlassboxClient,
  params: RegisterProviderParameters,
): Promise<TxResult> {
  return withAllowance(client, 'providerRegistry', params.stake, (held) =>
    sendTo(held, 'providerRegistry', 'register', [params.endpoint, params.signer, params.stake]),
  );
}

export async function addStake(client: GlassboxClient, amount: bigint): Promise<TxResult> {
  return withAllowance(client, 'providerRegistry', amount, (held) =>
    sendTo(held, 'providerRegistry', 'addStake', [amount]),
  );
}

export function requestUnstake(client: GlassboxClient, amount: bigint): Promise<TxResult> {
  return sendTo(client, 'providerRegistry', 'requestUnstake', [amount]);
}

/** Withdraws all unbonded stake once the unbonding delay is over and no challenge against it is open. */
export function withdrawStake(client: GlassboxClient): Promise<TxResult> {
  return sendTo(client, 'providerRegistry', 'withdraw');
}

export function setEndpoint(client: GlassboxClient, endpoint: string): Promise<TxResult> {
  return sendTo(client, 'providerRegistry', 'setEndpoint', [endpoint]);
}

export function setSigner(client: GlassboxClient, signer: Address): Promise<TxResult> {
  return sendTo(client, 'providerRegistry', 'setSigner', [signer]);
}

export type SetOfferParameters = {
  readonly model: ModelRef;
  /** Base units per inference (a tensor model) or per output token (an LLM). */
  readonly price: bigint;
  /** Base units per input (prompt) token of an LLM; 0 (the default) for a tensor model. */
  readonly inputPrice?: bigint;
};

/**
 * Offers a model at a pair of prices: at once if new or if neither price rises; if either rises,
 * the whole pair after the notice period.
 */
export function setOffer(client: GlassboxClient, params: SetOfferParameters): Promise<TxResult> {
  return sendTo(client, 'providerRegistry', 'setOffer', [
    toModelDigest(params.model),
    params.price,
    params.inputPrice ?? 0n,
  ]);
}

export function removeOffer(client: GlassboxClient, model: ModelRef): Promise<TxResult> {
  return sendTo(client, 'providerRegistry', 'removeOffer', [toModelDigest(model)]);
}

export function pauseProvider(client: GlassboxClient): Promise<TxResult> {
  return sendTo(client, 'providerRegistry', 'pause');
}

export function resumeProvider(client: GlassboxClient): Promise<TxResult> {
  return sendTo(client, 'providerRegistry', 'resume');
}

/** Opts the account in to (or out of) committee duty: only voters are drawn onto committees. */
export function setVoter(client: GlassboxClient, voter: boolean): Promise<TxResult> {
  return sendTo(client, 'providerRegistry', 'setVoter', [voter]);
}

/**
 * Declares the runtime profiles (their hashes: one per engine the node runs) the account serves
 * under and, as a voter, judges under, replacing those declared before; each must be admitted
 * (`admitRuntime`), at most 8, no duplicates.
 */
export function setRuntimes(client: GlassboxClient, runtimes: readonly Hex[]): Promise<TxResult> {
  return sendTo(client, 'providerRegistry', 'setRuntimes', [runtimes]);
}

/**
 * Admits a runtime profile, given as its canonical JSON (src/protocol/runtime-profile.ts
 * `runtimeProfileJson`); the registry's owner only. Returns the profile's hash.
 */
export async function admitRuntime(
  client: GlassboxClient,
  profileJson: string,
): Promise<TxResult & { runtime: Hex }> {
  const tx = await sendTo(client, 'providerRegistry', 'admitRuntime', [profileJson]);
  return { ...tx, runtime: keccak256(toBytes(profileJson)) };
}

/** Whether the runtime profile with this hash was admitted. */
export function isRuntimeAdmitted(client: GlassboxClient, runtime: Hex): Promise<boolean> {
  return readFrom(client, 'providerRegistry', 'admittedRuntime', [runtime]);
}

/** The admitted runtime profiles, as their canonical JSON keyed by hash (from RuntimeAdmitted events). */
export async function getAdmittedRuntimes(client: GlassboxClient): Promise<Map<Hex, string>> {
  const events = await getEvents(client, {
    contract: 'providerRegistry',
    eventName: 'RuntimeAdmitted',
  });
  return new Map(events.map((e) => [e.args.runtime, e.args.profile]));
}

/**
 * The committee pool for a receipt of `runtime`: voters other than `exclude` that are active and
 * judge under it, with their stakes (what DisputeManager.drawCommittee draws from).
 */
export async function getEligibleVoters(
  client: GlassboxClient,
  params: { runtime: Hex; exclude?: readonly [Address?, Address?] },
): Promise<{ address: Address; stake: bigint }[]> {
  const zero = '0x0000000000000000000000000000000000000000';
  const [accounts, stakes] = await readFrom(client, 'providerRegistry', 'eligibleVoters', [
    params.exclude?.[0] ?? zero,
    params.exclude?.[1] ?? zero,
    params.runtime,
  ]);
  return accounts.map((address, i) => ({ address, stake: stakes[i]! }));
}

export type ProviderInfo = {
  readonly address: Address;
  readonly registered: boolean;
  readonly paused: boolean;
  /** Opted in to committee duty. */
  readonly voter: boolean;
  /** The runtime profile hashes it serves and judges under (empty until it declares some). */
  readonly runtimes: readonly Hex[];
  readonly stake: bigint;
  readonly unbonding: bigint;
  /** When the unbonding stake can be withdrawn (ms since the epoch; 0 if none requested). */
  readonly unbondingEndsMs: number;
  readonly signer: Address;
  readonly endpoint: string;
  /** Registered, not paused and staked at least the minimum. */
  readonly active: boolean;
  /** Open challenges against this provider; while non-zero nothing can be withdrawn. */
  readonly openChallenges: number;
};

export async function getProvider(client: GlassboxClient, provider: Address): Promise<ProviderInfo> {
  const [p, active, openChallenges] = await Promise.all([
    readFrom(client, 'providerRegistry', 'getProvider', [provider]),
    readFrom(client, 'providerRegistry', 'isActive', [provider]),
    readFrom(client, 'providerRegistry', 'openChallenges', [provider]),
  ]);
  return {
    address: provider,
    registered: p.registered,
    paused: p.paused,
    voter: p.voter,
    runtimes: p.runtimes,
    stake: p.stake,
    unbonding: p.unbonding,
    unbondingEndsMs: secondsToMs(p.unbondingEnds),
    signer: p.signer,
    endpoint: p.endpoint,
    active,
    openChallenges: Number(openChallenges),
  };
}

/** Every provider ever registered, in registration order. */
export async function listProviders(client: GlassboxClient): Promise<ProviderInfo[]> {
  const count = await readFrom(client, 'providerRegistry', 'providerCount');
  const addresses = await Promise.all(
    Array.from({ length: Number(count) }, (_, i) =>
      readFrom(client, 'providerRegistry', 'providerAt', [BigInt(i)]),
    ),
  );
  return Promise.all(addresses.map((a) => getProvider(client, a)));
}

export type OfferInfo = {
  readonly active: boolean;
  /** The price in force now: per inference (tensor model) or per output token (LLM). */
  readonly price: bigint;
  /** The price per input token in force now (0 for a tensor model). */
  readonly inputPrice: bigint;
  /** An announced increase (the whole new pair) and when it takes effect (ms), if any. */
  readonly pending:
    { readonly price: bigint; readonly inputPrice: bigint; readonly effectiveAtMs: number } | undefined;
};

export async function getOffer(
  client: GlassboxClient,
  params: { provider: Address; model: ModelRef },
): Promise<OfferInfo> {
  const model = toModelDigest(params.model);
  const [[active, price, inputPrice], raw, block] = await Promise.all([
    readFrom(client, 'providerRegistry', 'priceOf', [params.provider, model]),
    readFrom(client, 'providerRegistry', 'getOffer', [params.provider, model]),
    client.publicClient.getBlock({ blockTag: 'latest' }),
  ]);
  const pending =
    raw.pendingAt > block.timestamp
      ? {
          price: raw.pendingPrice,
          inputPrice: raw.pendingInputPrice,
          effectiveAtMs: secondsToMs(raw.pendingAt),
        }
      : undefined;
  return { active, price, inputPrice, pending };
}

/** Whether `key` is (or was) a signing key of `provider`. */
export function isProviderSigner(
  client: GlassboxClient,
  params: { provider: Address; key: Address },
): Promise<boolean> {
  return readFrom(client, 'providerRegistry', 'isSigner', [params.provider, params.key]);
}
