import type { Hex } from 'viem';
import { GlassboxError } from '../protocol/errors.js';
import { traceRoot } from '../protocol/merkle.js';

/*
 * Execution traces, independent of any engine (no native code here, so a verifier or a browser can
 * compare traces without loading a runtime). A trace is the hashes of up to `TRACE_STEPS`
 * intermediate tensors, evenly spaced over the graph (`traceStepPositions`), in graph order, and the
 * Merkle root over them (`traceTree`), which goes into a receipt as its `traceRoot`. Two executions
 * of one model on one input that part ways do so at a first step; the committee re-runs the graph
 * only up to that step.
 */

/**
 * How many intermediates a trace hashes at most. A checkpoint, not every operator: each traced
 * tensor must be a graph output, which blocks the fusions that would consume it, keeps its buffer
 * alive and is copied out and hashed, so tracing all 1,683 intermediates of the 20 ms benchmark
 * model cost +26-30 % in onnxruntime before any hashing and +300 % in all (docs/performance.md).
 * Bisection needs checkpoints, not operators: a committee re-runs the prefix up to the first
 * divergent step from the inputs, and that prefix is at most the whole graph either way.
 */
export const TRACE_STEPS = 8;

/**
 * Which of a graph's `count` node outputs (in node order) a trace hashes: `TRACE_STEPS` of them
 * evenly spaced, the last always included (all of them when there are no more than that).
 */
export function traceStepPositions(count: number): number[] {
  const steps = Math.min(count, TRACE_STEPS);
  return Array.from({ length: steps }, (_, i) => Math.floor(((i + 1) * count) / steps) - 1);
}

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
  /** Merkle root over the steps' hashes (see `traceTree`): the receipt's `traceRoot`. */
  readonly root: Hex;
  readonly steps: readonly TraceStep[];
};

/** The trace of a list of steps: their Merkle root (leaf i is `(i, steps[i].hash)`). */
export function traceOf(steps: readonly TraceStep[]): Trace {
  if (steps.length === 0) throw new GlassboxError('RUN_FAILED', 'a trace needs at least one step');
  steps.forEach((step, i) => {
    if (step.index !== i)
      throw new GlassboxError('RUN_FAILED', `trace step ${i} carries index ${step.index}`, {
        field: `trace.steps[${i}].index`,
      });
  });
  return { root: traceRoot(steps.map((s) => s.hash)), steps };
}

/** Where two traces part ways: the step in each (absent where one trace is shorter). */
export type Divergence = {
  readonly index: number;
  /** The step of the first trace at `index`; undefined when it ends before. */
  readonly a: TraceStep | undefined;
  /** The step of the second trace at `index`; undefined when it ends before. */
  readonly b: TraceStep | undefined;
};

/**
 * The first step at which two traces of the same model and input disagree: where a verifier's
 * re-execution and a provider's part ways. A step disagrees when its tensor (name) or its hash
 * differs, or when one trace has ended. Everything before `index` agreed bit for bit, so the
 * operators between the previous checkpoint and `index` (up to and including its node) turned
 * equal inputs into different outputs. `undefined`
 * when the traces agree throughout.
 */
export function firstDivergence(a: readonly TraceStep[], b: readonly TraceStep[]): Divergence | undefined {
  const length = Math.max(a.length, b.length);
  for (let index = 0; index < length; index++) {
    const x = a[index];
    const y = b[index];
    if (!x || !y || x.output !== y.output || x.hash !== y.hash) return { index, a: x, b: y };
  }
  return undefined;
}
