import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** A dim: a size, a symbolic name, or null for a dim with neither (unknown). */
export type FixtureDim = number | string | null;

export type FixtureValue = {
  name: string;
  /** ONNX TensorProto.DataType number. */
  elemType: number;
  /** undefined: no shape at all (unknown rank). */
  dims?: FixtureDim[];
};

export const ELEM = onnx.TensorProto.DataType;

export function valueInfo({ name, elemType, dims }: FixtureValue): onnxProto.onnx.IValueInfoProto {
  const shape =
    dims === undefined
      ? null
      : {
          dim: dims.map((d) => (d === null ? {} : typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
        };
  return { name, type: { tensorType: { elemType, ...(shape === null ? {} : { shape }) } } };
}

/**
 * A small ONNX model with the given graph inputs and outputs (Identity nodes join them; the store
 * only reads the interface, it never runs the graph). `initializers` are added as graph inputs that
 * have a default value, as older exporters do, and must not appear in the schema.
 */
export function onnxModel(spec: {
  inputs: FixtureValue[];
  outputs: FixtureValue[];
  initializers?: string[];
  doc?: string;
}): Uint8Array {
  const initializers = (spec.initializers ?? []).map((name) => ({
    name,
    dataType: ELEM.FLOAT,
    dims: [1],
    rawData: new Uint8Array(4),
  }));
  const sources = [...spec.inputs.map((v) => v.name), ...initializers.map((t) => t.name)];
  return onnx.ModelProto.encode({
    irVersion: onnx.Version.IR_VERSION,
    producerName: 'glassbox-store-tests',
    docString: spec.doc ?? '',
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'fixture',
      node: spec.outputs.map((o, i) => ({
        opType: 'Identity',
        input: [sources[i % sources.length]!],
        output: [o.name],
      })),
      initializer: initializers,
      input: [
        ...spec.inputs.map(valueInfo),
        ...initializers.map((t) => valueInfo({ name: t.name, elemType: ELEM.FLOAT, dims: [1] })),
      ],
      output: spec.outputs.map(valueInfo),
    },
  }).finish();
}

/** A classifier-shaped model: x [batch, 4] float32 -> scores [batch, 3] float32. */
export function tinyClassifier(doc = ''): Uint8Array {
  return onnxModel({
    inputs: [{ name: 'x', elemType: ELEM.FLOAT, dims: ['batch', 4] }],
    outputs: [{ name: 'scores', elemType: ELEM.FLOAT, dims: ['batch', 3] }],
    doc,
  });
}
