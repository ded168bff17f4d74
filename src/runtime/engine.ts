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
export type Engine = {
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
