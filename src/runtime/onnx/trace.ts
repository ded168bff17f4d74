import onnxProto from 'onnx-proto';
import type ort from 'onnxruntime-node';
import type { Hex } from 'viem';
import { dataHash } from '../../protocol/data.js';
import { hashTensors } from '../../protocol/encoding.js';
import { GlassboxError } from '../../protocol/errors.js';
import { isDType, type Tensor } from '../../protocol/tensor.js';
import { traceStepPositions, type TraceStep } from '../trace.js';

const { onnx } = onnxProto;

/** A node output of the top-level graph that a trace hashes, in node order. */
export type TracePoint = Omit<TraceStep, 'hash'>;

/**
 * The model rewritten so that the node outputs of its top-level graph that a trace hashes
 * (`traceStepPositions`: up to TRACE_STEPS, evenly spaced in node order) are also graph outputs,
 * and those outputs in node order (ONNX requires nodes to be topologically sorted, so every node's
 * inputs come before it).
 *
 * Type information: the added outputs carry only a name, no type. onnxruntime needs none: it infers
 * the type of every node output itself when it resolves the graph (ONNX's inference functions are
 * built in) and reports it in the session's output metadata, which `tracePoints` reads to leave out
 * the values that are not tensors (sequences, maps), because onnxruntime-node cannot return them.
 *
 * Numerics: a graph output cannot be fused away, so exposing an intermediate blocks the fusions
 * that would have consumed it (Conv+Mul, Conv+BatchNormalization and the like fold constants into
 * weights at `basic` and above). A traced run therefore executes a different graph than an untraced
 * one, and its outputs may differ in the last bits (measured; see test/runtime/trace.test.ts).
 * The engine reports a traced run's own outputs, so outputs, outputHash and trace always come from
 * one execution; a verifier re-executes a receipt traced iff its traceRoot is non-zero.
 *
 * Nodes inside subgraphs (If, Loop, Scan bodies) are not traced.
 *
 * With `throughPoint`, the graph is cut after the node that produces that point (counting every
 * chosen output, tensor or not): a prefix of the traced graph, every kept point still exposed, so
 * its values are those of the whole traced run (a committee member re-runs only up to the step a
 * challenge names; tested bit for bit). `complete` is false when nodes were cut.
 */
export function exposeIntermediates(
  modelBytes: Uint8Array,
  throughPoint?: number,
): { bytes: Uint8Array; points: TracePoint[]; complete: boolean } {
  let model: onnxProto.onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(modelBytes);
  } catch (cause) {
    throw new GlassboxError('MODEL_INVALID', 'the model is not a valid ONNX protobuf', { cause });
  }
  const graph = model.graph;
  if (!graph) throw new GlassboxError('MODEL_INVALID', 'the ONNX model has no graph');
  const nodes = graph.node ?? [];
  const produced = nodes.flatMap((node, position) => {
    const op = node.opType ?? '';
    const name = node.name ? node.name : `${op}#${position}`;
    // an empty name is an omitted optional output
    return (node.output ?? []).filter((output) => output).map((output) => ({ position, name, op, output }));
  });
  const chosen = traceStepPositions(produced.length).map((i) => produced[i]!);
  const kept = throughPoint === undefined ? chosen : chosen.slice(0, throughPoint + 1);
  const points: TracePoint[] = kept.map((p, index) => ({ index, node: p.name, op: p.op, output: p.output }));
  const graphOutputs = (graph.output ??= []);
  const outputs = new Set(graphOutputs.map((o) => o.name));
  for (const { output } of points)
    if (!outputs.has(output)) {
      graphOutputs.push(onnx.ValueInfoProto.create({ name: output }));
      outputs.add(output);
    }
  const end = kept.length < chosen.length ? kept[kept.length - 1]!.position + 1 : nodes.length;
  if (end < nodes.length) {
    // A cut graph. Its kept nodes must compute what they compute in the whole traced graph, so
    // every value that is a graph output there, or read by a node the cut removes, stays a graph
    // output: otherwise a fusion that needs a single consumer, or a non-output, could fire here and
    // not there (MatMul+Add into Gemm, Conv+BatchNormalization) and change bits before the step.
    const prefix = nodes.slice(0, end);
    const made = new Set(prefix.flatMap((n) => n.output ?? []));
    const readLater = new Set(namesRead(nodes.slice(end)));
    graph.node = prefix;
    graph.output = [
      ...graphOutputs.filter((o) => made.has(o.name ?? '')),
      ...[...made]
        .filter((name) => name && readLater.has(name) && !outputs.has(name))
        .map((name) => onnx.ValueInfoProto.create({ name })),
    ];
    // and only the weights its nodes read (onnxruntime warns about each unused one)
    const read = new Set(namesRead(graph.node));
    graph.initializer = (graph.initializer ?? []).filter((t) => read.has(t.name ?? ''));
  }
  // Complete when every chosen point is kept (the last node may make several of them).
  return { bytes: onnx.ModelProto.encode(model).finish(), points, complete: kept.length === chosen.length };
}

/** Every value name the nodes read, those in their subgraphs (If, Loop, Scan bodies) included. */
function namesRead(nodes: readonly onnxProto.onnx.INodeProto[]): string[] {
  return nodes.flatMap((n) => [
    ...(n.input ?? []),
    ...(n.attribute ?? []).flatMap((a) =>
      [a.g, ...(a.graphs ?? [])].flatMap((g) => namesRead(g?.node ?? [])),
    ),
  ]);
}

/**
 * The points a traced session can return: the tensor-valued ones, renumbered. Which values are
 * tensors follows from the model and the pinned onnxruntime version alone, so every execution under
 * one profile traces the same steps.
 */
export function tracePoints(
  points: readonly TracePoint[],
  metadata: readonly ort.InferenceSession.ValueMetadata[],
): TracePoint[] {
  const tensors = new Set(metadata.filter((m) => m.isTensor).map((m) => m.name));
  return points.filter((p) => tensors.has(p.output)).map((p, index) => ({ ...p, index }));
}

/**
 * ONNX type codes of the tensor types a model may compute internally that Glassbox tensors do not
 * carry. A trace hashes them with the same layout as the canonical encoding (docs/protocol.md), their
 * ONNX code as the dtype byte and their little-endian element bytes as the data (4-bit types: the
 * packed bytes onnxruntime holds).
 */
const EXTRA_CODES: Readonly<Record<string, number>> = {
  uint16: 4,
  float16: 10,
  uint32: 12,
  uint64: 13,
  uint4: 21,
  int4: 22,
};

/** A trace step's hash: the dataHash of the canonical encoding of `{[name]: tensor}`. */
export function traceLeaf(name: string, value: ort.Tensor): Hex {
  const dtype = value.type;
  const shape = value.dims.map(Number);
  if (isDType(dtype)) return hashTensors({ [name]: { dtype, shape, data: value.data } as Tensor });
  const code = EXTRA_CODES[dtype];
  if (code === undefined)
    throw new GlassboxError(
      'RUN_FAILED',
      `intermediate ${name} has dtype ${dtype}, which a trace cannot hash`,
      {
        field: name,
      },
    );
  const data = value.data as ArrayBufferView;
  const nameBytes = new TextEncoder().encode(name);
  const out = new Uint8Array(4 + nameBytes.length + 1 + 4 + 8 * shape.length + data.byteLength);
  const view = new DataView(out.buffer);
  let at = 0;
  view.setUint32(at, nameBytes.length, true);
  out.set(nameBytes, (at += 4));
  view.setUint8((at += nameBytes.length), code);
  view.setUint32((at += 1), shape.length, true);
  at += 4;
  for (const dim of shape) {
    view.setBigUint64(at, BigInt(dim), true);
    at += 8;
  }
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
  return dataHash(out);
}
