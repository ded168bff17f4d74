import onnxProto from 'onnx-proto';
import { DTYPE_BY_CODE, GlassboxError, type Dim, type DType, type TensorSpec } from '../protocol/index.js';

const { onnx } = onnxProto;

/** A model's interface as its ONNX graph declares it. */
export type OnnxSchema = {
  readonly inputs: TensorSpec[];
  readonly outputs: TensorSpec[];
};

/**
 * Reads the inputs and outputs an ONNX model declares (ModelProto.graph), as Glassbox tensor specs:
 * dtype from the element type, shape from each dim's `dim_value` (a size) or `dim_param` (a symbolic
 * name), `'?'` when a dim has neither. Graph inputs that are initializers (weights given a default)
 * are not inputs. Throws MODEL_INVALID, naming the tensor, for what Glassbox cannot carry (an element
 * type outside its dtypes, a non-tensor type, an unknown rank) and for bytes that are not an ONNX
 * model at all.
 */
export function readOnnxSchema(bytes: Uint8Array): OnnxSchema {
  let model: InstanceType<typeof onnx.ModelProto>;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (cause) {
    throw notOnnx(`it does not decode as an ONNX ModelProto (${(cause as Error).message})`, cause);
  }
  // Protobuf decoding is lenient: other bytes can decode into a message with none of the parts a
  // model must have. An ONNX model has an IR version, an operator set and a graph with outputs.
  const irVersion = Number(model.irVersion);
  if (!(irVersion > 0)) throw notOnnx('it has no ir_version');
  if (model.opsetImport.length === 0) throw notOnnx('it imports no operator set');
  const graph = model.graph;
  if (graph === null || graph === undefined) throw notOnnx('it has no graph');
  const graphOutputs = graph.output ?? [];
  if (graphOutputs.length === 0) throw notOnnx('its graph has no outputs');

  const initializers = new Set((graph.initializer ?? []).map((t) => t.name));
  const inputs = (graph.input ?? [])
    .filter((v) => !initializers.has(v.name))
    .map((v, i) => tensorSpec(v, 'input', i));
  if (inputs.length === 0)
    throw new GlassboxError(
      'MODEL_INVALID',
      'ONNX model: its graph takes no inputs (other than initializers)',
    );
  const outputs = graphOutputs.map((v, i) => tensorSpec(v, 'output', i));
  return { inputs, outputs };
}

/** The Glassbox dtype of an ONNX element type (TensorProto.DataType), if it has one. */
export function dtypeOfElemType(elemType: number): DType | undefined {
  return DTYPE_BY_CODE.get(elemType);
}

function tensorSpec(
  value: onnxProto.onnx.IValueInfoProto,
  side: 'input' | 'output',
  index: number,
): TensorSpec {
  const name = value.name ?? '';
  const field = `${side}s.${name === '' ? index : name}`;
  if (name === '') throw invalid(`${side} ${index} has no name`, field);
  const what = `${side} "${name}"`;
  const tensorType = value.type?.tensorType;
  if (tensorType === null || tensorType === undefined) {
    const kind = (value.type as { value?: string } | null | undefined)?.value ?? 'no type';
    throw invalid(
      `${what} is ${kind === 'no type' ? 'untyped' : `a ${kind}`}; Glassbox carries tensors only`,
      field,
    );
  }
  const elemType = tensorType.elemType ?? 0;
  const dtype = dtypeOfElemType(elemType);
  if (dtype === undefined)
    throw invalid(
      `${what} has element type ${elemTypeName(elemType)}, which Glassbox does not carry`,
      `${field}.dtype`,
      ['supported: FLOAT, DOUBLE, INT8, UINT8, INT16, INT32, INT64, BOOL, STRING'],
    );
  const shape = tensorType.shape;
  if (shape === null || shape === undefined)
    throw invalid(`${what} has no shape (unknown rank); Glassbox needs at least the rank`, `${field}.shape`);
  return {
    name,
    dtype,
    shape: (shape.dim ?? []).map((d, i) => dimOf(d, `${what} dim ${i}`, `${field}.shape[${i}]`)),
  };
}

function dimOf(dim: onnxProto.onnx.TensorShapeProto.IDimension, what: string, field: string): Dim {
  if (dim.dimValue !== null && dim.dimValue !== undefined) {
    // int64: a number, or a Long when protobufjs finds the `long` package installed
    const size = typeof dim.dimValue === 'number' ? dim.dimValue : dim.dimValue.toNumber();
    if (!Number.isSafeInteger(size) || size < 0) throw invalid(`${what} is ${String(dim.dimValue)}`, field);
    return size;
  }
  if (dim.dimParam) return dim.dimParam;
  return '?';
}

function elemTypeName(code: number): string {
  const name = (onnx.TensorProto.DataType as unknown as Record<number, string | undefined>)[code];
  return name === undefined ? String(code) : `${name} (${code})`;
}

function invalid(message: string, field: string, metaMessages: string[] = []): GlassboxError {
  return new GlassboxError('MODEL_INVALID', `ONNX model: ${message}`, { field, metaMessages });
}

function notOnnx(why: string, cause?: unknown): GlassboxError {
  return new GlassboxError('MODEL_INVALID', `not an ONNX model: ${why}`, {
    ...(cause === undefined ? {} : { cause }),
  });
}
