/** Types for tiny-chat.mjs, so that TypeScript tests can build the LLM examples in memory. */
import type { LlmExampleName } from '../build.mjs';

export type Qwen3Dims = {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  maxPositions: number;
  ropeTheta: number;
  rmsNormEps: number;
};

export declare const TINY_CHAT_DIMS: Qwen3Dims;
export declare const LLM_EXAMPLES: readonly LlmExampleName[];

/** One example: its folder's files by path (objects are written as JSON), model.json, a log line. */
export type LlmExample = {
  files: Record<string, Uint8Array | object>;
  options: {
    name: string;
    version: string;
    description: string;
    license: string;
    policy: { kind: 'token-margin'; hard: number; soft: number; rate: number };
  };
  summary: string;
};

/** config.json of a Qwen3 model of these sizes. */
export declare function qwen3Config(d: Qwen3Dims): Record<string, unknown>;
/** The four examples, built in memory; the same bytes on every call. */
export declare function llmExamples(): Record<LlmExampleName, LlmExample>;
/** tiny-chat's graph without the `num_logits_to_keep` input, as an Optimum export has it. */
export declare function tinyChatOnnxWithoutLogitsToKeep(): Uint8Array;
