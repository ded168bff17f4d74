import type ort from 'onnxruntime-node';
import { GlassboxError } from '../../protocol/errors.js';
import type { LlmManifest, ModelPackage } from '../../protocol/manifest.js';
import { readJson } from './tokenizer.js';

/*
 * The Hugging Face ONNX decoder layout (Optimum, transformers.js): `input_ids`, `attention_mask`,
 * optional `position_ids` (and `use_cache_branch` in merged exports), `past_key_values.{i}.key|value`,
 * optional `num_logits_to_keep` (int64 scalar: lm_head over the last N positions only, 0 for all; the
 * name transformers uses, which Optimum exports may lack) → `logits`, `present.{i}.key|value`, all
 * float32. What config.json must say about it is checked
 * against the graph and the manifest once, when a model is loaded.
 */

export type Layout = {
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  /** `past_key_values.{i}.key`, `…value`, in layer order (key then value). */
  readonly past: readonly string[];
  /** `present.{i}.key`, `…value`, matching `past`. */
  readonly present: readonly string[];
  readonly positionIds: boolean;
  readonly useCacheBranch: boolean;
  /** The graph takes `num_logits_to_keep`: without it, logits come for every fed position. */
  readonly logitsToKeep: boolean;
};

/** The fields of config.json the layout needs. */
type Config = {
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  readonly num_key_value_heads: number;
  readonly head_dim: number;
  readonly vocab_size: number;
  readonly max_position_embeddings: number | undefined;
  readonly eos: readonly number[];
};

function positiveInt(value: unknown, field: string, path: string): number {
  if (!(Number.isSafeInteger(value) && (value as number) > 0))
    throw new GlassboxError(
      'MODEL_INVALID',
      `${path}: ${field} must be a positive integer, not ${JSON.stringify(value)}`,
      {
        field: `config.${field}`,
      },
    );
  return value as number;
}

function readConfig(pkg: ModelPackage, manifest: LlmManifest): Config {
  const path = manifest.llm.config;
  const raw = readJson(pkg, path, 'llm.config') as Record<string, unknown>;
  if (typeof raw !== 'object' || raw === null)
    throw new GlassboxError('MODEL_INVALID', `${path} is not a JSON object`, { field: 'llm.config' });
  const layers = positiveInt(raw['num_hidden_layers'], 'num_hidden_layers', path);
  const heads = positiveInt(raw['num_attention_heads'], 'num_attention_heads', path);
  const kvHeads =
    raw['num_key_value_heads'] === undefined
      ? heads
      : positiveInt(raw['num_key_value_heads'], 'num_key_value_heads', path);
  const headDim =
    raw['head_dim'] === undefined
      ? positiveInt(raw['hidden_size'], 'hidden_size', path) / heads
      : positiveInt(raw['head_dim'], 'head_dim', path);
  const eosRaw = raw['eos_token_id'];
  const eos = eosRaw === undefined || eosRaw === null ? [] : Array.isArray(eosRaw) ? eosRaw : [eosRaw];
  return {
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    vocab_size: positiveInt(raw['vocab_size'], 'vocab_size', path),
    max_position_embeddings:
      raw['max_position_embeddings'] === undefined
        ? undefined
        : positiveInt(raw['max_position_embeddings'], 'max_position_embeddings', path),
    eos: eos.map((id) => positiveIntOrZero(id, path)),
  };
}

function positiveIntOrZero(value: unknown, path: string): number {
  if (!(Number.isSafeInteger(value) && (value as number) >= 0))
    throw new GlassboxError('MODEL_INVALID', `${path}: eos_token_id holds ${JSON.stringify(value)}`, {
      field: 'config.eos_token_id',
    });
  return value as number;
}

/**
 * The layout of a loaded session, checked: the graph has every input and output the decoder layout
 * needs, in float32 where it matters, with the sizes config.json gives; config.json agrees with the
 * manifest (vocabulary, context length, EOS ids). MODEL_INVALID naming the field otherwise.
 */
export function checkLayout(pkg: ModelPackage, session: ort.InferenceSession): Layout {
  const manifest = pkg.manifest as LlmManifest;
  const config = readConfig(pkg, manifest);
  const { llm } = manifest;
  if (config.vocab_size !== llm.vocabSize)
    throw new GlassboxError(
      'MODEL_INVALID',
      `config.json says vocab_size ${config.vocab_size}, the manifest vocabSize ${llm.vocabSize}`,
      { field: 'llm.vocabSize' },
    );
  if (config.max_position_embeddings !== undefined && llm.contextLength > config.max_position_embeddings)
    throw new GlassboxError(
      'MODEL_INVALID',
      `the manifest's contextLength ${llm.contextLength} is above config.json's max_position_embeddings ${config.max_position_embeddings}`,
      { field: 'llm.contextLength' },
    );
  const missingEos = config.eos.filter((id) => !llm.eosTokenIds.includes(id));
  if (missingEos.length > 0)
    throw new GlassboxError(
      'MODEL_INVALID',
      `config.json's eos_token_id ${missingEos.join(', ')} is not among the manifest's eosTokenIds`,
      { field: 'llm.eosTokenIds' },
    );
  for (const id of llm.eosTokenIds)
    if (id >= llm.vocabSize)
      throw new GlassboxError('MODEL_INVALID', `EOS id ${id} is outside the vocabulary of ${llm.vocabSize}`, {
        field: 'llm.eosTokenIds',
      });

  const inputs = new Map(session.inputMetadata.map((m) => [m.name, m]));
  const outputs = new Map(session.outputMetadata.map((m) => [m.name, m]));
  const need = (
    map: Map<string, ort.InferenceSession.ValueMetadata>,
    name: string,
    type: string,
    where: 'inputs' | 'outputs',
  ) => {
    const meta = map.get(name);
    if (!meta)
      throw new GlassboxError(
        'MODEL_INVALID',
        `the graph has no ${where === 'inputs' ? 'input' : 'output'} ${name}`,
        {
          field: `files.${manifest.entry}`,
          details: { [where]: [...map.keys()] },
        },
      );
    if (!meta.isTensor || meta.type !== type)
      throw new GlassboxError(
        'MODEL_INVALID',
        `the graph's ${name} is ${meta.isTensor ? meta.type : 'not a tensor'}, not ${type}`,
        { field: `files.${manifest.entry}` },
      );
    return meta;
  };
  need(inputs, 'input_ids', 'int64', 'inputs');
  need(inputs, 'attention_mask', 'int64', 'inputs');
  const logits = need(outputs, 'logits', 'float32', 'outputs');
  const vocabDim = logits.isTensor ? logits.shape[logits.shape.length - 1] : undefined;
  if (typeof vocabDim === 'number' && vocabDim !== llm.vocabSize)
    throw new GlassboxError(
      'MODEL_INVALID',
      `the graph's logits have ${vocabDim} columns, the manifest's vocabSize is ${llm.vocabSize}`,
      {
        field: 'llm.vocabSize',
      },
    );
  const past: string[] = [];
  const present: string[] = [];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    for (const kind of ['key', 'value']) {
      const meta = need(inputs, `past_key_values.${i}.${kind}`, 'float32', 'inputs');
      const dims = meta.isTensor ? meta.shape : [];
      const [, heads, , dim] = dims;
      if (typeof heads === 'number' && heads !== config.num_key_value_heads)
        throw new GlassboxError(
          'MODEL_INVALID',
          `the graph's past_key_values.${i}.${kind} has ${heads} heads, config.json ${config.num_key_value_heads}`,
          { field: 'config.num_key_value_heads' },
        );
      if (typeof dim === 'number' && dim !== config.head_dim)
        throw new GlassboxError(
          'MODEL_INVALID',
          `the graph's past_key_values.${i}.${kind} has head size ${dim}, config.json ${config.head_dim}`,
          { field: 'config.head_dim' },
        );
      need(outputs, `present.${i}.${kind}`, 'float32', 'outputs');
      past.push(`past_key_values.${i}.${kind}`);
      present.push(`present.${i}.${kind}`);
    }
  }
  if (inputs.has(`past_key_values.${config.num_hidden_layers}.key`))
    throw new GlassboxError(
      'MODEL_INVALID',
      `the graph has more layers than config.json's num_hidden_layers ${config.num_hidden_layers}`,
      { field: 'config.num_hidden_layers' },
    );
  const known = new Set([
    'input_ids',
    'attention_mask',
    'position_ids',
    'use_cache_branch',
    'num_logits_to_keep',
    ...past,
  ]);
  for (const name of inputs.keys())
    if (!known.has(name))
      throw new GlassboxError(
        'MODEL_INVALID',
        `the graph has an input ${name} the decoder layout does not feed`,
        {
          field: `files.${manifest.entry}`,
        },
      );
  if (inputs.has('position_ids')) need(inputs, 'position_ids', 'int64', 'inputs');
  if (inputs.has('use_cache_branch')) need(inputs, 'use_cache_branch', 'bool', 'inputs');
  if (inputs.has('num_logits_to_keep')) need(inputs, 'num_logits_to_keep', 'int64', 'inputs');
  return {
    layers: config.num_hidden_layers,
    kvHeads: config.num_key_value_heads,
    headDim: config.head_dim,
    vocabSize: llm.vocabSize,
    past,
    present,
    positionIds: inputs.has('position_ids'),
    useCacheBranch: inputs.has('use_cache_branch'),
    logitsToKeep: inputs.has('num_logits_to_keep'),
  };
}
