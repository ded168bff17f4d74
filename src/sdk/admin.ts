import { ADMIN_OFFERS_PATH, type AdminOfferRemoved, type AdminOfferResponse } from '../protocol/admin.js';
import { ErrorCodes, GlassboxError, type ErrorCode } from '../protocol/errors.js';

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
  /** Base units per inference; default: the node's `defaultPrice`. */
  readonly price?: bigint;
  /** Where the node may fetch the package (GET /v1/blobs/:cid), before its peers. */
  readonly from?: readonly string[];
};

/**
 * Makes the node at `url` fetch, verify, load and offer `model`, and serve it at once (and after
 * restarts). Throws the node's error code: ADMIN_UNAUTHORIZED, MODEL_NOT_FOUND (not on chain or
 * nowhere to fetch), BLOB_NOT_FOUND / BLOB_CORRUPT, MODEL_REFUSED, PROFILE_MISMATCH, MODEL_INVALID.
 */
export function offerModel(params: OfferModelParameters): Promise<AdminOfferResponse> {
  return adminRequest<AdminOfferResponse>(params, 'POST', ADMIN_OFFERS_PATH, {
    model: params.model,
    ...(params.price === undefined ? {} : { price: params.price.toString() }),
    ...(params.from === undefined ? {} : { from: [...params.from] }),
  });
}

/** Makes the node at `url` withdraw its offer of `model` on chain and stop serving it. */
export function withdrawModel(
  params: AdminParameters & { readonly model: string },
): Promise<AdminOfferRemoved> {
  return adminRequest<AdminOfferRemoved>(
    params,
    'DELETE',
    `${ADMIN_OFFERS_PATH}/${encodeURIComponent(params.model)}`,
  );
}

async function adminRequest<T>(
  params: AdminParameters,
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const url = `${params.url.replace(/\/+$/, '')}${path}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${params.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      // Fetching, hashing and loading a large model takes a while.
      signal: AbortSignal.timeout(params.timeoutMs ?? 300_000),
    });
  } catch (cause) {
    throw new GlassboxError('PROVIDER_UNAVAILABLE', `${url}: ${(cause as Error).message}`, { cause });
  }
  const json = (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined;
  if (response.ok && json) return json as T;
  const code =
    typeof json?.code === 'string' && json.code in ErrorCodes ? (json.code as ErrorCode) : 'PROVIDER_ERROR';
  const message = typeof json?.message === 'string' ? json.message.slice(0, 1000) : `HTTP ${response.status}`;
  throw new GlassboxError(code, `${params.url}: ${message}`, {
    ...(typeof json?.field === 'string' ? { field: json.field } : {}),
    details: { status: response.status, url },
  });
}
