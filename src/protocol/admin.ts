import { z } from 'zod';
import { isModelId, type ModelId } from './manifest.js';

/*
 * A provider node's admin API (docs/node.md, "Admin API"): what its operator, and no one else, may
 * ask of a running node. Every request carries `authorization: Bearer <token>`, the node's admin
 * token; without it, or with another, the answer is 401 ADMIN_UNAUTHORIZED.
 *
 *   POST   /v1/admin/offers         AdminOfferRequest -> AdminOfferResponse
 *   DELETE /v1/admin/offers/:model  -> AdminOfferRemoved
 *
 * Declared here, beside the provider API's other wire shapes, because both sides use them: the
 * node's route (src/node/routes/admin.ts) validates with them, the SDK (src/sdk/admin.ts) sends them.
 */

export const ADMIN_OFFERS_PATH = '/v1/admin/offers';

const amount = z.string().regex(/^\d{1,78}$/, 'is not a decimal amount of base units');
const httpUrl = z.url().refine((u) => /^https?:\/\//i.test(u), 'is not an http(s) URL');

/** Add (or reprice) a model offer: the node fetches, verifies and loads the model, then offers it. */
export const adminOfferRequestSchema = z.strictObject({
  model: z.string().refine(isModelId, 'is not a model id (a CIDv1 raw sha2-256)'),
  /** The price per inference in base units; default: the node's `defaultPrice`. */
  price: amount.optional(),
  /**
   * Where to fetch the package's blobs (nodes or servers answering GET /v1/blobs/:cid), before the
   * node's configured peers. Not needed when the model is in the node's store already.
   */
  from: z.array(httpUrl).max(16).optional(),
});

export type AdminOfferRequest = z.input<typeof adminOfferRequestSchema>;

/** A chain transaction the node sent for the request (none when the chain already agreed). */
export type AdminChainAction = { readonly action: string; readonly detail?: string };

export type AdminOfferResponse = {
  readonly model: ModelId;
  readonly name: string;
  readonly version: string;
  /** The offered price, decimal base units. */
  readonly price: string;
  readonly actions: readonly AdminChainAction[];
};

export type AdminOfferRemoved = { readonly model: ModelId; readonly actions: readonly AdminChainAction[] };
