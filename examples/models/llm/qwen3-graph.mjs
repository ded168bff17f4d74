/**
 * A Qwen3-shaped decoder as an ONNX graph, in the layout Optimum and transformers.js export
 * (`onnx/model.onnx` of a Hugging Face folder), so that the engine that runs it runs real exports:
 *
 *   inputs   input_ids int64 [batch, sequence_length], attention_mask int64 [batch,
 *            total_sequence_length], position_ids int64 [batch, sequence_length],
 *            past_key_values.{i}.key|value float32 [batch, num_key_value_heads, past_sequence_length, head_dim]
 *            num_logits_to_keep int64 scalar (the last N positions get logits; 0: all)
 *   outputs  logits float32 [batch, num_logits, vocab], present.{i}.key|value (past + new)
 *
 * Per layer, as Qwen3: RMSNorm → q/k/v projections → per-head RMSNorm of q and k → rotary
 * embeddings (rotate-half, cos/sin rows gathered by position_ids) → grouped-query causal attention
 * over past + new keys, masked by attention_mask → o_proj, residual → RMSNorm → SwiGLU MLP,
 * residual. Then the final RMSNorm and lm_head (Gemm with transB over its `[vocab][hidden]`
 * weight, as Hugging Face stores it). A tied lm_head (weights without `lmHead`) is the embedding's
 * initializer itself, read by Gather and by that Gemm, so the file holds it once.
 */
import { encodeModel, floatAttr, initializer, intAttr, intsAttr, node, valueInfo } from '../onnx-builder.mjs';

/** 13: Split and Unsqueeze take their sizes and axes as inputs; LessOrEqual exists (12). */
const OPSET = 13;
/** What masked attention scores become: float32's lowest, as transformers uses (not -inf, so a
 * fully masked row gives a uniform softmax, never NaN). */
const MASKED = -3.4028234663852886e38;

/**
 * @typedef {import('./qwen3-weights.mjs').Qwen3Dims} Qwen3Dims
 * @typedef {import('./qwen3-weights.mjs').Qwen3Weights} Qwen3Weights
 */

/**
 * Collects nodes and initializers; each op's output gets a fresh name unless one is given.
 */
function graphBuilder() {
  /** @type {import('onnx-proto').onnx.INodeProto[]} */
  const nodes = [];
  /** @type {import('onnx-proto').onnx.ITensorProto[]} */
  const initializers = [];
  let count = 0;
  /**
   * @param {string} type
   * @param {string[]} inputs
   * @param {import('onnx-proto').onnx.IAttributeProto[]} [attributes]
   * @param {string} [output]
   * @returns {string} the output's name
   */
  function op(type, inputs, attributes = [], output = `${type}_${count++}`) {
    nodes.push(node(type, inputs, [output], attributes));
    return output;
  }
  /**
   * @param {string} name
   * @param {import('../onnx-builder.mjs').DType} dtype
   * @param {number[]} dims
   * @param {ArrayLike<number>} values
   * @returns {string}
   */
  function constant(name, dtype, dims, values) {
    initializers.push(initializer(name, dtype, dims, values));
    return name;
  }
  return { nodes, initializers, op, constant };
}

/**
 * The cos and sin tables of rotary embeddings: row p, column i = cos|sin(p · θ^(-2i/head_dim)).
 * @param {Qwen3Dims} d
 * @returns {{ cos: Float32Array, sin: Float32Array }}
 */
export function rotaryTables(d) {
  const half = d.headDim / 2;
  const cos = new Float32Array(d.maxPositions * half);
  const sin = new Float32Array(d.maxPositions * half);
  for (let p = 0; p < d.maxPositions; p++)
    for (let i = 0; i < half; i++) {
      const angle = p * d.ropeTheta ** ((-2 * i) / d.headDim);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  return { cos, sin };
}

/**
 * The serialized model.
 * @param {Qwen3Dims} d
 * @param {Qwen3Weights} w
 * @param {{ name: string, doc: string, quantizeActivations?: boolean, logitsToKeep?: boolean }} meta
 *   `quantizeActivations`: each matrix product's activations go through DynamicQuantizeLinear and
 *   back (uint8, one scale and zero point per tensor, per run), the numbers onnxruntime's dynamic
 *   int8 quantization (MatMulInteger) multiplies. `logitsToKeep` (default true): the graph takes
 *   `num_logits_to_keep`; false gives the graph an Optimum export has, logits for every position
 * @returns {Uint8Array}
 */
export function qwen3Onnx(d, w, meta) {
  const g = graphBuilder();
  const { op, constant } = g;
  /** The activations a matrix product reads: as they are, or through uint8 and back. */
  /** @type {Map<string, string>} */
  const quantized = new Map(); // q, k and v read the same activations: quantize them once
  const activations = (/** @type {string} */ x) => {
    if (!meta.quantizeActivations) return x;
    const done = quantized.get(x);
    if (done !== undefined) return done;
    const [q, scale, zeroPoint] = [`${x}.q`, `${x}.scale`, `${x}.zero_point`];
    g.nodes.push(node('DynamicQuantizeLinear', [x], [q, scale, zeroPoint]));
    quantized.set(x, op('DequantizeLinear', [q, scale, zeroPoint]));
    return /** @type {string} */ (quantized.get(x));
  };
  const matMul = (/** @type {string} */ x, /** @type {string} */ weight) =>
    op('MatMul', [activations(x), weight]);
  const i64 = (/** @type {string} */ name, /** @type {number[]} */ values) =>
    constant(name, 'int64', [values.length], values);
  const f32 = (/** @type {string} */ name, /** @type {number} */ value) =>
    constant(name, 'float32', [], [value]);
  const rep = d.heads / d.kvHeads;
  const half = d.headDim / 2;

  const eps = f32('rms_norm_eps', d.rmsNormEps);
  const two = f32('two', 2);
  /** RMSNorm over the last axis, the pattern onnxruntime fuses into SimplifiedLayerNormalization. */
  const rmsNorm = (/** @type {string} */ x, /** @type {string} */ weight) => {
    const meanSquare = op(
      'ReduceMean',
      [op('Pow', [x, two])],
      [intsAttr('axes', [-1]), intAttr('keepdims', 1)],
    );
    return op('Mul', [op('Div', [x, op('Sqrt', [op('Add', [meanSquare, eps])])]), weight]);
  };
  /** @param {string} name @param {import('./qwen3-weights.mjs').Tensor} t */
  const weight = (name, t) => constant(name, 'float32', t.dims, t.values);

  // Lengths: S new tokens, T = past + new keys (attention_mask's length), P = T - S past ones.
  const zero = constant('zero', 'int64', [], [0]);
  const one = constant('one', 'int64', [], [1]);
  const seqLen = op('Gather', [op('Shape', ['input_ids']), one], [intAttr('axis', 0)]);
  const totalLen = op('Gather', [op('Shape', ['attention_mask']), one], [intAttr('axis', 0)]);
  const pastLen = op('Sub', [totalLen, seqLen]);

  // allowed[b, 0, 0, s, t]: key t is not padding and not after query s (absolute index P + s).
  const axes0 = i64('axes_0', [0]);
  const axes1 = i64('axes_1', [1]);
  const queryIndex = op('Unsqueeze', [op('Range', [pastLen, totalLen, one]), axes1]);
  const keyIndex = op('Unsqueeze', [op('Range', [zero, totalLen, one]), axes0]);
  const causal = op('LessOrEqual', [keyIndex, queryIndex]);
  const notPadding = op('Unsqueeze', [
    op('Cast', ['attention_mask'], [intAttr('to', 9 /* BOOL */)]),
    i64('axes_1_2_3', [1, 2, 3]),
  ]);
  const allowed = op('And', [causal, notPadding]);
  const masked = f32('masked', MASKED);

  // cos/sin [batch, seq, 1, head_dim/2]: broadcast over the heads of [batch, seq, heads, head_dim].
  const tables = rotaryTables(d);
  const axes2 = i64('axes_2', [2]);
  const cos = op('Unsqueeze', [
    op('Gather', [constant('rotary.cos', 'float32', [d.maxPositions, half], tables.cos), 'position_ids']),
    axes2,
  ]);
  const sin = op('Unsqueeze', [
    op('Gather', [constant('rotary.sin', 'float32', [d.maxPositions, half], tables.sin), 'position_ids']),
    axes2,
  ]);
  const halves = i64('rotary.halves', [half, half]);
  /** Rotate-half rotary embedding: (x1, x2) → (x1 cos − x2 sin, x2 cos + x1 sin). */
  const rotary = (/** @type {string} */ x) => {
    const x1 = `${x}.x1`;
    const x2 = `${x}.x2`;
    g.nodes.push(node('Split', [x, halves], [x1, x2], [intAttr('axis', -1)]));
    const first = op('Sub', [op('Mul', [x1, cos]), op('Mul', [x2, sin])]);
    const second = op('Add', [op('Mul', [x2, cos]), op('Mul', [x1, sin])]);
    return op('Concat', [first, second], [intAttr('axis', -1)]);
  };

  const headsShape = i64('shape.heads', [0, 0, d.heads, d.headDim]);
  const kvHeadsShape = i64('shape.kv_heads', [0, 0, d.kvHeads, d.headDim]);
  const groupsShape = i64('shape.groups', [0, 0, d.kvHeads, rep, d.headDim]);
  const mergedShape = i64('shape.merged', [0, 0, d.heads * d.headDim]);
  const scale = f32('attention.scale', 1 / Math.sqrt(d.headDim));

  const embed = weight('model.embed_tokens.weight', w.embed);
  let x = op('Gather', [embed, 'input_ids']);
  for (let l = 0; l < d.layers; l++) {
    const p = `model.layers.${l}`;
    const lw = /** @type {Record<string, import('./qwen3-weights.mjs').Tensor>} */ (w.layers[l]);
    const mat = (/** @type {string} */ name) =>
      weight(`${p}.${name}.weight`, /** @type {import('./qwen3-weights.mjs').Tensor} */ (lw[name]));
    const h = rmsNorm(x, mat('input_layernorm'));
    // q [batch, seq, heads, head_dim] → groups [batch, kv_heads, rep, seq, head_dim]: query head
    // k·rep + r reads key/value head k, as transformers' repeat_kv pairs them.
    const qHeads = op('Reshape', [matMul(h, mat('self_attn.q_proj')), headsShape]);
    const q = rotary(rmsNorm(qHeads, mat('self_attn.q_norm')));
    const qGroups = op('Transpose', [op('Reshape', [q, groupsShape])], [intsAttr('perm', [0, 2, 3, 1, 4])]);
    const kHeads = op('Reshape', [matMul(h, mat('self_attn.k_proj')), kvHeadsShape]);
    const k = op(
      'Transpose',
      [rotary(rmsNorm(kHeads, mat('self_attn.k_norm')))],
      [intsAttr('perm', [0, 2, 1, 3])],
    );
    const vHeads = op('Reshape', [matMul(h, mat('self_attn.v_proj')), kvHeadsShape]);
    const v = op('Transpose', [vHeads], [intsAttr('perm', [0, 2, 1, 3])]);
    // The cache: [batch, kv_heads, past + seq, head_dim].
    const keys = op('Concat', [`past_key_values.${l}.key`, k], [intAttr('axis', 2)], `present.${l}.key`);
    const values = op(
      'Concat',
      [`past_key_values.${l}.value`, v],
      [intAttr('axis', 2)],
      `present.${l}.value`,
    );
    // scores [batch, kv_heads, rep, seq, total]
    const keysT = op('Transpose', [op('Unsqueeze', [keys, axes2])], [intsAttr('perm', [0, 1, 2, 4, 3])]);
    const scores = op('Mul', [op('MatMul', [qGroups, keysT]), scale]);
    const probs = op('Softmax', [op('Where', [allowed, scores, masked])], [intAttr('axis', -1)]);
    const context = op('MatMul', [probs, op('Unsqueeze', [values, axes2])]);
    const merged = op('Reshape', [
      op('Transpose', [context], [intsAttr('perm', [0, 3, 1, 2, 4])]),
      mergedShape,
    ]);
    x = op('Add', [x, matMul(merged, mat('self_attn.o_proj'))]);
    // SwiGLU: down(silu(gate(h)) · up(h))
    const h2 = rmsNorm(x, mat('post_attention_layernorm'));
    const gate = matMul(h2, mat('mlp.gate_proj'));
    const silu = op('Mul', [gate, op('Sigmoid', [gate])]);
    const up = matMul(h2, mat('mlp.up_proj'));
    x = op('Add', [x, matMul(op('Mul', [silu, up]), mat('mlp.down_proj'))]);
  }
  const final = rmsNorm(x, weight('model.norm.weight', w.norm));
  // lm_head over the last num_logits_to_keep positions only (0: all of them, as transformers reads
  // it): generation needs one row, the re-check the output's rows, and lm_head over the whole
  // vocabulary is nearly all of this model's work. Slice clamps a count above the sequence length.
  const logitsToKeep = meta.logitsToKeep ?? true;
  const kept = logitsToKeep
    ? op('Slice', [
        final,
        op('Neg', [op('Unsqueeze', ['num_logits_to_keep', axes0])]),
        i64('slice.end', [Number.MAX_SAFE_INTEGER]),
        axes1,
      ])
    : final;
  const rows = op('Reshape', [kept, i64('shape.rows', [-1, d.hidden])]);
  const head = w.lmHead === undefined ? embed : weight('lm_head.weight', w.lmHead);
  const logitRows = op('Gemm', [activations(rows), head], [intAttr('transB', 1), floatAttr('alpha', 1)]);
  const batch = op('Slice', [op('Shape', ['input_ids']), i64('slice.0', [0]), i64('slice.1', [1])]);
  const logitsShape = op('Concat', [batch, i64('shape.kept_vocab', [-1, d.vocab])], [intAttr('axis', 0)]);
  op('Reshape', [logitRows, logitsShape], [], 'logits');

  const cacheDims = ['batch_size', d.kvHeads, 'past_sequence_length', d.headDim];
  const presentDims = ['batch_size', d.kvHeads, 'total_sequence_length', d.headDim];
  const cacheNames = Array.from({ length: d.layers }, (_, l) => [`${l}.key`, `${l}.value`]).flat();
  return encodeModel({
    name: meta.name,
    doc: meta.doc,
    opset: OPSET,
    inputs: [
      valueInfo('input_ids', 'int64', ['batch_size', 'sequence_length']),
      valueInfo('attention_mask', 'int64', ['batch_size', 'total_sequence_length']),
      valueInfo('position_ids', 'int64', ['batch_size', 'sequence_length']),
      ...cacheNames.map((n) => valueInfo(`past_key_values.${n}`, 'float32', cacheDims)),
      ...(logitsToKeep ? [valueInfo('num_logits_to_keep', 'int64', [])] : []),
    ],
    outputs: [
      valueInfo('logits', 'float32', [
        'batch_size',
        logitsToKeep ? 'num_logits' : 'sequence_length',
        d.vocab,
      ]),
      ...cacheNames.map((n) => valueInfo(`present.${n}`, 'float32', presentDims)),
    ],
    initializers: g.initializers,
    nodes: g.nodes,
  });
}
