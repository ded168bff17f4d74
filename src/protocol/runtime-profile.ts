import { keccak256, type Hex } from 'viem';
import { z } from 'zod';
import { canonicalJson } from './canonical-json.js';

/**
 * Everything besides model and input that determines the output bits (docs/protocol.md, Runtime
 * profile). Measured: onnxruntime is bit-identical across runs and thread counts, but not across
 * graph optimisation levels, nor between its native and wasm builds for float32; native kernels
 * are chosen by CPU architecture. Thread counts are therefore not part of a profile, and
 * everything else that can change numerics is. Its keccak256 is the `runtime` of a receipt.
 */
export const onnxProfileSchema = z.strictObject({
  engine: z.enum(['onnxruntime-node', 'onnxruntime-web']),
  engineVersion: z.string().regex(/^\d+\.\d+\.\d+/),
  executionProvider: z.enum(['cpu', 'wasm']),
  graphOptimizationLevel: z.enum(['disabled', 'basic', 'extended', 'all']),
  /** CPU architecture (`x64`, `arm64`, `wasm32`): native float kernels differ between them. */
  arch: z.string().min(1),
  /** Session config entries that change numerics (e.g. `session.set_denormal_as_zero`). */
  options: z.record(z.string(), z.string()),
});

/**
 * The LLM engine (src/runtime/llm) on onnxruntime: what determines its logits, plus the sampler
 * (docs/protocol.md, Sampling). Its generations are re-checked by token margins, which accept honest
 * output across profiles; within one profile a re-check reproduces the claimed tokens exactly.
 */
export const llmProfileSchema = z.strictObject({
  engine: z.literal('glassbox-llm'),
  /** The version of src/runtime/llm's generation loop (KV cache, stopping, sampling calls). */
  engineVersion: z.string().regex(/^\d+\.\d+\.\d+/),
  /** The onnxruntime build that computes the logits. */
  onnxruntime: z.enum(['onnxruntime-node', 'onnxruntime-web']),
  onnxruntimeVersion: z.string().regex(/^\d+\.\d+\.\d+/),
  executionProvider: z.enum(['cpu', 'wasm']),
  graphOptimizationLevel: z.enum(['disabled', 'basic', 'extended', 'all']),
  arch: z.string().min(1),
  /** The sampling rule every generation follows: `philox4x32-10/gumbel-max/v1` (docs/protocol.md). */
  sampler: z.literal('philox4x32-10/gumbel-max/v1'),
});

/**
 * A profile, discriminated by `engine`: a new engine (src/runtime/<format>/) adds the schema of
 * what determines its output bits to this union.
 */
export const runtimeProfileSchema = z.discriminatedUnion('engine', [onnxProfileSchema, llmProfileSchema]);

export type RuntimeProfile = z.infer<typeof runtimeProfileSchema>;
export type OnnxProfile = z.infer<typeof onnxProfileSchema>;
export type LlmProfile = z.infer<typeof llmProfileSchema>;
export type GraphOptimizationLevel = OnnxProfile['graphOptimizationLevel'];

/**
 * The profile's canonical JSON (RFC 8785): what the ProviderRegistry admits on chain
 * (`admitRuntime` hashes exactly these bytes).
 */
export function runtimeProfileJson(profile: RuntimeProfile): string {
  return canonicalJson(profile);
}

/** The receipt's `runtime` field: keccak256 of the profile's canonical JSON. */
export function runtimeHash(profile: RuntimeProfile): Hex {
  return keccak256(new TextEncoder().encode(runtimeProfileJson(profile)));
}
