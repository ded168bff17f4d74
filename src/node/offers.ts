import type { Logger } from 'pino';
import { getModel, getOffer, isRuntimeAdmitted, removeOffer, type GlassboxClient } from '../chain/index.js';
import { GlassboxError, isGlassboxError } from '../protocol/errors.js';
import type { ModelFormat, ModelId, ModelPackage } from '../protocol/manifest.js';
import type { Engines } from '../runtime/registry.js';
import type { BlobStore } from '../store/index.js';
import type { NodeDb } from './db.js';
import { engineOf, resolveModel } from './models.js';
import { ensureOffer, type ChainAction } from './onchain.js';
import {
  NO_PRICE_MESSAGE,
  offerPrices,
  type AskedPrices,
  type OfferPrices,
  type PriceBook,
} from './prices.js';
import type { Serial } from './serial.js';

/*
 * Model offers added and removed while the node runs (the admin API, src/node/routes/admin.ts).
 * Adding one makes the same checks as a start: the model is registered on chain, not deprecated,
 * with the exact flag its manifest's policy implies; the node's runtime profile is admitted; every
 * file hashes to its CID; the engine loads the graph. Only then is the offer published on chain and
 * the model served. Added offers are kept in the node's database and served again after a restart.
 */

export type OfferBook = {
  add(params: AddOfferParameters): Promise<AddOfferReturnType>;
  remove(model: ModelId): Promise<ChainAction[]>;
};

export type AddOfferParameters = {
  readonly model: ModelId;
  /** Per inference (tensor model) or per output token (LLM). Default: the node's `defaultPrice`. */
  readonly price?: bigint;
  /** Per input token, for an LLM (default: the node's `defaultInputPrice`, else 0); 0 for a tensor model. */
  readonly inputPrice?: bigint;
  /** Blob sources to try before the node's peers. */
  readonly from?: readonly string[];
};

export type AddOfferReturnType = {
  readonly pkg: ModelPackage;
  readonly price: bigint;
  readonly inputPrice: bigint;
  readonly actions: ChainAction[];
};

export type CreateOfferBookParameters = {
  readonly chain: GlassboxClient;
  readonly engines: Engines;
  readonly store: BlobStore;
  readonly peers: readonly string[];
  /** The served models: what the infer route answers for. */
  readonly models: Map<string, ModelPackage>;
  readonly db: NodeDb;
  readonly prices: PriceBook;
  readonly serial: Serial;
  readonly defaultPrice: bigint | undefined;
  readonly defaultInputPrice: bigint | undefined;
  readonly log: Logger;
};

export function createOfferBook(p: CreateOfferBookParameters): OfferBook {
  return {
    async add({ model, price: askedPrice, inputPrice: askedInputPrice, from = [] }) {
      const asked = { price: askedPrice, inputPrice: askedInputPrice };
      const defaults = { price: p.defaultPrice, inputPrice: p.defaultInputPrice };
      // A missing price is refused before any fetching; the input price's rule needs the manifest.
      if (askedPrice === undefined && p.defaultPrice === undefined)
        throw new GlassboxError('REQUEST_INVALID', NO_PRICE_MESSAGE, { field: 'price' });
      if (!(await getModel(p.chain, model)))
        throw new GlassboxError(
          'MODEL_NOT_FOUND',
          `model ${model} is not registered on chain: register it first (glassbox model push)`,
          { field: 'model', details: { model } },
        );
      const pkg = await fetchPackage(model, { store: p.store, peers: [...from, ...p.peers] });
      const { price, inputPrice } = pricesOf(pkg.manifest.format, asked, defaults);
      // The engine of THIS model (an LLM's is the token engine): its profile is what the receipts name.
      const engine = engineOf(p.engines, pkg);
      if (!(await isRuntimeAdmitted(p.chain, engine.runtimeHash)))
        throw new GlassboxError(
          'PROFILE_MISMATCH',
          `the runtime profile ${engine.runtimeHash} of the engine for format "${pkg.manifest.format}" is not admitted on chain: this node may not serve the model`,
          { field: 'runtime', details: { runtime: engine.runtimeHash } },
        );
      const refused = await modelRefusal(p.chain, pkg);
      if (refused)
        throw new GlassboxError('MODEL_REFUSED', `model ${model} is ${refused}`, {
          field: 'model',
          details: { model },
        });
      await engine.load(pkg);
      const actions = await p.serial(() => ensureOffer(p.chain, { model, price, inputPrice }));
      p.db.saveOffer({ model, price, inputPrice });
      p.models.set(model, pkg);
      p.prices.forget();
      p.log.info(
        { model, price: price.toString(), inputPrice: inputPrice.toString(), actions },
        'model offer added',
      );
      return { pkg, price, inputPrice, actions };
    },

    async remove(model) {
      if (!p.models.has(model))
        throw new GlassboxError('NOT_FOUND', `this node does not serve model ${model}`, { field: 'model' });
      // Stop answering first: a request accepted after the offer is gone would charge no price.
      p.models.delete(model);
      const provider = p.chain.walletClient!.account.address;
      const actions = await p.serial(async (): Promise<ChainAction[]> => {
        if (!(await getOffer(p.chain, { provider, model })).active) return [];
        await removeOffer(p.chain, model);
        return [{ action: 'removeOffer', detail: model }];
      });
      p.db.deleteOffer(model);
      p.prices.forget();
      p.log.info({ model, actions }, 'model offer removed');
      return actions;
    },
  };
}

/** `offerPrices`, its refusal as the admin API's REQUEST_INVALID naming the field. */
function pricesOf(format: ModelFormat, asked: AskedPrices, defaults: AskedPrices): OfferPrices {
  const outcome = offerPrices(format, asked, defaults);
  if (!outcome.ok) throw new GlassboxError('REQUEST_INVALID', outcome.message, { field: outcome.field });
  return outcome.prices;
}

/**
 * The package from the store or the sources, every blob re-hashed. A source that served bytes that
 * do not hash to their CID is named in the message, not only in the log.
 */
async function fetchPackage(
  model: ModelId,
  params: { store: BlobStore; peers: readonly string[] },
): Promise<ModelPackage> {
  try {
    return await resolveModel(model, params);
  } catch (error) {
    if (!isGlassboxError(error, 'BLOB_NOT_FOUND') && !isGlassboxError(error, 'MODEL_NOT_FOUND')) throw error;
    const why = error.metaMessages.length > 0 ? `: ${error.metaMessages.join('; ')}` : '';
    const where =
      params.peers.length === 0 ? ' (it is not in the node store, and no source or peer was given)' : '';
    throw new GlassboxError(error.code, `${error.shortMessage}${where}${why}`, {
      field: 'model',
      details: error.details,
      cause: error,
    });
  }
}

/**
 * Why this node must not offer `pkg`, if it must not: the chain's record says another policy than
 * the manifest (an `exact` flag on a model that is not bit-exact exposes honest providers to
 * equivocation slashing), or the model is deprecated (audit M-2).
 */
export async function modelRefusal(chain: GlassboxClient, pkg: ModelPackage): Promise<string | undefined> {
  const record = await getModel(chain, pkg.id);
  if (!record) return 'not registered on chain';
  if (record.deprecated) return 'deprecated on chain by its registrant';
  const exact = pkg.manifest.policy.kind === 'exact';
  if (record.exact !== exact)
    return `registered on chain as ${record.exact ? 'exact' : 'not exact'} (by ${record.owner}), but its manifest's policy is ${pkg.manifest.policy.kind}`;
  return undefined;
}
