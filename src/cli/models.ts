import { stat } from 'node:fs/promises';
import { isModelId, type ModelId, type ModelManifest, type ModelPackage } from '../protocol/manifest.js';
import {
  createFsStore,
  createMemoryStore,
  loadModel,
  packModelFile,
  packModelFolder,
  readManifest,
  type BlobStore,
  type PackModelFileParameters,
} from '../store/index.js';

export function openStore(dir: string): BlobStore {
  return createFsStore(dir);
}

/** Packs a path: a folder (model.onnx + model.json, or an LLM's Hugging Face ONNX folder) or an .onnx file, with flags overriding. */
export async function packFromPath(store: BlobStore, path: string, overrides: PackModelFileParameters) {
  const info = await stat(path).catch(() => undefined);
  return info?.isDirectory()
    ? packModelFolder(store, path, overrides)
    : packModelFile(store, path, overrides);
}

/**
 * The model a command names: an id already in the store, or a file or folder, which is packed into
 * the store first so that what runs is exactly what the id names.
 */
export async function resolvePackage(store: BlobStore, ref: string): Promise<ModelPackage> {
  const id = isModelId(ref) ? (ref as ModelId) : (await packFromPath(store, ref, {})).id;
  return loadModel(store, id);
}

/** A model's manifest by id from the store, or computed for a file or folder without storing it. */
export async function resolveManifest(
  store: BlobStore,
  ref: string,
): Promise<{ id: ModelId; manifest: ModelManifest }> {
  if (isModelId(ref)) return { id: ref as ModelId, manifest: await readManifest(store, ref) };
  return packFromPath(createMemoryStore(), ref, {});
}

export function describeDims(shape: readonly (number | string)[]): string {
  return shape.join(',');
}

/** Copies model `id` (manifest last, so a stored manifest always has its files) into `to`. */
export async function copyPackage(from: BlobStore, to: BlobStore, id: ModelId): Promise<void> {
  const pkg = await loadModel(from, id);
  for (const bytes of pkg.files.values()) await to.put(bytes);
  await to.put(await from.get(id));
}
