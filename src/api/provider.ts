import type { Address, Hex } from 'viem';
import type { z } from 'zod';
import { BINARY_TYPE, type BatchPage, type evidenceResponseSchema } from '../protocol/api.js';
import { DEFAULT_MAX_RESPONSE_BYTES } from '../protocol/body.js';
import { call, fetchJson, readBytes, send, type ApiTarget } from './client.js';
import { routes } from './routes.js';

/*
 * What the node's verifier and committee member read from other nodes, as a small interface over
 * the typed client: the roles depend on this, not on HTTP, and every answer is parsed with its
 * route's schema, so a provider serving garbage fails here with PROVIDER_ERROR naming the field,
 * which the roles treat exactly like an answer not served.
 */

export type ProviderApi = {
  /** One page of a committed batch's listing, from `offset` (GET /v1/batches/:root). */
  getBatchPage(root: Hex, offset: number): Promise<BatchPage>;
  /** A blob's bytes, at most `maxBytes` (GET /v1/blobs/:cid); the caller hashes them. */
  getBlob(cid: string, maxBytes: number): Promise<Uint8Array>;
};

export type ProviderApiOptions = {
  /** The provider expected at the endpoint, when known: another one answering is refused. */
  readonly provider?: Address;
  /** Per request; default 5 s. */
  readonly timeoutMs?: number;
  readonly fetch?: typeof fetch;
};

/** The API of the node at `endpoint`. */
export function providerApi(endpoint: string, options: ProviderApiOptions = {}): ProviderApi {
  const target: ApiTarget = {
    endpoint,
    name: options.provider ? `provider ${options.provider}` : endpoint,
    ...(options.provider ? { provider: options.provider } : {}),
    timeoutMs: options.timeoutMs ?? 5_000,
    maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  };
  return {
    getBatchPage: (root, offset) => call(target, routes.batch, { params: { root }, query: { offset } }),
    getBlob: async (cid, maxBytes) =>
      readBytes(target, await send(target, routes.blob, { params: { cid } }, { accept: BINARY_TYPE }), {
        maxBytes,
      }),
  };
}

/**
 * A challenger's evidence for its committee, at the URI it chose when it opened the challenge
 * (its GET /v1/evidence/:hash, or any URI: the caller admits only http(s) and data:): no
 * redirects, a byte cap, a time limit, the answer parsed with the evidence route's schema.
 */
export async function getEvidence(
  uri: string,
  options: { readonly timeoutMs?: number } = {},
): Promise<z.output<typeof evidenceResponseSchema>> {
  const target: ApiTarget = {
    endpoint: uri,
    name: 'the challenger',
    timeoutMs: options.timeoutMs ?? 5_000,
    maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES,
  };
  return fetchJson(target, uri, routes.evidence.response);
}
