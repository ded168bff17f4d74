import type { Hex } from 'viem';
import type { ModelPackage } from '../protocol/manifest.js';
import type { RuntimeProfile } from '../protocol/runtime-profile.js';
import type { TensorMap } from '../protocol/tensor.js';

/**
 * An engine runs model packages under one pinned runtime profile. ONNX is the first engine; LLM
 * engines (token generation with teacher-forced verification) will implement the same shape.
 */
export type Engine = {
  readonly profile: RuntimeProfile;
  /** keccak256 of the profile: the `runtime` of every receipt this engine's results go into. */
  readonly runtimeHash: Hex;
  run(pkg: ModelPackage, inputs: TensorMap, options?: RunOptions): Promise<RunResult>;
  /** Releases cached sessions; runs in flight finish first. */
  close(): Promise<void>;
};

export type RunOptions = {
  /** Also hash every intermediate tensor, for bisecting disagreements later. */
  readonly trace?: boolean;
  /** Overrides the engine's per-run time limit. */
  readonly timeoutMs?: number;
};

/** One intermediate tensor of a traced run, in graph (node) order. */
export type TraceStep = {
  readonly index: number;
  /** The node's name, or `<op>#<position>` when the graph leaves it unnamed. */
  readonly node: string;
  readonly op: string;
  /** The tensor's name in the graph. */
  readonly output: string;
  /** keccak256 of the canonical encoding of `{[output]: tensor}`. */
  readonly hash: Hex;
};

export type Trace = {
  /** Merkle root over the steps (see `traceTree`): the receipt's `traceRoot`. */
  readonly root: Hex;
  readonly steps: readonly TraceStep[];
};

export type RunResult = {
  /** The outputs the manifest declares, in its order. */
  readonly outputs: TensorMap;
  readonly inputHash: Hex;
  readonly outputHash: Hex;
  readonly runtime: Hex;
  /** The trace's root, or the zero hash when the run was not traced. */
  readonly traceRoot: Hex;
  readonly trace?: Trace;
  /** Wall time of the model run itself, in ms. */
  readonly durationMs: number;
};

export type RuntimeLimits = {
  /** The largest model package (all files) an engine will load. */
  readonly maxModelBytes: number;
  /** The largest total input data a run accepts. */
  readonly maxInputBytes: number;
  /** How long one run may take. */
  readonly timeoutMs: number;
};

export const DEFAULT_LIMITS: RuntimeLimits = {
  maxModelBytes: 512 * 1024 * 1024,
  maxInputBytes: 64 * 1024 * 1024,
  timeoutMs: 30_000,
};
