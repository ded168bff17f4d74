import { getAddress, type Address, type Hex } from 'viem';
import { getOffer, listProviders, type OfferInfo, type ProviderInfo } from '../chain/providers.js';
import { modelDigest } from '../protocol/manifest.js';
import type { Client } from './client.js';

/** A provider that offers a model, as read from the chain. */
export type ProviderCandidate = {
  readonly address: Address;
  readonly endpoint: string;
  readonly signer: Address;
  readonly stake: bigint;
  readonly registered: boolean;
  readonly paused: boolean;
  /** Registered, not paused, staked at least the minimum. */
  readonly active: boolean;
  /** The runtime profile hashes it declared on chain (one per engine): its receipts must name one. */
  readonly runtimes: readonly Hex[];
  /**
   * The price in force now (a pending increase is not charged before it takes effect): per
   * inference for a tensor model, per output token for an LLM.
   */
  readonly price: bigint;
  /** The price per input (prompt) token in force now; 0 for a tensor model. */
  readonly inputPrice: bigint;
  /**
   * An announced increase (the whole new pair), if any: informational; never what the client is
   * charged before `effectiveAtMs`.
   */
  readonly pending: OfferInfo['pending'];
};

export type DiscoverProvidersParameters = {
  readonly model: string;
  /** Ignore the cache (e.g. after a price change you know of). */
  readonly fresh?: boolean;
};

/**
 * The active providers offering `model`, with their effective prices, from the chain. Cached for
 * `discoveryTtlMs`; concurrent callers share one read.
 */
export async function discoverProviders(
  client: Client,
  params: DiscoverProvidersParameters,
): Promise<ProviderCandidate[]> {
  const now = Date.now();
  const ttl = client.options.discoveryTtlMs;
  const digest = modelDigest(params.model);
  const cached = client.state.offers.get(digest);
  if (!params.fresh && cached && now - cached.at < ttl) return cached.list;
  const list = readCandidates(client, digest, params.fresh ?? false);
  client.state.offers.set(digest, { at: now, list });
  list.catch(() => {
    if (client.state.offers.get(digest)?.list === list) client.state.offers.delete(digest);
  });
  return list;
}

async function allProviders(client: Client, fresh: boolean): Promise<ProviderInfo[]> {
  const now = Date.now();
  const cached = client.state.providers;
  if (!fresh && cached && now - cached.at < client.options.discoveryTtlMs) return cached.list;
  const list = listProviders(client.chain);
  client.state.providers = { at: now, list };
  list.catch(() => {
    if (client.state.providers?.list === list) client.state.providers = undefined;
  });
  return list;
}

async function readCandidates(
  client: Client,
  digest: `0x${string}`,
  fresh: boolean,
): Promise<ProviderCandidate[]> {
  const providers = (await allProviders(client, fresh)).filter((p) => p.active);
  const offers = await Promise.all(
    providers.map((p) => getOffer(client.chain, { provider: p.address, model: digest })),
  );
  const out: ProviderCandidate[] = [];
  providers.forEach((p, i) => {
    const offer = offers[i]!;
    if (!offer.active) return;
    out.push({
      address: getAddress(p.address),
      endpoint: p.endpoint,
      signer: p.signer,
      stake: p.stake,
      registered: p.registered,
      paused: p.paused,
      active: p.active,
      runtimes: p.runtimes,
      price: offer.price,
      inputPrice: offer.inputPrice,
      pending: offer.pending,
    });
  });
  return out;
}

/** Forgets discovery results, so the next call reads the chain again. */
export function invalidateDiscovery(client: Client): void {
  client.state.providers = undefined;
  client.state.offers.clear();
}
