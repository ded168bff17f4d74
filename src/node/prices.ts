import type { Address } from 'viem';
import { getOffer, type GlassboxClient } from '../chain/index.js';
import { GlassboxError } from '../protocol/errors.js';

/*
 * The price a receipt charges is the provider's effective on-chain price for the model (what
 * `priceOf` returns now): an announced increase is not charged before its notice period ends. Reads
 * are reused for `ttlMs`, and never past the moment an announced price takes effect.
 */

export type PriceBook = {
  /** The effective price of `model`; NOT_FOUND when this provider has no active offer for it. */
  price(model: string): Promise<bigint>;
  forget(): void;
};

export function createPriceBook(client: GlassboxClient, provider: Address, ttlMs: number): PriceBook {
  const cache = new Map<string, { price: Promise<bigint>; until: number }>();
  return {
    price(model) {
      const now = Date.now();
      const hit = cache.get(model);
      if (hit && hit.until > now) return hit.price;
      const price = getOffer(client, { provider, model }).then((offer) => {
        if (!offer.active)
          throw new GlassboxError('NOT_FOUND', `this provider has no active offer for model ${model}`, {
            field: 'model',
          });
        const entry = cache.get(model);
        if (entry && offer.pending) entry.until = Math.min(entry.until, offer.pending.effectiveAtMs);
        return offer.price;
      });
      cache.set(model, { price, until: now + ttlMs });
      price.catch(() => cache.delete(model));
      return price;
    },
    forget: () => cache.clear(),
  };
}
