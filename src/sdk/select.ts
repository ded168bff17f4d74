import type { Address } from 'viem';
import type { ProviderCandidate } from './discovery.js';
import type { ProviderHealth } from './health.js';

export type RankProvidersParameters = {
  readonly candidates: readonly ProviderCandidate[];
  /** Never a provider whose effective price is above this. */
  readonly maxPrice: bigint;
  readonly health?: ReadonlyMap<Address, ProviderHealth>;
  readonly exclude?: ReadonlySet<Address>;
  readonly now?: number;
};

/**
 * Orders the providers to try, pure. Price is a cap, applied first: a provider whose effective
 * offer exceeds `maxPrice` (or that is inactive or excluded) is dropped. The rest: healthy before
 * cooling down; then by measured latency in coarse bands (a provider not yet measured counts as
 * fast, so new providers get tried); then by stake, highest first; then by price; then address.
 */
export function rankProviders(params: RankProvidersParameters): ProviderCandidate[] {
  const now = params.now ?? Date.now();
  const eligible = params.candidates.filter(
    (c) => c.active && c.price <= params.maxPrice && !params.exclude?.has(c.address),
  );
  const key = (c: ProviderCandidate) => {
    const h = params.health?.get(c.address);
    const cooling = h !== undefined && h.coolUntil > now ? 1 : 0;
    // Bands of a factor 1.5: providers within ~50% of each other's latency compete on stake.
    const band = h?.latencyMs === undefined ? 0 : Math.floor(Math.log(1 + h.latencyMs) / Math.log(1.5));
    return { cooling, band };
  };
  const keys = new Map(eligible.map((c) => [c.address, key(c)]));
  return [...eligible].sort((a, b) => {
    const ka = keys.get(a.address)!;
    const kb = keys.get(b.address)!;
    if (ka.cooling !== kb.cooling) return ka.cooling - kb.cooling;
    if (ka.band !== kb.band) return ka.band - kb.band;
    if (a.stake !== b.stake) return a.stake > b.stake ? -1 : 1;
    if (a.price !== b.price) return a.price < b.price ? -1 : 1;
    return a.address.toLowerCase() < b.address.toLowerCase() ? -1 : 1;
  });
}
