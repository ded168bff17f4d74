import { listProviders } from '../chain/providers.js';
import { GlassboxError, isGlassboxError } from '../protocol/errors.js';
import { isModelId, type LlmManifest } from '../protocol/manifest.js';
import type { Client } from './client.js';
import { discoverProviders, type ProviderCandidate } from './discovery.js';
import { getManifest } from './manifests.js';
import { getProviderModels } from './verify.js';

/*
 * Which LLM models the network offers, and which one a name means. The chain knows models by id
 * only, so names come from what providers list (their /v1/models) and are believed only as far as
 * the manifest says: a listed id counts once its manifest, fetched and hashed to that id, is an
 * llm one, and its name is the manifest's. A provider that lists a model it has no active offer
 * for on chain adds nothing.
 */

export type LlmOffer = {
  readonly id: string;
  readonly manifest: LlmManifest;
  /** The active providers with an active offer for it. */
  readonly candidates: readonly ProviderCandidate[];
};

/** How long a provider's /v1/models may take before it is left out of a listing. */
const LISTING_TIMEOUT_MS = 5_000;

/** Every LLM model with at least one active offer, by id. */
export async function llmOffers(client: Client): Promise<LlmOffer[]> {
  const providers = (await listProviders(client.chain)).filter((p) => p.active);
  const listed = await Promise.all(
    providers.map((p) =>
      getProviderModels(
        client,
        { address: p.address, endpoint: p.endpoint },
        { timeoutMs: LISTING_TIMEOUT_MS },
      )
        .then((m) => m.raw.models)
        .catch(() => []),
    ),
  );
  // A token-margin policy is what an llm manifest has; the manifest itself decides below.
  const ids = new Set<string>();
  for (const models of listed)
    for (const m of models)
      if (isModelId(m.id) && (m.policy as { kind?: unknown } | null)?.kind === 'token-margin') ids.add(m.id);
  const offers = await Promise.all([...ids].map((id) => llmOffer(client, id).catch(() => undefined)));
  return offers.filter((o): o is LlmOffer => o !== undefined);
}

/** The model `id` as an LLM on offer; undefined when nobody offers it or it is not an LLM. */
async function llmOffer(client: Client, id: string): Promise<LlmOffer | undefined> {
  const candidates = (await discoverProviders(client, { model: id })).filter((c) => c.active);
  if (candidates.length === 0) return undefined;
  const manifest = await getManifest(client, id, candidates);
  if (manifest.format !== 'llm') return undefined;
  return { id, manifest, candidates };
}

/**
 * The LLM a request's `model` names: an id (CID) as is, else the one model on offer whose manifest
 * has that name. MODEL_NOT_FOUND (field `model`) when none is, or the id is not an LLM;
 * REQUEST_INVALID when several are (ask by id).
 */
export async function resolveLlmModel(client: Client, model: string): Promise<LlmOffer> {
  if (isModelId(model)) {
    const candidates = await discoverProviders(client, { model });
    const active = candidates.filter((c) => c.active);
    if (active.length === 0)
      throw new GlassboxError('MODEL_NOT_FOUND', `no active provider offers model ${model}`, {
        field: 'model',
        details: { model },
      });
    let manifest;
    try {
      manifest = await getManifest(client, model, active);
    } catch (error) {
      if (isGlassboxError(error, 'MODEL_NOT_FOUND'))
        throw new GlassboxError('MODEL_NOT_FOUND', error.shortMessage, {
          field: 'model',
          details: { model },
        });
      throw error;
    }
    if (manifest.format !== 'llm')
      throw new GlassboxError(
        'REQUEST_INVALID',
        `model ${model} is a ${manifest.format} model, not an LLM: run it with infer (POST /v1/infer)`,
        { field: 'model', details: { model } },
      );
    return { id: model, manifest, candidates };
  }
  const named = (await llmOffers(client)).filter((o) => o.manifest.name === model);
  if (named.length === 1) return named[0]!;
  if (named.length > 1)
    throw new GlassboxError(
      'REQUEST_INVALID',
      `${named.length} models on offer are named "${model}": ask for one by its id (${named.map((o) => o.id).join(', ')})`,
      { field: 'model', details: { ids: named.map((o) => o.id) } },
    );
  throw new GlassboxError('MODEL_NOT_FOUND', `no LLM named or with id "${model}" is on offer`, {
    field: 'model',
    details: { model },
  });
}

/** The cheapest of the offers (by output price, then input price). */
export function cheapest(candidates: readonly ProviderCandidate[]): ProviderCandidate {
  return candidates.reduce((a, b) =>
    b.price < a.price || (b.price === a.price && b.inputPrice < a.inputPrice) ? b : a,
  );
}
