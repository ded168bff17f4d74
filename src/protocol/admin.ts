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
const modelId = z.string().refine(isModelId, 'is not a model id (a CIDv1 raw sha2-256)');
const httpUrl = z.url().refine((u) => /^https?:\/\//i.test(u), 'is not an http(s) URL');

/** Add (or reprice) a model offer: the node fetches, verifies and loads the model, then offers it. */
export const adminOfferRequestSchema = z.strictObject({
  model: modelId,
  /**
   * The price in base units, per inference (tensor model) or per output token (LLM); default: the
   * node's `defaultPrice`.
   */
  price: amount.optional(),
  /**
   * An LLM's price per input (prompt) token in base units; default: the node's `defaultInputPrice`,
   * else 0. A tensor model's must be 0 (or absent): it is priced per inference.
   */
  inputPrice: amount.optional(),
  /**
   * Where to fetch the package's blobs (nodes or servers answering GET /v1/blobs/:cid), before the
   * node's configured peers. Not needed when the model is in the node's store already.
   */
  from: z.array(httpUrl).max(16).optional(),
});

export type AdminOfferRequest = z.input<typeof adminOfferRequestSchema>;

/** A chain transaction the node sent for the request (none when the chain already agreed). */
export const adminChainActionSchema = z.object({ action: z.string(), detail: z.string().optional() });
export type AdminChainAction = z.input<typeof adminChainActionSchema>;

export const adminOfferResponseSchema = z.object({
  model: modelId,
  name: z.string(),
  version: z.string(),
  /** The offered price, decimal base units: per inference, or per output token (LLM). */
  price: amount,
  /** The offered price per input token, decimal base units (`0` for a tensor model). */
  inputPrice: amount,
  actions: z.array(adminChainActionSchema).readonly(),
});
export type AdminOfferResponse = z.input<typeof adminOfferResponseSchema> & { readonly model: ModelId };

export const adminOfferRemovedSchema = z.object({
  model: modelId,
  actions: z.array(adminChainActionSchema).readonly(),
});
export type AdminOfferRemoved = z.input<typeof adminOfferRemovedSchema> & { readonly model: ModelId };

/** DELETE /v1/admin/offers/:model's path parameter. */
export const adminModelParamsSchema = z.strictObject({ model: modelId });
