/**
 * Runs a decoder in the Hugging Face ONNX layout on onnxruntime, for the measurements and tests of
 * the sample models (the engine proper is src/runtime/llm): prefill, greedy decode one token at a
 * time through the KV cache, and teacher-forced scoring of a whole sequence in one run. Batch 1.
 */
import { performance } from 'node:perf_hooks';

/**
 * @typedef {object} DecoderShape
 * @property {number} layers num_hidden_layers
 * @property {number} kvHeads num_key_value_heads
 * @property {number} headDim head_dim
 * @property {number} vocab vocab_size
 */

/**
 * The shape a config.json gives.
 * @param {Record<string, any>} config
 * @returns {DecoderShape}
 */
export function decoderShape(config) {
  return {
    layers: config.num_hidden_layers,
    kvHeads: config.num_key_value_heads,
    headDim: config.head_dim ?? config.hidden_size / config.num_attention_heads,
    vocab: config.vocab_size,
  };
}

/**
 * @param {number[]} ids
 * @returns {BigInt64Array}
 */
function int64(ids) {
  return BigInt64Array.from(ids, (v) => BigInt(v));
}

/**
 * The inputs for `ids` after `past` cached positions; `cache` holds the previous run's outputs (or
 * none: an empty cache). `keep`, for a graph with a `num_logits_to_keep` input: how many of the
 * last positions get logits (0: all).
 * @param {typeof import('onnxruntime-node')} ort
 * @param {DecoderShape} shape
 * @param {number[]} ids
 * @param {number} past
 * @param {Record<string, import('onnxruntime-node').Tensor> | undefined} cache
 * @param {number} [keep]
 * @returns {Record<string, import('onnxruntime-node').Tensor>}
 */
export function decoderFeeds(ort, shape, ids, past, cache, keep) {
  /** @type {Record<string, import('onnxruntime-node').Tensor>} */
  const feeds = {
    input_ids: new ort.Tensor('int64', int64(ids), [1, ids.length]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(past + ids.length).fill(1n), [
      1,
      past + ids.length,
    ]),
    position_ids: new ort.Tensor('int64', int64(ids.map((_, i) => past + i)), [1, ids.length]),
  };
  const empty = new ort.Tensor('float32', new Float32Array(0), [1, shape.kvHeads, 0, shape.headDim]);
  for (let l = 0; l < shape.layers; l++)
    for (const kv of ['key', 'value'])
      feeds[`past_key_values.${l}.${kv}`] = cache?.[`present.${l}.${kv}`] ?? empty;
  if (keep !== undefined)
    feeds['num_logits_to_keep'] = new ort.Tensor('int64', BigInt64Array.of(BigInt(keep)), []);
  return feeds;
}

/**
 * `keep` where the graph takes `num_logits_to_keep`, else undefined (the graph gives every row).
 * @param {import('onnxruntime-node').InferenceSession} session
 * @param {number} keep
 * @returns {number | undefined}
 */
function keepIfTaken(session, keep) {
  return session.inputNames.includes('num_logits_to_keep') ? keep : undefined;
}

/**
 * The first largest of `length` values from `offset` (ties: the lowest id, as greedy sampling).
 * @param {Float32Array} values
 * @param {number} offset
 * @param {number} length
 * @returns {number}
 */
export function argmaxAt(values, offset, length) {
  let best = 0;
  let bestValue = /** @type {number} */ (values[offset]);
  for (let i = 1; i < length; i++) {
    const v = /** @type {number} */ (values[offset + i]);
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/**
 * Greedy decoding: one prefill run over the prompt, then one run per new token through the cache.
 * `steps` holds each token's logits when `keepLogits`.
 * @param {typeof import('onnxruntime-node')} ort
 * @param {import('onnxruntime-node').InferenceSession} session
 * @param {DecoderShape} shape
 * @param {number[]} prompt
 * @param {number} count tokens to generate
 * @param {{ keepLogits?: boolean }} [options]
 * @returns {Promise<{ ids: number[], steps: Float32Array[], decodeMs: number }>} decodeMs: the runs after the prefill
 */
export async function greedyDecode(ort, session, shape, prompt, count, options = {}) {
  const keep = keepIfTaken(session, 1);
  let outputs = await session.run(decoderFeeds(ort, shape, prompt, 0, undefined, keep));
  /** @type {Float32Array[]} */
  const steps = [];
  /** @param {Float32Array} logits @param {number} row */
  const take = (logits, row) => {
    if (options.keepLogits) steps.push(logits.slice(row * shape.vocab, (row + 1) * shape.vocab));
    return argmaxAt(logits, row * shape.vocab, shape.vocab);
  };
  const prefillRows = /** @type {Float32Array} */ (outputs.logits.data);
  const ids = [take(prefillRows, prefillRows.length / shape.vocab - 1)];
  const start = performance.now();
  for (let past = prompt.length; ids.length < count; past++) {
    outputs = await session.run(
      decoderFeeds(ort, shape, [/** @type {number} */ (ids.at(-1))], past, outputs, keep),
    );
    ids.push(take(/** @type {Float32Array} */ (outputs.logits.data), 0));
  }
  return { ids, steps, decodeMs: performance.now() - start };
}

/**
 * Teacher forcing: one run over `prompt ++ output`; the logits that predicted each output token
 * (row i predicts output[i]), as the re-check scores a claimed generation.
 * @param {typeof import('onnxruntime-node')} ort
 * @param {import('onnxruntime-node').InferenceSession} session
 * @param {DecoderShape} shape
 * @param {number[]} prompt
 * @param {number[]} output
 * @returns {Promise<Float32Array[]>}
 */
export async function teacherForced(ort, session, shape, prompt, output) {
  const all = [...prompt, ...output];
  const keep = keepIfTaken(session, output.length + 1);
  const { logits } = await session.run(decoderFeeds(ort, shape, all, 0, undefined, keep));
  const data = /** @type {Float32Array} */ (logits.data);
  // the rows from the prompt's last position on: all of them, or the last output.length + 1
  const first = data.length / shape.vocab - output.length - 1;
  return output.map((_, i) => data.slice((first + i) * shape.vocab, (first + i + 1) * shape.vocab));
}
