import onnxProto from 'onnx-proto';
import { hashTensors } from '../../protocol/encoding.js';
import { GlassboxError } from '../../protocol/errors.js';
import { traceTree } from '../../protocol/merkle.js';
import type { TensorMap } from '../../protocol/tensor.js';
import type { Trace, TraceStep } from '../engine.js';

const { onnx } = onnxProto;

/** A node output of the top-level graph, in node order: what a trace hashes. */
export type TracePoint = Omit<TraceStep, 'hash'>;

/**
 * The model rewritten so that every node output of its top-level graph is also a graph output, and
 * the list of those outputs in node order. onnxruntime accepts untyped graph outputs and infers
 * them. Measured on the example models at every optimisation level: exposing the intermediates
 * leaves the final outputs' bits unchanged (a test keeps it so); a traced run is nevertheless the
 * run whose outputs are reported, so the trace and the outputHash always come from one execution.
 * Nodes inside subgraphs (If, Loop, Scan bodies) are not traced.
 */
export function exposeIntermediates(modelBytes: Uint8Array): { bytes: Uint8Array; points: TracePoint[] } {
  let model: onnxProto.onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(modelBytes);
  } catch (cause) {
    throw new GlassboxError('MODEL_INVALID', 'the model is not a valid ONNX protobuf', { cause });
  }
  const graph = model.graph;
  if (!graph) throw new GlassboxError('MODEL_INVALID', 'the ONNX model has no graph');
  const graphOutputs = (graph.output ??= []);
  const outputs = new Set(graphOutputs.map((o) => o.name));
  const points: TracePoint[] = [];
  (graph.node ?? []).forEach((node, position) => {
    const op = node.opType ?? '';
    const name = node.name ? node.name : `${op}#${position}`;
    for (const output of node.output ?? []) {
      if (!output) continue; // an omitted optional output
      points.push({ index: points.length, node: name, op, output });
      if (!outputs.has(output)) graphOutputs.push(onnx.ValueInfoProto.create({ name: output }));
    }
  });
  return { bytes: onnx.ModelProto.encode(model).finish(), points };
}

/** Hashes each traced tensor and builds the Merkle tree over them. */
export function buildTrace(points: readonly TracePoint[], tensors: TensorMap): Trace {
  const steps = points.map((point) => {
    const value = tensors[point.output];
    if (!value) throw new GlassboxError('RUN_FAILED', `the traced run did not produce ${point.output}`);
    return { ...point, hash: hashTensors({ [point.output]: value }) };
  });
  if (steps.length === 0) throw new GlassboxError('MODEL_INVALID', 'the graph has no nodes to trace');
  return { root: traceTree(steps.map((s) => s.hash)).root, steps };
}

/**
 * The first step at which two traces of the same model and input disagree: where a verifier's
 * re-execution and a provider's part ways. `undefined` when they agree throughout.
 */
export function firstDivergence(a: readonly TraceStep[], b: readonly TraceStep[]): TraceStep | undefined {
  const length = Math.max(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a[i];
    const y = b[i];
    if (!x || !y || x.output !== y.output || x.hash !== y.hash) return x ?? y;
  }
  return undefined;
}
