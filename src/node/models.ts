import { stat } from 'node:fs/promises';
import { providerApi } from '../api/provider.js';
import { GlassboxError, isGlassboxError } from '../protocol/errors.js';
import {
  manifestFromBytes,
  MAX_MANIFEST_BYTES,
  type ModelId,
  type ModelPackage,
} from '../protocol/manifest.js';
import type { AnyEngine } from '../runtime/engine.js';
import type { Engines } from '../runtime/registry.js';
import { blobCid, loadModel, packModelFolder, verifyBlob, type BlobStore } from '../store/index.js';

/*
 * The models a node serves, by id. A config entry is a model id (looked up in the node's store,
 * then at each peer's GET /v1/blobs/:cid) or a model folder (packed into the store). Every blob
 * fetched from a peer is read up to the size it must have (a manifest's cap, the size its manifest
 * names for a file) and hashed before it is stored, and `loadModel` re-hashes every read.
 */

export type ResolveModelParameters = {
  readonly store: BlobStore;
  readonly peers: readonly string[];
  readonly timeoutMs?: number;
};

export async function resolveModel(ref: string, params: ResolveModelParameters): Promise<ModelPackage> {
  if (await isDirectory(ref)) {
    const { id } = await packModelFolder(params.store, ref);
    return loadModel(params.store, id);
  }
  try {
    return await loadModel(params.store, ref);
  } catch (error) {
    if (!isGlassboxError(error, 'MODEL_NOT_FOUND') && !isGlassboxError(error, 'BLOB_NOT_FOUND')) throw error;
    if (params.peers.length === 0) throw error;
  }
  await fetchModelFromPeers(ref as ModelId, params);
  return loadModel(params.store, ref);
}

/** Copies model `id` (manifest and files) from the first peer that has each blob. */
export async function fetchModelFromPeers(id: ModelId, params: ResolveModelParameters): Promise<void> {
  const manifestBytes = await fetchBlob(id, MAX_MANIFEST_BYTES, params);
  const manifest = manifestFromBytes(manifestBytes, id);
  await params.store.put(manifestBytes);
  for (const file of manifest.files) {
    if (await params.store.has(file.cid)) continue;
    await params.store.put(await fetchBlob(file.cid, file.size, params));
  }
}

/** One blob, at most `maxBytes`, from the first peer that serves it intact. */
async function fetchBlob(cid: string, maxBytes: number, params: ResolveModelParameters): Promise<Uint8Array> {
  const canonical = blobCid(cid);
  const failures: string[] = [];
  for (const peer of params.peers) {
    try {
      const bytes = await providerApi(peer, { timeoutMs: params.timeoutMs ?? 30_000 }).getBlob(
        canonical,
        maxBytes,
      );
      await verifyBlob(canonical, bytes, `${peer} /v1/blobs/${canonical}`);
      return bytes;
    } catch (error) {
      failures.push(`${peer}: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
    }
  }
  throw new GlassboxError('BLOB_NOT_FOUND', `no peer served blob ${canonical} intact`, {
    metaMessages: failures,
    details: { cid: canonical, peers: params.peers },
  });
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The engine that serves `pkg`: the token engine for an LLM (answered on the OpenAI routes), the
 * tensor engine of its format otherwise (/v1/infer). Its runtime is what the model's receipts name,
 * so it is that engine's profile that must be admitted on chain for the model to be served.
 */
export function engineOf(engines: Engines, pkg: ModelPackage): AnyEngine {
  return pkg.manifest.format === 'llm' ? engines.tokens(pkg) : engines.for(pkg);
}
