import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join, posix, resolve } from 'node:path';
import onnxProto from 'onnx-proto';
import { z } from 'zod';
import {
  fileCid,
  GlassboxError,
  isModelId,
  manifestBytes,
  modelIdOf,
  parseManifest,
  policySchema,
  MANIFEST_SCHEMA,
  type LlmFields,
  type ModelFile,
  type ModelManifest,
  type TensorSpec,
} from '../protocol/index.js';
import type { BlobStore } from './blob-store.js';
import { MODEL_FOLDER_OPTIONS, readFolderOptions } from './folder-options.js';
import { readOnnxSchema } from './onnx-schema.js';
import type { PackFile, PackModelReturnType } from './package.js';

const { onnx } = onnxProto;

/**
 * A decoder LLM folder in the Hugging Face ONNX layout that Optimum and transformers.js export:
 * `config.json`, `generation_config.json`, `tokenizer.json`, `tokenizer_config.json` (or
 * `chat_template.jinja`) at the top, the graph at `onnx/model.onnx`, its weights beside it in
 * `onnx/model.onnx_data` when it has external data. `model.json` holds the pack options, as in an
 * ONNX model folder.
 */
export const LLM_FOLDER_ENTRY = 'onnx/model.onnx';
export const LLM_FOLDER_CONFIG = 'config.json';
export const LLM_FOLDER_GENERATION_CONFIG = 'generation_config.json';
export const LLM_FOLDER_TOKENIZER = 'tokenizer.json';
export const LLM_FOLDER_TOKENIZER_CONFIG = 'tokenizer_config.json';
export const LLM_FOLDER_CHAT_TEMPLATE = 'chat_template.jinja';

/**
 * The token-margin thresholds a folder gets when neither model.json nor the caller gives a policy:
 * placeholders until the LLM engine calibrates them on the sample models.
 */
export const DEFAULT_TOKEN_MARGIN_POLICY = {
  kind: 'token-margin',
  hard: 0.05,
  soft: 0.005,
  rate: 0.02,
} as const;

export type PackLlmFolderParameters = {
  readonly name?: string;
  readonly version?: string;
  readonly description?: string;
  readonly license?: string;
  readonly policy?: z.infer<typeof policySchema>;
  readonly previous?: string;
  /** The most tokens one generation may hold; default config.json's max_position_embeddings. */
  readonly contextLength?: number;
};

const optionsSchema = z.strictObject({
  name: z.string().min(1).optional(),
  version: z.string().min(1).optional(),
  description: z.string().optional(),
  license: z.string().optional(),
  policy: policySchema.optional(),
  previous: z.string().optional(),
  contextLength: z.number().int().positive().optional(),
});

/** Whether `dir` has the layout: config.json and onnx/model.onnx. */
export async function isLlmFolder(dir: string): Promise<boolean> {
  const isFile = (path: string) =>
    stat(path).then(
      (s) => s.isFile(),
      () => false,
    );
  return (await isFile(join(dir, LLM_FOLDER_CONFIG))) && (await isFile(join(dir, LLM_FOLDER_ENTRY)));
}

/**
 * Packs an LLM folder: every file at its top (but model.json, the pack options, and hidden files),
 * the graph and the external data files it names, each content-addressed; a manifest of format
 * `llm` whose `llm` fields come from config.json, generation_config.json and tokenizer_config.json.
 * `overrides` win over model.json. Other graphs under onnx/ (model_q4.onnx, model_fp16.onnx, …, as
 * transformers.js exports ship) are not packed: they are other models.
 */
export async function packLlmFolder(
  store: BlobStore,
  dir: string,
  overrides: PackLlmFolderParameters = {},
): Promise<PackModelReturnType> {
  const options = {
    ...(await readFolderOptions(join(dir, MODEL_FOLDER_OPTIONS), optionsSchema)),
    ...definedOnly(overrides),
  };
  const files = await readFolderFiles(dir);
  const manifest = await buildLlmManifest(files, {
    ...options,
    name: options.name ?? basename(resolve(dir)),
  });
  // As packModel: the files first, the manifest last, so a stored manifest always has its files.
  for (const file of files) await store.put(file.bytes);
  const id = modelIdOf(manifest);
  const stored = await store.put(manifestBytes(manifest));
  if (stored !== id) throw new Error(`bug: manifest stored as ${stored}, but the model id is ${id}`);
  return { id, manifest };
}

/**
 * The manifest of an LLM folder's files, without storing anything. Throws MODEL_INVALID or
 * MANIFEST_INVALID naming the file and field at fault.
 */
export async function buildLlmManifest(
  files: readonly PackFile[],
  params: PackLlmFolderParameters & { readonly name: string },
): Promise<ModelManifest> {
  const byPath = new Map(files.map((f) => [f.path, f.bytes]));
  const entry = byPath.get(LLM_FOLDER_ENTRY);
  if (entry === undefined) throw missingFile(LLM_FOLDER_ENTRY, 'the ONNX graph');
  const { inputs, outputs } = readOnnxSchema(entry);
  const config = readJson(byPath, LLM_FOLDER_CONFIG, 'the model configuration')!;
  const generation = readJson(byPath, LLM_FOLDER_GENERATION_CONFIG, '', { optional: true });
  if (!byPath.has(LLM_FOLDER_TOKENIZER)) throw missingFile(LLM_FOLDER_TOKENIZER, 'the tokenizer');
  const tokenizerConfig = readJson(
    byPath,
    LLM_FOLDER_TOKENIZER_CONFIG,
    'special tokens and the chat template',
  )!;

  const vocabSize = positiveInt(config, 'vocab_size', LLM_FOLDER_CONFIG);
  checkGraph(inputs, outputs, vocabSize);
  const contextLength =
    params.contextLength ?? positiveInt(config, 'max_position_embeddings', LLM_FOLDER_CONFIG);
  const llm: LlmFields = {
    tokenizer: LLM_FOLDER_TOKENIZER,
    tokenizerConfig: LLM_FOLDER_TOKENIZER_CONFIG,
    config: LLM_FOLDER_CONFIG,
    ...(generation === undefined ? {} : { generationConfig: LLM_FOLDER_GENERATION_CONFIG }),
    ...chatTemplateField(byPath, tokenizerConfig),
    contextLength,
    eosTokenIds: eosTokenIds(config, generation, tokenizerConfig, byPath),
    vocabSize,
  };

  if (params.previous !== undefined && !isModelId(params.previous))
    throw new GlassboxError('CID_INVALID', `previous is not a model id: ${JSON.stringify(params.previous)}`, {
      field: 'previous',
    });
  const manifestFiles: ModelFile[] = [];
  for (const file of files)
    manifestFiles.push({ path: file.path, cid: await fileCid(file.bytes), size: file.bytes.length });
  manifestFiles.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return parseManifest({
    schema: MANIFEST_SCHEMA,
    name: params.name,
    version: params.version ?? '1',
    format: 'llm',
    entry: LLM_FOLDER_ENTRY,
    files: manifestFiles,
    inputs,
    outputs,
    policy: params.policy ?? DEFAULT_TOKEN_MARGIN_POLICY,
    description: params.description ?? '',
    license: params.license ?? '',
    llm,
    ...(params.previous === undefined ? {} : { previous: params.previous }),
  });
}

/** The files a folder's package holds, by their `/`-separated path in the folder. */
async function readFolderFiles(dir: string): Promise<PackFile[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((cause: NodeJS.ErrnoException) => {
    throw new GlassboxError('MODEL_NOT_FOUND', `no model folder at ${dir}`, { field: 'path', cause });
  });
  const paths = entries
    .filter((e) => e.isFile() && !e.name.startsWith('.') && e.name !== MODEL_FOLDER_OPTIONS)
    .map((e) => e.name);
  const entry = await readBytes(dir, LLM_FOLDER_ENTRY);
  const files: PackFile[] = [{ path: LLM_FOLDER_ENTRY, bytes: entry }];
  for (const location of externalDataFiles(entry))
    files.push({
      path: location,
      bytes: await readBytes(dir, location, `external data of ${LLM_FOLDER_ENTRY}`),
    });
  for (const path of paths.sort()) files.push({ path, bytes: await readBytes(dir, path) });
  return files;
}

/**
 * The files holding the graph's external tensors (`onnx/model.onnx_data`, …), as folder paths.
 * Optimum writes weights there once a model passes 2 GB; the graph names them in each initializer.
 */
function externalDataFiles(graphBytes: Uint8Array): string[] {
  const model = onnx.ModelProto.decode(graphBytes);
  const locations = new Set<string>();
  for (const tensor of model.graph?.initializer ?? []) {
    if (tensor.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const location = tensor.externalData?.find((e) => e.key === 'location')?.value;
    if (!location)
      throw new GlassboxError(
        'MODEL_INVALID',
        `${LLM_FOLDER_ENTRY}: initializer "${tensor.name}" has external data without a location`,
        { field: LLM_FOLDER_ENTRY },
      );
    const path = posix.normalize(posix.join(posix.dirname(LLM_FOLDER_ENTRY), location));
    if (path.startsWith('../') || posix.isAbsolute(path))
      throw new GlassboxError(
        'MODEL_INVALID',
        `${LLM_FOLDER_ENTRY}: initializer "${tensor.name}" keeps its data outside the folder (${location})`,
        { field: LLM_FOLDER_ENTRY },
      );
    locations.add(path);
  }
  return [...locations].sort();
}

async function readBytes(dir: string, path: string, what = ''): Promise<Uint8Array> {
  try {
    const buffer = await readFile(join(dir, ...path.split('/')));
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') throw missingFile(path, what, dir);
    throw cause;
  }
}

/** An LLM's graph reads token ids and gives logits over the vocabulary that config.json sizes. */
function checkGraph(inputs: readonly TensorSpec[], outputs: readonly TensorSpec[], vocabSize: number): void {
  if (!inputs.some((i) => i.name === 'input_ids'))
    throw new GlassboxError('MODEL_INVALID', `${LLM_FOLDER_ENTRY}: the graph has no input "input_ids"`, {
      field: 'inputs',
      metaMessages: [`inputs: ${inputs.map((i) => i.name).join(', ')}`],
    });
  const logits = outputs.find((o) => o.name === 'logits');
  if (logits === undefined)
    throw new GlassboxError('MODEL_INVALID', `${LLM_FOLDER_ENTRY}: the graph has no output "logits"`, {
      field: 'outputs',
      metaMessages: [`outputs: ${outputs.map((o) => o.name).join(', ')}`],
    });
  const last = logits.shape.at(-1);
  if (typeof last === 'number' && last !== vocabSize)
    throw new GlassboxError(
      'MODEL_INVALID',
      `${LLM_FOLDER_ENTRY}: "logits" scores ${last} ids, but ${LLM_FOLDER_CONFIG} has vocab_size ${vocabSize}`,
      { field: `${LLM_FOLDER_CONFIG}.vocab_size` },
    );
}

/** `chat_template.jinja` when the folder has one (newer exports), else tokenizer_config.json's `chat_template`. */
function chatTemplateField(
  byPath: ReadonlyMap<string, Uint8Array>,
  tokenizerConfig: Record<string, unknown>,
): { chatTemplate?: string } {
  if (byPath.has(LLM_FOLDER_CHAT_TEMPLATE)) return { chatTemplate: LLM_FOLDER_CHAT_TEMPLATE };
  const template = tokenizerConfig.chat_template;
  const present =
    typeof template === 'string' ? template !== '' : Array.isArray(template) && template.length > 0;
  return present ? { chatTemplate: LLM_FOLDER_TOKENIZER_CONFIG } : {};
}

/**
 * The ids that end a generation: the union of config.json's and generation_config.json's
 * `eos_token_id` (each a number or a list); when neither has one, tokenizer_config.json's
 * `eos_token` looked up in tokenizer.json's added tokens.
 */
function eosTokenIds(
  config: Record<string, unknown>,
  generation: Record<string, unknown> | undefined,
  tokenizerConfig: Record<string, unknown>,
  byPath: ReadonlyMap<string, Uint8Array>,
): number[] {
  const ids = new Set<number>();
  for (const [file, json] of [
    [LLM_FOLDER_CONFIG, config],
    [LLM_FOLDER_GENERATION_CONFIG, generation],
  ] as const) {
    const value = json?.eos_token_id;
    if (value === undefined || value === null) continue;
    const list = Array.isArray(value) ? value : [value];
    for (const id of list) {
      if (!Number.isSafeInteger(id) || (id as number) < 0)
        throw new GlassboxError(
          'MANIFEST_INVALID',
          `${file}: eos_token_id ${JSON.stringify(value)} is not a token id or a list of them`,
          {
            field: `${file}.eos_token_id`,
          },
        );
      ids.add(id as number);
    }
  }
  if (ids.size === 0) {
    const eos = tokenizerConfig.eos_token;
    const content =
      typeof eos === 'string' ? eos : (eos as { content?: unknown } | null | undefined)?.content;
    const added = readJson(byPath, LLM_FOLDER_TOKENIZER, '')?.added_tokens;
    const match = Array.isArray(added)
      ? (added as { id?: unknown; content?: unknown }[]).find((t) => t.content === content)
      : undefined;
    if (typeof content !== 'string' || typeof match?.id !== 'number')
      throw new GlassboxError(
        'MANIFEST_INVALID',
        `no end-of-sequence token: neither ${LLM_FOLDER_CONFIG} nor ${LLM_FOLDER_GENERATION_CONFIG} has eos_token_id, and ${LLM_FOLDER_TOKENIZER_CONFIG}'s eos_token is not an added token of ${LLM_FOLDER_TOKENIZER}`,
        { field: `${LLM_FOLDER_CONFIG}.eos_token_id` },
      );
    ids.add(match.id);
  }
  // In order of appearance: config.json's own end-of-sequence id first.
  return [...ids];
}

function positiveInt(json: Record<string, unknown>, key: string, file: string): number {
  const value = json[key];
  if (value === undefined)
    throw new GlassboxError('MANIFEST_INVALID', `${file} has no ${key}`, { field: `${file}.${key}` });
  if (!Number.isSafeInteger(value) || (value as number) <= 0)
    throw new GlassboxError(
      'MANIFEST_INVALID',
      `${file}: ${key} ${JSON.stringify(value)} is not a positive integer`,
      {
        field: `${file}.${key}`,
      },
    );
  return value as number;
}

function readJson(
  byPath: ReadonlyMap<string, Uint8Array>,
  path: string,
  what: string,
  options: { optional?: boolean } = {},
): Record<string, unknown> | undefined {
  const bytes = byPath.get(path);
  if (bytes === undefined) {
    if (options.optional) return undefined;
    throw missingFile(path, what);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (cause) {
    throw new GlassboxError('MANIFEST_INVALID', `${path} is not valid JSON`, { field: path, cause });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new GlassboxError('MANIFEST_INVALID', `${path} is not a JSON object`, { field: path });
  return json as Record<string, unknown>;
}

function missingFile(path: string, what: string, dir?: string): GlassboxError {
  return new GlassboxError(
    'MODEL_INVALID',
    `the LLM folder${dir === undefined ? '' : ` ${dir}`} has no ${path}${what === '' ? '' : ` (${what})`}`,
    { field: path },
  );
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
