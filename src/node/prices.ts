import type { Address } from 'viem';
import { getOffer, type GlassboxClient } from '../chain/index.js';
import { GlassboxError } from '../protocol/errors.js';
import type { TokenPrices } from '../protocol/llm.js';
import type { ModelFormat, ModelPackage } from '../protocol/manifest.js';

/*
 * The prices a receipt charges are the provider's effective on-chain pair for the model (what
 * `priceOf` returns now): an announced increase is not charged before its notice period ends. Reads
 * are reused for `ttlMs`, and never past the moment an announced pair takes effect.
 */

/**
 * An offer's pair in force. `price`: per inference for a tensor model (`inputPrice` 0), per output
 * token for an LLM; `inputPrice`: per input (prompt) token.
 */
export type OfferPrices = { readonly price: bigint; readonly inputPrice: bigint };

export type PriceBook = {
  /** The effective prices of `model`; NOT_FOUND when this provider has no active offer for it. */
  price(model: string): Promise<OfferPrices>;
  forget(): void;
};

export function createPriceBook(client: GlassboxClient, provider: Address, ttlMs: number): PriceBook {
  const cache = new Map<string, { prices: Promise<OfferPrices>; until: number }>();
  return {
    price(model) {
      const now = Date.now();
      const hit = cache.get(model);
      if (hit && hit.until > now) return hit.prices;
      const prices = getOffer(client, { provider, model }).then((offer) => {
        if (!offer.active)
          throw new GlassboxError('NOT_FOUND', `this provider has no active offer for model ${model}`, {
            field: 'model',
          });
        const entry = cache.get(model);
        if (entry && offer.pending) entry.until = Math.min(entry.until, offer.pending.effectiveAtMs);
        return { price: offer.price, inputPrice: offer.inputPrice };
      });
      cache.set(model, { prices, until: now + ttlMs });
      prices.catch(() => cache.delete(model));
      return prices;
    },
    forget: () => cache.clear(),
  };
}

export const NO_PRICE_MESSAGE = 'name a price: this node has no defaultPrice in its config';

/** Prices named for an offer (a request or a config entry), or the node's defaults. */
export type AskedPrices = { readonly price?: bigint | undefined; readonly inputPrice?: bigint | undefined };

/**
 * The pair to offer a model of `format` at, from what was asked, else the node's defaults; or the
 * field that is wrong and why. A tensor model is priced per inference: its input price is 0, so
 * the node's `defaultInputPrice` (meant for LLMs) never applies to it, and asking for another is
 * refused rather than published on chain, where no receipt could ever charge it.
 */
export function offerPrices(
  format: ModelFormat,
  asked: AskedPrices,
  defaults: AskedPrices,
): { ok: true; prices: OfferPrices } | { ok: false; field: 'price' | 'inputPrice'; message: string } {
  const price = asked.price ?? defaults.price;
  if (price === undefined) return { ok: false, field: 'price', message: NO_PRICE_MESSAGE };
  if (format === 'llm')
    return { ok: true, prices: { price, inputPrice: asked.inputPrice ?? defaults.inputPrice ?? 0n } };
  if (asked.inputPrice !== undefined && asked.inputPrice !== 0n)
    return {
      ok: false,
      field: 'inputPrice',
      message: `${format} models are priced per inference: the inputPrice must be 0, not ${asked.inputPrice}`,
    };
  return { ok: true, prices: { price, inputPrice: 0n } };
}

/**
 * The most one answer under this offer can cost: the bound on compute cost a verifier's default
 * sampling rate is planned for (docs/economics.md). A tensor model's price is per answer; an LLM's
 * answer holds at most `contextLength` tokens in all, prompt and output, so it costs at most that
 * many tokens at the dearer of its two prices. Taking the per-token price alone would plan for an
 * answer a thousand times cheaper than a long one, and sample far too rarely.
 */
export function answerPriceBound(pkg: ModelPackage, prices: OfferPrices): bigint {
  if (pkg.manifest.format !== 'llm') return prices.price;
  const perToken = prices.price > prices.inputPrice ? prices.price : prices.inputPrice;
  return perToken * BigInt(pkg.manifest.llm.contextLength);
}

/**
 * An LLM offer's pair as a token receipt's price rule names it (src/protocol/llm.ts `tokenPrice`):
 * the offer's `price` is the price per output token.
 */
export function tokenPricesOf(prices: OfferPrices): TokenPrices {
  return { inputPrice: prices.inputPrice, outputPrice: prices.price };
}
