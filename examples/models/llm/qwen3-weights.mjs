/**
 * The weights of a tiny Qwen3-shaped decoder: drawn from a seeded generator (so every build writes
 * the same bytes), and the two ways the impostor models derive theirs from the real ones (int8
 * quantization, a small perturbation of one matrix). Matrices are `[in][out]`, flat and row-major,
 * the layout ONNX MatMul takes with the activations on the left; the embedding is `[vocab][hidden]`.
 */
import { seededRandom } from '../random.mjs';

/**
 * @typedef {object} Qwen3Dims
 * @property {number} vocab vocab_size
 * @property {number} hidden hidden_size
 * @property {number} layers num_hidden_layers
 * @property {number} heads num_attention_heads
 * @property {number} kvHeads num_key_value_heads (grouped-query attention: heads is a multiple)
 * @property {number} headDim head_dim
 * @property {number} intermediate intermediate_size (the SwiGLU MLP's width)
 * @property {number} maxPositions max_position_embeddings (the rotary tables' rows)
 * @property {number} ropeTheta rope_theta
 * @property {number} rmsNormEps rms_norm_eps
 */

/** @typedef {{ dims: number[], values: Float32Array }} Tensor */
/**
 * Per layer, by the Hugging Face parameter name after `model.layers.{i}.` (e.g. `self_attn.q_proj`).
 * @typedef {object} Qwen3Weights
 * @property {Tensor} embed model.embed_tokens
 * @property {Record<string, Tensor>[]} layers
 * @property {Tensor} norm model.norm
 * @property {Tensor} [lmHead] lm_head `[vocab][hidden]`; absent: tied to the embedding
 */

const WRITES_RESIDUAL = new Set(['self_attn.o_proj', 'mlp.down_proj']);

/** The matrices of a layer, as [name, rows (in), cols (out)], in the order they are drawn. */
/**
 * @param {Qwen3Dims} d
 * @returns {[string, number, number][]}
 */
export function layerMatrices(d) {
  return [
    ['self_attn.q_proj', d.hidden, d.heads * d.headDim],
    ['self_attn.k_proj', d.hidden, d.kvHeads * d.headDim],
    ['self_attn.v_proj', d.hidden, d.kvHeads * d.headDim],
    ['self_attn.o_proj', d.heads * d.headDim, d.hidden],
    ['mlp.gate_proj', d.hidden, d.intermediate],
    ['mlp.up_proj', d.hidden, d.intermediate],
    ['mlp.down_proj', d.intermediate, d.hidden],
  ];
}

/**
 * Random weights: projections N(0, 1/fan_in), norms 1 ± 0.1, and an embedding scale that gives
 * logits a spread of about `logitStd` (the final norm leaves the hidden state at RMS ≈ 1, so a logit
 * ≈ N(0, hidden · σ²)): the next token is clearly preferred, as in a trained model, not a near-tie.
 * The two matrices that write into the residual stream (o_proj, down_proj) are `residualGain` times
 * larger, so that the layers, not the input token's own embedding, decide the next token.
 *
 * lm_head is its own matrix (`tie_word_embeddings: false`, as the larger Qwen3 models), although a
 * tied one would halve the file: with random weights, a tied head scores e_b · M e_a for the step
 * a → b, and such a bilinear score makes mutual best pairs common, so greedy decoding falls into
 * 1-3 token loops within a few steps. Loops are where an impostor agrees with the real model, so
 * with a tied head the impostors were caught from about 3 responses in 4; untied, from all.
 * @param {Qwen3Dims} d
 * @param {number} seed
 * @param {number} [logitStd]
 * @returns {Qwen3Weights}
 */
export function randomWeights(d, seed, logitStd = 3, residualGain = 8) {
  const random = seededRandom(seed);
  /**
   * @param {number[]} dims
   * @param {number} std
   * @param {number} [mean]
   * @returns {Tensor}
   */
  const draw = (dims, std, mean = 0) => {
    const values = new Float32Array(dims.reduce((a, b) => a * b, 1));
    for (let i = 0; i < values.length; i++) values[i] = mean + std * random.normal();
    return { dims, values };
  };
  const embed = draw([d.vocab, d.hidden], logitStd / Math.sqrt(d.hidden));
  const layers = [];
  for (let l = 0; l < d.layers; l++) {
    /** @type {Record<string, Tensor>} */
    const layer = {
      input_layernorm: draw([d.hidden], 0.1, 1),
      'self_attn.q_norm': draw([d.headDim], 0.1, 1),
      'self_attn.k_norm': draw([d.headDim], 0.1, 1),
      post_attention_layernorm: draw([d.hidden], 0.1, 1),
    };
    for (const [name, rows, cols] of layerMatrices(d))
      layer[name] = draw([rows, cols], (WRITES_RESIDUAL.has(name) ? residualGain : 1) / Math.sqrt(rows));
    layers.push(layer);
  }
  const norm = draw([d.hidden], 0.1, 1);
  return { embed, layers, norm, lmHead: draw([d.vocab, d.hidden], logitStd / Math.sqrt(d.hidden)) };
}

/**
 * Symmetric int8, then back to float32 (`q · scale`, q in [-127, 127]): the weights an int8 export
 * computes with, kept in float32 so the graph and its speed are those of the real model. `perChannel`:
 * one scale per output channel (a column of a `[in][out]` matrix, a row of the embedding), else one
 * per tensor. Norm weights (vectors) stay float32, as quantizers leave them.
 * @param {Qwen3Weights} w
 * @param {{ perChannel: boolean }} options
 * @returns {Qwen3Weights}
 */
export function quantizeInt8(w, options) {
  // The embedding's and lm_head's output channel is a row (one token's); a matrix's is a column.
  const embed = fakeQuant(w.embed, options.perChannel ? 'rows' : 'tensor');
  const layers = w.layers.map((layer) =>
    Object.fromEntries(
      Object.entries(layer).map(([name, t]) => [
        name,
        t.dims.length === 2 ? fakeQuant(t, options.perChannel ? 'cols' : 'tensor') : t,
      ]),
    ),
  );
  return {
    embed,
    layers,
    norm: w.norm,
    ...(w.lmHead === undefined
      ? {}
      : { lmHead: fakeQuant(w.lmHead, options.perChannel ? 'rows' : 'tensor') }),
  };
}

/**
 * @param {Tensor} t a matrix
 * @param {'rows' | 'cols' | 'tensor'} groups which entries share a scale
 * @returns {Tensor}
 */
function fakeQuant(t, groups) {
  const [rows, cols] = /** @type {[number, number]} */ (t.dims);
  /** @type {(r: number, c: number) => number} */
  const group = groups === 'rows' ? (r) => r : groups === 'cols' ? (_r, c) => c : () => 0;
  const scales = new Float64Array(groups === 'rows' ? rows : groups === 'cols' ? cols : 1);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const g = group(r, c);
      scales[g] = Math.max(
        /** @type {number} */ (scales[g]),
        Math.abs(/** @type {number} */ (t.values[r * cols + c])),
      );
    }
  for (let g = 0; g < scales.length; g++) scales[g] = /** @type {number} */ (scales[g]) / 127 || 1;
  const values = new Float32Array(t.values.length);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const scale = /** @type {number} */ (scales[group(r, c)]);
      values[r * cols + c] = Math.round(/** @type {number} */ (t.values[r * cols + c]) / scale) * scale;
    }
  return { dims: t.dims, values };
}

/**
 * The same weights but one matrix: `W + relative · rms(W) · N(0, 1)`, each entry moved by about
 * `relative` of the matrix's typical entry.
 * @param {Qwen3Weights} w
 * @param {{ layer: number, matrix: string, relative: number, seed: number }} options
 * @returns {Qwen3Weights}
 */
export function perturbMatrix(w, options) {
  const target = w.layers[options.layer]?.[options.matrix];
  if (target === undefined) throw new RangeError(`no matrix ${options.matrix} in layer ${options.layer}`);
  const random = seededRandom(options.seed);
  let sum = 0;
  for (const v of target.values) sum += v * v;
  const step = options.relative * Math.sqrt(sum / target.values.length);
  const values = target.values.map((v) => v + step * random.normal());
  const layers = w.layers.map((layer, l) =>
    l === options.layer ? { ...layer, [options.matrix]: { dims: target.dims, values } } : layer,
  );
  return { ...w, layers };
}
