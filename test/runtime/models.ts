import onnxProto from 'onnx-proto';
import { modelIdOf, type ModelPackage } from '../../src/protocol/manifest.js';
import { buildManifest } from '../../src/store/index.js';

/*
 * Small ONNX graphs built in the test, for what the example models do not contain (fusable
 * patterns, float16 and uint64 intermediates, sequences), and edits of the example models.
 */

const { onnx } = onnxProto;
export { onnx };

/** ONNX TensorProto.DataType codes used here. */
export const T = { float32: 1, int64: 7, float16: 10, uint64: 13 } as const;

export function valueInfo(name: string, elemType: number, dims: readonly (number | string)[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

export function node(
  opType: string,
  input: string[],
  output: string[],
  attribute: onnxProto.onnx.IAttributeProto[] = [],
  name = output[0],
) {
  return onnx.NodeProto.create({ opType, input, output, attribute, ...(name ? { name } : {}) });
}

export function intAttr(name: string, i: number) {
  return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i });
}

/** A float32 initializer filled from a seeded generator, values in [-1, 1). */
export function floats(name: string, dims: number[], seed: number) {
  let s = seed >>> 0;
  const count = dims.reduce((a, b) => a * b, 1);
  const floatData = Array.from({ length: count }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  });
  return onnx.TensorProto.create({ name, dataType: T.float32, dims, floatData });
}

export function onnxModel(graph: {
  inputs: onnxProto.onnx.IValueInfoProto[];
  outputs: onnxProto.onnx.IValueInfoProto[];
  nodes: onnxProto.onnx.INodeProto[];
  initializers?: onnxProto.onnx.ITensorProto[];
}): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: onnx.GraphProto.create({
      name: 'test',
      input: graph.inputs,
      output: graph.outputs,
      node: graph.nodes,
      initializer: graph.initializers ?? [],
    }),
  });
  return onnx.ModelProto.encode(model).finish();
}

/** A package of one ONNX file, its manifest read from the graph by the store (as packing does). */
export async function packageOf(bytes: Uint8Array, name = 'test'): Promise<ModelPackage> {
  const manifest = await buildManifest({
    entry: { path: 'model.onnx', bytes },
    name,
    version: '1',
    policy: { kind: 'exact' },
  });
  return { id: modelIdOf(manifest), manifest, files: new Map([['model.onnx', bytes]]) };
}

/** The package's model with one float32 initializer's first element changed by `delta`. */
export async function perturbWeight(pkg: ModelPackage, initializer: string, delta: number) {
  const model = onnx.ModelProto.decode(pkg.files.get(pkg.manifest.entry)!);
  const t = model.graph!.initializer!.find((i) => i.name === initializer);
  if (!t || t.dataType !== T.float32) throw new Error(`no float32 initializer ${initializer}`);
  if (t.rawData && t.rawData.length > 0) {
    const raw = t.rawData.slice();
    const view = new DataView(raw.buffer);
    view.setFloat32(0, view.getFloat32(0, true) + delta, true);
    t.rawData = raw;
  } else {
    t.floatData![0]! += delta;
  }
  return packageOf(onnx.ModelProto.encode(model).finish(), `${pkg.manifest.name}-perturbed`);
}

/** Conv followed by Mul with a constant: at `basic` and above, onnxruntime folds the Mul into the weights. */
export function convMulModel(): Uint8Array {
  return onnxModel({
    inputs: [valueInfo('x', T.float32, ['n', 3, 16, 16])],
    outputs: [valueInfo('y', T.float32, ['n', 8, 14, 14])],
    nodes: [node('Conv', ['x', 'W'], ['c']), node('Mul', ['c', 's'], ['y'])],
    initializers: [floats('W', [8, 3, 3, 3], 7), floats('s', [8, 1, 1], 8)],
  });
}
