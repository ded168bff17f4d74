import { verifyBlob } from '../store/blob-store.js';
import { readManifest } from '../store/package.js';
import { GlassboxError, isGlassboxError } from '../protocol/errors.js';
import {
  manifestFromBytes,
  MAX_MANIFEST_BYTES,
  type ModelId,
  type ModelManifest,
  type ModelPackage,
} from '../protocol/manifest.js';
import type { Client } from './client.js';
import { getBlob, type ProviderRef } from './transport.js';

/**
 * A model's manifest: from the client's store if it has it, else from the providers' /v1/blobs
 * (the manifest is the blob named by the model id), refused unless its bytes hash to the id.
 */
export function getManifest(
  client: Client,
  model: string,
  providers: readonly ProviderRef[],
): Promise<ModelManifest> {
  const cached = client.state.manifests.get(model);
  if (cached) return cached;
  const value = fetchManifest(client, model, providers);
  client.state.manifests.set(model, value);
  value.catch(() => {
    if (client.state.manifests.get(model) === value) client.state.manifests.delete(model);
  });
  return value;
}

async function fetchManifest(
  client: Client,
  model: string,
  providers: readonly ProviderRef[],
): Promise<ModelManifest> {
  const problems: string[] = [];
  if (client.store) {
    try {
      return await readManifest(client.store, model);
    } catch (error) {
      if (!isGlassboxError(error, 'MODEL_NOT_FOUND')) throw error;
    }
  }
  for (const provider of providers) {
    try {
      const bytes = await getBlob(client, provider, model, { maxBytes: MAX_MANIFEST_BYTES, timeoutMs: 5000 });
      return manifestFromBytes(bytes, model as ModelId);
    } catch (error) {
      problems.push(`${provider.address}: ${isGlassboxError(error) ? error.shortMessage : String(error)}`);
    }
  }
  throw new GlassboxError('MODEL_NOT_FOUND', `the manifest of model ${model} could not be found`, {
    metaMessages: [
      client.store ? 'it is not in the client store' : 'the client has no store',
      ...problems.map((p) => `from ${p}`),
    ],
    details: { model },
  });
}

/** The model with its files (for local re-execution): from the store, else from `provider`'s blobs. */
export async function getPackage(
  client: Client,
  model: string,
  manifest: ModelManifest,
  provider: ProviderRef,
): Promise<ModelPackage> {
  const files = new Map<string, Uint8Array>();
  for (const file of manifest.files) {
    let bytes: Uint8Array | undefined;
    if (client.store && (await client.store.has(file.cid))) bytes = await client.store.get(file.cid);
    if (!bytes) {
      // the manifest (hashed to the model id) names the file's size: no more is read
      bytes = await getBlob(client, provider, file.cid, { maxBytes: file.size });
      await verifyBlob(file.cid, bytes, `${provider.endpoint}/v1/blobs/${file.cid}`);
      if (client.store) await client.store.put(bytes);
    }
    files.set(file.path, bytes);
  }
  return { id: model as ModelId, manifest, files };
}
