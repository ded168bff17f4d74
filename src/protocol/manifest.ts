import type { Hex } from 'viem';
import { z } from 'zod';
import { canonicalJsonBytes } from './canonical-json.js';
import { rawCid, rawCidDigest, rawCidFromDigest } from './cid.js';
import { GlassboxError } from './errors.js';
import { parseWith } from './validate.js';
import { DTYPES } from './tensor.js';

/** A model id: the CIDv1 (raw, sha2-256) of its manifest's canonical JSON. */
export type ModelId = string & { readonly __brand: 'ModelId' };

export const MANIFEST_SCHEMA = 'glassbox.model/v1';

/** Manifests stay one IPFS block, so the model id is always a raw CID and its digest is on chain. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

const name = z.string().min(1).max(256);

/** A dimension: a fixed size, or a symbolic name (`batch`, `?`) that any size may fill. */
export const dimSchema = z.union([z.number().int().nonnegative(), z.string().min(1).max(64)]);

export const tensorSpecSchema = z.strictObject({
  name,
  dtype: z.enum(DTYPES),
  shape: z.array(dimSchema).max(64),
  /** Class names of a classifier's output: indexed by a float output's last axis, or by an integer output's values. */
  labels: z.array(z.string()).optional(),
});

export const policySchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('exact') }),
  z.strictObject({
    kind: z.literal('tolerance'),
    abs: z.number().finite().nonnegative(),
    rel: z.number().finite().nonnegative(),
  }),
  z.strictObject({ kind: z.literal('argmax'), output: name }),
  /**
   * LLM generations (format `llm`): the teacher-forced re-check (docs/protocol.md, Token margins).
   * A claimed output token's margin is how far its (noised) logit falls below the best one's;
   * `hard` is the largest margin any single honest token may have, `soft` the margin above which a
   * token counts as suspicious, and `rate` the share of suspicious tokens allowed (at least one).
   */
  z.strictObject({
    kind: z.literal('token-margin'),
    hard: z.number().finite().positive(),
    soft: z.number().finite().nonnegative(),
    rate: z.number().finite().min(0).max(1),
  }),
]);

export const modelFileSchema = z.strictObject({
  path: z
    .string()
    .min(1)
    .max(256)
    .regex(/^[A-Za-z0-9._-][A-Za-z0-9._/-]*$/, 'a relative path of letters, digits, ".", "_", "-" and "/"')
    .refine((p) => !p.split('/').includes('..'), 'must not contain ".."'),
  cid: z.string().min(1),
  size: z.number().int().nonnegative(),
});

/**
 * What every manifest holds whatever its format. A format adds its own fields, if any, in its own
 * schema below.
 */
const manifestFields = {
  schema: z.literal(MANIFEST_SCHEMA),
  name,
  version: z.string().min(1).max(64),
  /** The file the runtime loads; the other files are its companions (external data, vocab…). */
  entry: z.string().min(1),
  files: z.array(modelFileSchema).min(1),
  inputs: z.array(tensorSpecSchema).min(1),
  outputs: z.array(tensorSpecSchema).min(1),
  policy: policySchema,
  description: z.string().max(4096),
  license: z.string().max(128),
  /** The model id of the version this one supersedes. */
  previous: z.string().optional(),
};

/** An ONNX graph (`entry` is the .onnx file), run by src/runtime/onnx. */
export const onnxManifestSchema = z.strictObject({ ...manifestFields, format: z.literal('onnx') });

/**
 * A decoder LLM in the Hugging Face ONNX layout that Optimum and transformers.js export
 * (`config.json`, `generation_config.json`, `tokenizer.json`, `tokenizer_config.json`,
 * `onnx/model.onnx` with `input_ids`/`attention_mask`/`position_ids`/`past_key_values.*` ->
 * `logits`/`present.*`), run by src/runtime/llm. `entry` is the ONNX graph; `inputs` and `outputs`
 * describe it as for any ONNX model; `llm` names the companion files and what templating,
 * tokenizing and stopping need, so that anyone re-templates a request the way the provider did.
 */
export const llmFieldsSchema = z.strictObject({
  /** The Hugging Face `tokenizer.json`. */
  tokenizer: z.string().min(1),
  /** `tokenizer_config.json` (special tokens, and the chat template unless `chatTemplate` names a file). */
  tokenizerConfig: z.string().min(1),
  /** `config.json`: layers, heads, head size, vocabulary. */
  config: z.string().min(1),
  /** `generation_config.json`, when the export has one (defaults only: the request decides). */
  generationConfig: z.string().min(1).optional(),
  /**
   * Where the chat template is: a `.jinja` file of the package, or `tokenizerConfig` (its
   * `chat_template` field). Absent: the model only completes raw prompts (/v1/completions).
   */
  chatTemplate: z.string().min(1).optional(),
  /** The most tokens (prompt plus output) one generation may hold. */
  contextLength: z.number().int().positive(),
  /** Token ids that end a generation (the output keeps the one that ended it). */
  eosTokenIds: z.array(z.number().int().nonnegative()).min(1).max(16),
  /** The logits' last axis: the size of the vocabulary the graph scores. */
  vocabSize: z.number().int().positive(),
});

/** A decoder LLM (see llmFieldsSchema), answered on /v1/chat/completions and /v1/completions. */
export const llmManifestSchema = z.strictObject({
  ...manifestFields,
  format: z.literal('llm'),
  llm: llmFieldsSchema,
});

/**
 * A manifest, discriminated by `format`: the engine registry (src/runtime/registry.ts) finds the
 * engine that runs a model by this field. A new format adds its schema to this union (and its
 * engine folder under src/runtime, and a packer in src/store if it is packed from something else).
 * Canonical JSON sorts keys, so the order of fields here changes no model id.
 */
export const manifestSchema = z
  .discriminatedUnion('format', [onnxManifestSchema, llmManifestSchema])
  .superRefine((m, ctx) => {
    if (!m.files.some((f) => f.path === m.entry))
      ctx.addIssue({ code: 'custom', path: ['entry'], message: `"${m.entry}" is not one of the files` });
    const unique = (list: { name?: string; path?: string }[], key: 'name' | 'path', at: string) => {
      const seen = new Set<string>();
      list.forEach((item, i) => {
        const v = item[key]!;
        if (seen.has(v)) ctx.addIssue({ code: 'custom', path: [at, i, key], message: `"${v}" is repeated` });
        seen.add(v);
      });
    };
    unique(m.files, 'path', 'files');
    unique(m.inputs, 'name', 'inputs');
    unique(m.outputs, 'name', 'outputs');
    const policy = m.policy;
    if ((m.format === 'llm') !== (policy.kind === 'token-margin'))
      ctx.addIssue({
        code: 'custom',
        path: ['policy', 'kind'],
        message:
          m.format === 'llm'
            ? 'an llm model is compared by token margins: its policy must be "token-margin"'
            : '"token-margin" compares LLM generations: only an llm model may have it',
      });
    if (m.format === 'llm') {
      for (const key of [
        'tokenizer',
        'tokenizerConfig',
        'config',
        'generationConfig',
        'chatTemplate',
      ] as const) {
        const path = m.llm[key];
        if (path !== undefined && !m.files.some((f) => f.path === path))
          ctx.addIssue({ code: 'custom', path: ['llm', key], message: `"${path}" is not one of the files` });
      }
    }
    if (policy.kind === 'argmax' && !m.outputs.some((o) => o.name === policy.output))
      ctx.addIssue({ code: 'custom', path: ['policy', 'output'], message: 'is not one of the outputs' });
  });

export type ModelManifest = z.infer<typeof manifestSchema>;
export type LlmManifest = z.infer<typeof llmManifestSchema>;
export type LlmFields = z.infer<typeof llmFieldsSchema>;
/** The formats a manifest may name: one per engine folder under src/runtime. */
export type ModelFormat = ModelManifest['format'];
export type TensorSpec = z.infer<typeof tensorSpecSchema>;
export type Dim = z.infer<typeof dimSchema>;
export type ModelFile = z.infer<typeof modelFileSchema>;

/** Validates untrusted JSON as a manifest; the error names the first offending field. */
export function parseManifest(json: unknown): ModelManifest {
  return parseWith(manifestSchema, json, { code: 'MANIFEST_INVALID', root: 'manifest' });
}

/** The canonical JSON (RFC 8785) bytes of a manifest: what its id hashes. */
export function manifestBytes(manifest: ModelManifest): Uint8Array {
  const bytes = canonicalJsonBytes(manifest);
  if (bytes.length > MAX_MANIFEST_BYTES)
    throw new GlassboxError(
      'MANIFEST_INVALID',
      `manifest is ${bytes.length} bytes, above ${MAX_MANIFEST_BYTES}`,
    );
  return bytes;
}

export function modelIdOf(manifest: ModelManifest): ModelId {
  return rawCid(manifestBytes(manifest)).toString() as ModelId;
}

/** Reads manifest bytes fetched by id, refusing them unless they hash to that id. */
export function manifestFromBytes(bytes: Uint8Array, expected?: ModelId): ModelManifest {
  if (expected !== undefined && rawCid(bytes).toString() !== expected)
    throw new GlassboxError('BLOB_CORRUPT', `manifest bytes do not hash to model id ${expected}`, {
      details: { expected },
    });
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (cause) {
    throw new GlassboxError('MANIFEST_INVALID', 'manifest is not valid UTF-8 JSON', { cause });
  }
  return parseManifest(json);
}

/** The 32-byte digest under which a model is registered on chain. */
export function modelDigest(id: ModelId | string): Hex {
  return rawCidDigest(id, 'model id');
}

export function modelIdFromDigest(digest: Hex): ModelId {
  return rawCidFromDigest(digest) as ModelId;
}

export function isModelId(value: string): value is ModelId {
  try {
    modelDigest(value);
    return true;
  } catch {
    return false;
  }
}

/** A model with its files in memory, every file already checked against its CID. */
export type ModelPackage = {
  readonly id: ModelId;
  readonly manifest: ModelManifest;
  /** File bytes by their manifest path. */
  readonly files: ReadonlyMap<string, Uint8Array>;
};
