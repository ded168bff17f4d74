import { readFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import {
  defaultPolicy,
  fileCid,
  GlassboxError,
  isGlassboxError,
  isModelId,
  manifestBytes,
  manifestFromBytes,
  MANIFEST_SCHEMA,
  modelIdOf,
  parseManifest,
  type ComparisonPolicy,
  type ModelFile,
  type ModelId,
  type ModelManifest,
  type ModelPackage,
  type TensorSpec,
} from '../protocol/index.js';
import type { BlobStore } from './blob-store.js';
import { readOnnxSchema } from './onnx-schema.js';

/** A file of a package: its path inside the package (relative, `/`-separated) and its bytes. */
export type PackFile = { readonly path: string; readonly bytes: Uint8Array };

export type BuildManifestParameters = {
  /** The ONNX file the runtime loads; its graph gives the input and output schema. */
  readonly entry: PackFile;
  /** Companion files (external weights, vocabularies), at the paths the entry expects them. */
  readonly extraFiles?: readonly PackFile[];
  readonly name: string;
  readonly version: string;
  readonly policy: ComparisonPolicy;
  readonly description?: string;
  readonly license?: string;
  /** Class names by output name, indexed like that output's last axis. */
  readonly labels?: Readonly<Record<string, readonly string[]>>;
  /** The model id of the version this one supersedes. */
  readonly previous?: ModelId | string;
};

export type PackModelParameters = BuildManifestParameters;
export type PackModelReturnType = { readonly id: ModelId; readonly manifest: ModelManifest };

/**
 * The manifest a package of these files would have, without storing anything: file CIDs and sizes,
 * the schema read from the entry's ONNX graph, labels attached to their outputs, all validated.
 * Throws MODEL_INVALID (the entry is not a usable ONNX model), MANIFEST_INVALID (naming the field)
 * or CID_INVALID (`previous` is not a model id).
 */
export async function buildManifest(params: BuildManifestParameters): Promise<ModelManifest> {
  const { inputs, outputs } = readOnnxSchema(params.entry.bytes);
  if (params.previous !== undefined && !isModelId(params.previous))
    throw new GlassboxError('CID_INVALID', `previous is not a model id: ${JSON.stringify(params.previous)}`, {
      field: 'previous',
    });
  const files: ModelFile[] = [];
  for (const file of [params.entry, ...(params.extraFiles ?? [])])
    files.push({ path: file.path, cid: await fileCid(file.bytes), size: file.bytes.length });
  // Sorted by path, so that the order extra files are named in does not change the model id.
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return parseManifest({
    schema: MANIFEST_SCHEMA,
    name: params.name,
    version: params.version,
    format: 'onnx',
    entry: params.entry.path,
    files,
    inputs,
    outputs: withLabels(outputs, params.labels ?? {}),
    policy: params.policy,
    description: params.description ?? '',
    license: params.license ?? '',
    ...(params.previous === undefined ? {} : { previous: params.previous }),
  });
}

/**
 * Packs a model into `store`: every file as a blob, then the manifest's canonical JSON as a blob
 * whose CID is the model id. The manifest goes last, so a stored manifest always has its files.
 * Packing the same files with the same parameters always gives the same id; packing again is a
 * no-op.
 */
export async function packModel(store: BlobStore, params: PackModelParameters): Promise<PackModelReturnType> {
  const manifest = await buildManifest(params);
  for (const file of [params.entry, ...(params.extraFiles ?? [])]) await store.put(file.bytes);
  const id = modelIdOf(manifest);
  const stored = await store.put(manifestBytes(manifest));
  // A manifest is at most one block, so its UnixFS CID is the raw CID that is the model id.
  if (stored !== id) throw new Error(`bug: manifest stored as ${stored}, but the model id is ${id}`);
  return { id, manifest };
}

export type PackModelFileParameters = Partial<Omit<PackModelParameters, 'entry' | 'extraFiles'>> & {
  /** Paths on disk of companion files; each is stored at its path relative to the entry's folder. */
  readonly extraFiles?: readonly string[];
};

/**
 * Packs the .onnx file at `path` (and `extraFiles`, relative to its folder) into `store`. Defaults:
 * name = the file name without `.onnx`, version '1', policy `defaultPolicy` of its outputs (a float
 * model gets a tolerance, not `exact`). A missing file is MODEL_NOT_FOUND.
 */
export async function packModelFile(
  store: BlobStore,
  path: string,
  params: PackModelFileParameters = {},
): Promise<PackModelReturnType> {
  const folder = dirname(resolve(path));
  const entry = { path: basename(path), bytes: await readModelFile(path) };
  const extraFiles: PackFile[] = [];
  for (const extra of params.extraFiles ?? []) {
    const inside = relative(folder, resolve(extra));
    if (inside === '' || inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside))
      throw new GlassboxError(
        'MANIFEST_INVALID',
        `extra file ${extra} is not inside the model's folder ${folder}`,
        { field: 'extraFiles' },
      );
    extraFiles.push({ path: inside.split(sep).join('/'), bytes: await readModelFile(extra) });
  }
  return packModel(store, {
    ...params,
    entry,
    extraFiles,
    name: params.name ?? basename(path).replace(/\.onnx$/i, ''),
    version: params.version ?? '1',
    policy: params.policy ?? defaultPolicy(readOnnxSchema(entry.bytes).outputs),
  });
}

/**
 * The manifest of model `id`, refused unless its bytes hash to `id`. Throws CID_INVALID (not a model
 * id), MODEL_NOT_FOUND (not in the store), BLOB_CORRUPT or MANIFEST_INVALID.
 */
export async function readManifest(store: BlobStore, id: ModelId | string): Promise<ModelManifest> {
  if (!isModelId(id))
    throw new GlassboxError('CID_INVALID', `not a model id (a CIDv1 raw sha2-256): ${JSON.stringify(id)}`, {
      field: 'model id',
    });
  let bytes: Uint8Array;
  try {
    bytes = await store.get(id);
  } catch (error) {
    if (isGlassboxError(error, 'BLOB_NOT_FOUND'))
      throw new GlassboxError('MODEL_NOT_FOUND', `model ${id} is not in the store`, {
        details: { model: id },
        cause: error,
      });
    throw error;
  }
  // The store re-hashed already; manifestFromBytes checks again against the id itself.
  return manifestFromBytes(bytes, id as ModelId);
}

/**
 * Model `id` with all its files, each read from the store and checked against the CID and size its
 * manifest gives. A failure names the file: `model <id>: file "model.onnx" (<cid>): …`.
 */
export async function loadModel(store: BlobStore, id: ModelId | string): Promise<ModelPackage> {
  const manifest = await readManifest(store, id);
  const files = new Map<string, Uint8Array>();
  for (const [index, file] of manifest.files.entries()) {
    const prefix = `model ${id}: file "${file.path}" (${file.cid})`;
    const details = { model: id, path: file.path, cid: file.cid };
    let bytes: Uint8Array;
    try {
      bytes = await store.get(file.cid);
    } catch (error) {
      if (!isGlassboxError(error)) throw error;
      throw new GlassboxError(error.code, `${prefix}: ${error.shortMessage}`, {
        field: `manifest.files.${index}`,
        metaMessages: error.metaMessages,
        details: { ...error.details, ...details },
        cause: error,
      });
    }
    // The CID already pins the content; a size that disagrees means the manifest itself is wrong.
    if (bytes.length !== file.size)
      throw new GlassboxError(
        'MANIFEST_INVALID',
        `${prefix}: is ${bytes.length} bytes, but the manifest says ${file.size}`,
        { field: `manifest.files.${index}.size`, details },
      );
    files.set(file.path, bytes);
  }
  return { id: id as ModelId, manifest, files };
}

/** Attaches labels to the outputs they name; they must fit the output's last axis. */
function withLabels(
  outputs: TensorSpec[],
  labels: Readonly<Record<string, readonly string[]>>,
): TensorSpec[] {
  for (const [name, list] of Object.entries(labels)) {
    const output = outputs.find((o) => o.name === name);
    if (output === undefined)
      throw new GlassboxError('MANIFEST_INVALID', `labels.${name}: the model has no output "${name}"`, {
        field: `labels.${name}`,
        metaMessages: [`outputs: ${outputs.map((o) => o.name).join(', ')}`],
      });
    const last = output.shape.at(-1);
    if (last === undefined)
      throw new GlassboxError('MANIFEST_INVALID', `labels.${name}: output "${name}" is a scalar`, {
        field: `labels.${name}`,
      });
    if (typeof last === 'number' && last !== list.length)
      throw new GlassboxError(
        'MANIFEST_INVALID',
        `labels.${name}: ${list.length} labels for an output whose last axis has ${last} entries`,
        { field: `labels.${name}` },
      );
  }
  return outputs.map((o) => (Object.hasOwn(labels, o.name) ? { ...o, labels: [...labels[o.name]!] } : o));
}

async function readModelFile(path: string): Promise<Uint8Array> {
  try {
    const buffer = await readFile(path);
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT')
      throw new GlassboxError('MODEL_NOT_FOUND', `no file at ${path}`, { field: 'path', cause: error });
    throw error;
  }
}
