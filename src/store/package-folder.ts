import { join } from 'node:path';
import { z } from 'zod';
import { GlassboxError, policySchema } from '../protocol/index.js';
import type { BlobStore } from './blob-store.js';

export { MODEL_FOLDER_OPTIONS } from './folder-options.js';
import { MODEL_FOLDER_OPTIONS, readFolderOptions } from './folder-options.js';
import { isLlmFolder, packLlmFolder } from './llm-folder.js';
import { packModelFile, type PackModelFileParameters, type PackModelReturnType } from './package.js';

/** A model folder: `model.onnx`, and its pack options in `model.json`. */
export const MODEL_FOLDER_ENTRY = 'model.onnx';

const folderOptionsSchema = z.strictObject({
  name: z.string().min(1).optional(),
  version: z.string().min(1).optional(),
  description: z.string().optional(),
  license: z.string().optional(),
  policy: policySchema.optional(),
  labels: z.record(z.string(), z.array(z.string())).optional(),
  /** Companion files, relative to the folder. */
  extraFiles: z.array(z.string()).optional(),
  previous: z.string().optional(),
});

/**
 * Packs a model folder; `overrides` (e.g. command-line flags) win over `model.json`. A folder
 * without `model.json` packs `model.onnx` with the defaults of `packModelFile`. A decoder LLM in the
 * Hugging Face ONNX layout (config.json and onnx/model.onnx) is packed as format `llm`
 * (llm-folder.ts), so one command packs a sample model and a real export alike.
 */
export async function packModelFolder(
  store: BlobStore,
  dir: string,
  overrides: PackModelFileParameters = {},
): Promise<PackModelReturnType> {
  if (await isLlmFolder(dir)) {
    const { labels, extraFiles, ...rest } = overrides;
    for (const [field, value] of Object.entries({ labels, extraFiles }))
      if (value !== undefined)
        throw new GlassboxError('MANIFEST_INVALID', `${field} do not apply to an LLM folder (${dir})`, {
          field,
        });
    return packLlmFolder(store, dir, rest);
  }
  const options = await readFolderOptions(join(dir, MODEL_FOLDER_OPTIONS), folderOptionsSchema);
  return packModelFile(store, join(dir, MODEL_FOLDER_ENTRY), {
    ...options,
    ...(options.extraFiles ? { extraFiles: options.extraFiles.map((f) => join(dir, f)) } : {}),
    ...overrides,
  });
}
