/** Types for decode.mjs, so that TypeScript tests can run the LLM examples with it. */
import type * as ort from 'onnxruntime-node';

export type DecoderShape = { layers: number; kvHeads: number; headDim: number; vocab: number };

export declare function decoderShape(config: Record<string, unknown>): DecoderShape;
export declare function decoderFeeds(
  runtime: typeof ort,
  shape: DecoderShape,
  ids: number[],
  past: number,
  cache: Record<string, ort.Tensor> | undefined,
  /** For a graph with `num_logits_to_keep`: the last `keep` positions get logits (0: all). */
  keep?: number,
): Record<string, ort.Tensor>;
/** The first largest of `length` values from `offset`. */
export declare function argmaxAt(values: Float32Array, offset: number, length: number): number;
/** Greedy decoding through the KV cache: a prefill run, then one run per token. */
export declare function greedyDecode(
  runtime: typeof ort,
  session: ort.InferenceSession,
  shape: DecoderShape,
  prompt: number[],
  count: number,
  options?: { keepLogits?: boolean },
): Promise<{ ids: number[]; steps: Float32Array[]; decodeMs: number }>;
/** One run over prompt ++ output: the logits that predicted each output token. */
export declare function teacherForced(
  runtime: typeof ort,
  session: ort.InferenceSession,
  shape: DecoderShape,
  prompt: number[],
  output: number[],
): Promise<Float32Array[]>;
