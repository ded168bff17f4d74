import { call, type ApiTarget } from '../api/client.js';
import { routes } from '../api/routes.js';
import type { AdminOfferRemoved, AdminOfferResponse } from '../protocol/admin.js';
import { DEFAULT_MAX_RESPONSE_BYTES } from '../protocol/body.js';
import type { ModelId } from '../protocol/manifest.js';

/*
 * The operator's side of a node's admin API (src/protocol/admin.ts): add or remove a model offer on
 * a running node. Needs no chain client: the node acts on chain with its own key.
 */

export type AdminParameters = {
  /** The node's base URL. */
  readonly url: string;
  /** The node's admin token. */
  readonly token: string;
  readonly timeoutMs?: number;
};

export type OfferModelParameters = AdminParameters & {
  readonly model: string;
  /** Base units per inference, or per output token (LLM); default: the node's `defaultPrice`. */
  readonly price?: bigint;
  /** An LLM's base units per input token; default: the node's `defaultInputPrice`, else 0. */
  readonly inputPrice?: bigint;
  /** Where the node may fetch the package (GET /v1/blobs/:cid), before its peers. */
  readonly from?: readonly string[];
};

/**
 * Makes the node at `url` fetch, verify, load and offer `model`, and serve it at once (and after
 * restarts). Throws the node's error code: ADMIN_UNAUTHORIZED, MODEL_NOT_FOUND (not on chain or
 * nowhere to fetch), BLOB_NOT_FOUND / BLOB_CORRUPT, MODEL_REFUSED, PROFILE_MISMATCH, MODEL_INVALID.
 */
export async function offerModel(params: OfferModelParameters): Promise<AdminOfferResponse> {
  const answer = await call(node(params), routes.offerModel, {
    body: {
      model: params.model,
      ...(params.price === undefined ? {} : { price: params.price.toString() }),
      ...(params.inputPrice === undefined ? {} : { inputPrice: params.inputPrice.toString() }),
      ...(params.from === undefined ? {} : { from: [...params.from] }),
    },
  });
  return { ...answer, model: answer.model as ModelId };
}

/** Makes the node at `url` withdraw its offer of `model` on chain and stop serving it. */
export async function withdrawModel(
  params: AdminParameters & { readonly model: string },
): Promise<AdminOfferRemoved> {
  const answer = await call(node(params), routes.withdrawModel, { params: { model: params.model } });
  return { ...answer, model: answer.model as ModelId };
}

function node(params: AdminParameters): ApiTarget {
  return {
    endpoint: params.url,
    name: params.url,
    // Fetching, hashing and loading a large model takes a while.
    timeoutMs: params.timeoutMs ?? 300_000,
    maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES,
    headers: { authorization: `Bearer ${params.token}` },
  };
}
