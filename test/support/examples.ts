import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_OUT_DIR, type ExampleModelName, type LlmExampleName } from '../../examples/models/build.mjs';
import { inputsFromJson } from '../../src/protocol/inputs.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import type { TensorMap } from '../../src/protocol/tensor.js';
import { defaultEngines, type TensorEngine } from '../../src/runtime/index.js';
import { createMemoryStore, loadModel, packModelFolder } from '../../src/store/index.js';

export const EXAMPLES: readonly ExampleModelName[] = ['iris', 'iris-int8', 'cnn'];

/** The engine of the example models' format (all ONNX), from this build's registry. */
export function exampleEngine(): TensorEngine {
  return defaultEngines().for({ manifest: { format: 'onnx' } });
}

export function exampleDir(name: ExampleModelName): string {
  return join(DEFAULT_OUT_DIR, name);
}

/** An example model packed the way `glassbox model pack` packs it (built by test/setup/models.ts). */
export async function examplePackage(name: ExampleModelName): Promise<ModelPackage> {
  const store = createMemoryStore();
  const { id } = await packModelFolder(store, exampleDir(name));
  return loadModel(store, id);
}

export function exampleSamples(pkg: ModelPackage, name: ExampleModelName): TensorMap {
  return inputsFromJson(
    pkg.manifest.inputs,
    JSON.parse(readFileSync(join(exampleDir(name), 'samples.json'), 'utf8')),
  );
}

export const LLM_EXAMPLES: readonly LlmExampleName[] = [
  'tiny-chat',
  'tiny-chat-other',
  'tiny-chat-int8',
  'tiny-chat-perturbed',
];

/**
 * An LLM example (tiny-chat, or an impostor of it): its Hugging Face folder, and the package
 * `glassbox model pack <dir>` makes of it (format llm), loaded with its files.
 */
export async function llmExample(name: LlmExampleName): Promise<{ dir: string; pkg: ModelPackage }> {
  const dir = join(DEFAULT_OUT_DIR, name);
  const store = createMemoryStore();
  const { id } = await packModelFolder(store, dir);
  return { dir, pkg: await loadModel(store, id) };
}
