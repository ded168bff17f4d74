import type { Hex } from 'viem';
import type { ModelPackage } from '../protocol/manifest.js';
import type { RuntimeProfile } from '../protocol/runtime-profile.js';
import type { TensorMap } from '../protocol/tensor.js';
import type { Trace, TraceStep } from './trace.js';

export type { Divergence, Trace, TraceStep } from './trace.js';

/**
 * An engine runs the model packages of one manifest `format` under one pinned runtime profile.
 * ONNX is the first engine; LLM engines (token generation with teacher-forced verification) will
 * implement the same shape. Callers find an engine in the registry (src/runtime/registry.ts), by
 * the model's format, never by constructing one.
 */
export type TensorEngine = {
  readonly kind: 'tensors';
  /** The manifest `format` it runs. */
  readonly format: string;
  /** What it can do beyond running a model: callers ask for these (`engines.for(pkg, { trace })`). */
  readonly capabilities: EngineCapabilities;
  readonly profile: RuntimeProfile;
  /** keccak256 of the profile: the `runtime` of every receipt this engine's results go into. */
  readonly runtimeHash: Hex;
  /**
   * Checks the inputs against the manifest's schema (names, dtypes, shapes, total size), runs the
   * model and hashes inputs and declared outputs. Refusals are GlassboxErrors naming the field.
   */
  run(pkg: ModelPackage, inputs: TensorMap, options?: RunOptions): Promise<RunResult>;
  /**
   * (capability `trace`) Runs the traced model only up to traced step `step` and returns that step (its hash is the
   * one a whole traced run gives): how a committee member checks the operator a bisected
   * challenge names without running the rest of the model.
   */
  traceStep(
    pkg: ModelPackage,
    inputs: TensorMap,
    step: number,
    options?: RunOptions,
  ): Promise<TraceStepResult>;
  /**
   * Loads the model now, as its first run would (and keeps it loaded): a model the runtime cannot
   * load, or whose graph its manifest does not describe, is refused with MODEL_INVALID before it
   * is served rather than at a client's first request.
   */
  load(pkg: ModelPackage): Promise<void>;
  /** Releases cached sessions; runs in flight finish first. */
  close(): Promise<void>;
};

export type EngineCapabilities = {
  /**
   * Traced runs (`RunOptions.trace`) and `traceStep`: what bisecting a disputed answer needs. An
   * engine without it refuses both.
   */
  readonly trace: boolean;
};

export type RunOptions = {
  /**
   * Also hash up to TRACE_STEPS intermediate tensors, evenly spaced over the graph, for bisecting
   * disagreements later (src/runtime/trace.ts). A traced run is an
   * execution of its own: it may differ in the last bits from an untraced one under the same
   * profile (an exposed intermediate blocks the fusions that would consume it), and its outputs are
   * the ones reported. Re-execute a receipt traced iff its traceRoot is non-zero.
   */
  readonly trace?: boolean;
  /** Overrides the engine's per-run time limit. */
  readonly timeoutMs?: number;
  /**
   * The inputs' hash when the caller has it already (a node hashed the bytes the request came in):
   * reported as the result's inputHash instead of hashing large inputs a second time.
   */
  readonly inputHash?: Hex;
};

export type RunResult = {
  /** The outputs the manifest declares, in its order. */
  readonly outputs: TensorMap;
  readonly inputHash: Hex;
  readonly outputHash: Hex;
  /** The engine's runtime hash. */
  readonly runtime: Hex;
  /** The trace's root, or the zero hash when the run was not traced. */
  readonly traceRoot: Hex;
  readonly trace?: Trace;
  /** Wall time of the model run itself (not loading it), in ms. */
  readonly durationMs: number;
};

export type TraceStepResult = {
  readonly step: TraceStep;
  /** Wall time of the (partial) run, in ms. */
  readonly durationMs: number;
};

export type RuntimeLimits = {
  /** The largest model package (all files) an engine will load. */
  readonly maxModelBytes: number;
  /** The largest total input data a run accepts. */
  readonly maxInputBytes: number;
  /** How long one run may take (loading a model is not counted). */
  readonly timeoutMs: number;
};

export const DEFAULT_LIMITS: RuntimeLimits = {
  maxModelBytes: 512 * 1024 * 1024,
  maxInputBytes: 64 * 1024 * 1024,
  timeoutMs: 30_000,
};

/**
 * What a token engine generates from: a chat (templated with the model's own chat template) or a
 * raw prompt (tokenized as it is). The message shape is OpenAI's text subset.
 */
export type LlmPrompt =
  | { readonly kind: 'chat'; readonly messages: readonly ChatMessage[] }
  | { readonly kind: 'completion'; readonly prompt: string };

export type ChatMessage = {
  readonly role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  readonly content: string;
};

/** A prompt after templating: its text and token ids (what a receipt's inputHash covers). */
export type PromptTokens = { readonly text: string; readonly ids: readonly number[] };

/**
 * The sampling parameters of one generation, defaults filled in (docs/protocol.md, Sampling):
 * exactly what a receipt's paramsHash covers. temperature 0 is greedy.
 */
export type SamplingParams = {
  readonly temperature: number;
  /** (0, 1]; 1 keeps every token. */
  readonly topP: number;
  /** 0 keeps every token. */
  readonly topK: number;
  /** uint64: the client's, or one the provider picked and discloses. */
  readonly seed: bigint;
  readonly maxTokens: number;
  /** Up to 4 strings; the output ends at (and its text before) the first that appears. */
  readonly stop: readonly string[];
};

export type GenerateOptions = {
  readonly params: SamplingParams;
  /** Aborting stops the generation before its next token: what a client going away does. */
  readonly signal?: AbortSignal;
  /** Also report each token's logprob and this many alternatives (0-20); undefined: none. */
  readonly logprobs?: number;
  /**
   * Continue a generation (docs/protocol.md, Continuing a generation): output ids already produced
   * for this same request, prefilled after the prompt. The new tokens are sampled at positions
   * prefixIds.length + i and `params.maxTokens` counts only them, so a continuation yields exactly
   * the tokens (and text deltas) an uninterrupted run yields after the prefix. Events and `done`
   * carry only the new tokens and their text.
   */
  readonly prefixIds?: readonly number[];
};

export type FinishReason = 'stop' | 'length';

export type TokenLogprob = {
  readonly token: string;
  readonly logprob: number;
  readonly bytes: readonly number[];
};

/**
 * What a generation yields, in order: one `token` per output token (its `text` is the new text it
 * makes visible, possibly empty while a UTF-8 sequence or a possible stop string is incomplete),
 * then exactly one `done`, unless it is aborted or fails (then the iterator throws).
 */
export type GenerationEvent =
  | {
      readonly type: 'token';
      readonly id: number;
      readonly text: string;
      readonly logprob?: TokenLogprob & { readonly top: readonly TokenLogprob[] };
    }
  | {
      readonly type: 'done';
      readonly finishReason: FinishReason;
      /** Every output token id, including the EOS or the token that completed a stop string. */
      readonly outputIds: readonly number[];
      /** The visible text: without EOS, cut before a stop string. */
      readonly text: string;
      /** Wall time of prefill and decoding, in ms. */
      readonly durationMs: number;
    };

/**
 * An engine for token generation (format `llm`): templating, tokenizing, generating with a KV cache
 * under the protocol's sampler, and the teacher-forced pass a re-check needs. Found in the registry
 * with `engines.tokens(pkg)`.
 */
export type TokenEngine = {
  readonly kind: 'tokens';
  readonly format: string;
  readonly capabilities: EngineCapabilities;
  readonly profile: RuntimeProfile;
  readonly runtimeHash: Hex;
  /** Templates a chat with the model's own template (or takes a raw prompt) and tokenizes it. */
  prompt(pkg: ModelPackage, prompt: LlmPrompt): Promise<PromptTokens>;
  /** Generates from prompt ids; CONTEXT_TOO_LONG-style refusals are REQUEST_INVALID naming the field. */
  generate(
    pkg: ModelPackage,
    promptIds: readonly number[],
    options: GenerateOptions,
  ): AsyncIterable<GenerationEvent>;
  /**
   * Teacher-forced forward passes over prompt + output: row t of the result is the logits that
   * predicted `outputIds[t]` (vocabSize float32 values). Rows, not one flat array: an engine may
   * compute them in several passes and hand out views of each pass's output, uncopied.
   */
  score(
    pkg: ModelPackage,
    promptIds: readonly number[],
    outputIds: readonly number[],
  ): Promise<readonly Float32Array[]>;
  /** Decodes token ids to text, as the tokenizer does (special tokens skipped). */
  decode(pkg: ModelPackage, ids: readonly number[]): Promise<string>;
  load(pkg: ModelPackage): Promise<void>;
  close(): Promise<void>;
};

/** Any engine the registry holds. */
export type AnyEngine = TensorEngine | TokenEngine;
