import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { DEFAULT_OUT_DIR } from '../../examples/models/build.mjs';
import { fileCid } from '../../src/protocol/cid.js';
import {
  MANIFEST_SCHEMA,
  modelIdOf,
  parseManifest,
  type ModelFile,
  type ModelPackage,
} from '../../src/protocol/manifest.js';
import { readOnnxSchema } from '../../src/store/onnx-schema.js';

/*
 * The LLM sample models (examples/models/llm, built into examples/models/build/ by `npm run models`)
 * as packages. The manifest is built here from the Hugging Face folder, the way the folder packer of
 * src/store does, so the engine's tests do not wait on it.
 */

export type LlmExampleName = 'tiny-chat' | 'tiny-chat-other' | 'tiny-chat-int8' | 'tiny-chat-perturbed';

function filesOf(dir: string): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const walk = (at: string) => {
    for (const name of readdirSync(at)) {
      const path = join(at, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name !== 'model.json') files.set(relative(dir, path).split(sep).join('/'), readFileSync(path));
    }
  };
  walk(dir);
  return files;
}

const json = (bytes: Uint8Array | undefined): Record<string, unknown> =>
  JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;

const ids = (value: unknown): number[] =>
  value === undefined ? [] : Array.isArray(value) ? (value as number[]) : [value as number];

/** The package of an LLM folder in the Hugging Face ONNX layout, with `model.json`'s options. */
export async function llmFolderPackage(
  dir: string,
  overrides: { readonly policy?: unknown; readonly contextLength?: number } = {},
): Promise<ModelPackage> {
  const files = filesOf(dir);
  const options = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as Record<string, unknown>;
  const config = json(files.get('config.json'));
  const generation = files.has('generation_config.json') ? json(files.get('generation_config.json')) : {};
  const entry = 'onnx/model.onnx';
  const { inputs, outputs } = readOnnxSchema(files.get(entry)!);
  const listed: ModelFile[] = [];
  for (const [path, bytes] of files) listed.push({ path, cid: await fileCid(bytes), size: bytes.length });
  listed.sort((a, b) => (a.path < b.path ? -1 : 1));
  const manifest = parseManifest({
    schema: MANIFEST_SCHEMA,
    name: options['name'],
    version: options['version'],
    format: 'llm',
    entry,
    files: listed,
    inputs,
    outputs,
    policy: overrides.policy ?? options['policy'],
    description: options['description'] ?? '',
    license: options['license'] ?? '',
    llm: {
      tokenizer: 'tokenizer.json',
      tokenizerConfig: 'tokenizer_config.json',
      config: 'config.json',
      ...(files.has('generation_config.json') ? { generationConfig: 'generation_config.json' } : {}),
      chatTemplate: 'tokenizer_config.json',
      contextLength: overrides.contextLength ?? config['max_position_embeddings'],
      eosTokenIds: [...new Set([...ids(config['eos_token_id']), ...ids(generation['eos_token_id'])])],
      vocabSize: config['vocab_size'],
    },
  });
  return { id: modelIdOf(manifest), manifest, files };
}

export function llmExampleDir(name: LlmExampleName): string {
  return join(DEFAULT_OUT_DIR, name);
}

const cache = new Map<string, Promise<ModelPackage>>();

/** A sample LLM as a package (cached per test file). */
export function llmExample(name: LlmExampleName): Promise<ModelPackage> {
  let pkg = cache.get(name);
  if (!pkg) cache.set(name, (pkg = llmFolderPackage(llmExampleDir(name))));
  return pkg;
}
