/**
 * Just enough of ONNX to write small models by hand with onnx-proto (the ONNX protobuf schema,
 * v1.10, compiled for JavaScript): typed graph inputs and outputs, initializers, nodes and their
 * attributes, and the model around them. Tensors are stored as little-endian raw_data, and the
 * protobuf writer emits fields in schema order, so the same arguments always give the same bytes.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** The IR version of onnx-proto's schema (8); onnxruntime 1.30 reads it. */
export const IR_VERSION = onnx.Version.IR_VERSION;
export const PRODUCER_NAME = 'glassbox-examples';
export const PRODUCER_VERSION = '1';

/** @typedef {'float32' | 'uint8' | 'int8' | 'int32' | 'int64'} DType */
/** A dimension: a size, or a name for a symbolic one (dim_param), e.g. 'batch'. */
/** @typedef {number | string} Dim */

/** @type {Record<DType, number>} */
const ELEM_TYPE = {
  float32: onnx.TensorProto.DataType.FLOAT,
  uint8: onnx.TensorProto.DataType.UINT8,
  int8: onnx.TensorProto.DataType.INT8,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
};

/**
 * The ONNX element type number of a dtype (e.g. for Cast's `to`).
 * @param {DType} dtype
 * @returns {number}
 */
export function elemType(dtype) {
  return ELEM_TYPE[dtype];
}

/**
 * A graph input or output with its full tensor type.
 * @param {string} name
 * @param {DType} dtype
 * @param {Dim[]} dims
 * @returns {import('onnx-proto').onnx.IValueInfoProto}
 */
export function valueInfo(name, dtype, dims) {
  const dim = dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d }));
  return { name, type: { tensorType: { elemType: elemType(dtype), shape: { dim } } } };
}

/**
 * Little-endian bytes of `values` as `dtype`, the layout of TensorProto.raw_data.
 * @param {DType} dtype
 * @param {ArrayLike<number>} values
 * @returns {Uint8Array}
 */
function rawData(dtype, values) {
  const width = { float32: 4, uint8: 1, int8: 1, int32: 4, int64: 8 }[dtype];
  const view = new DataView(new ArrayBuffer(values.length * width));
  for (let i = 0; i < values.length; i++) {
    const v = /** @type {number} */ (values[i]);
    if (dtype === 'float32') view.setFloat32(i * 4, v, true);
    else if (dtype === 'uint8') view.setUint8(i, checkedInt(v, 0, 255));
    else if (dtype === 'int8') view.setInt8(i, checkedInt(v, -128, 127));
    else if (dtype === 'int32') view.setInt32(i * 4, checkedInt(v, -(2 ** 31), 2 ** 31 - 1), true);
    else
      view.setBigInt64(i * 8, BigInt(checkedInt(v, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)), true);
  }
  return new Uint8Array(view.buffer);
}

/**
 * @param {number} v
 * @param {number} min
 * @param {number} max
 * @returns {number} v, when it is an integer in [min, max]
 */
function checkedInt(v, min, max) {
  if (!Number.isInteger(v) || v < min || v > max)
    throw new RangeError(`${v} is not an integer in [${min}, ${max}]`);
  return v;
}

/**
 * A constant tensor (a graph initializer); `values` is flat, row-major.
 * @param {string} name
 * @param {DType} dtype
 * @param {number[]} dims
 * @param {ArrayLike<number>} values
 * @returns {import('onnx-proto').onnx.ITensorProto}
 */
export function initializer(name, dtype, dims, values) {
  const size = dims.reduce((a, b) => a * b, 1);
  if (size !== values.length) throw new RangeError(`${name}: ${values.length} values for dims [${dims}]`);
  return { name, dataType: elemType(dtype), dims, rawData: rawData(dtype, values) };
}

/** @typedef {import('onnx-proto').onnx.IAttributeProto} Attribute */

/**
 * @param {string} name
 * @param {number} value
 * @returns {Attribute}
 */
export function intAttr(name, value) {
  return { name, type: onnx.AttributeProto.AttributeType.INT, i: value };
}

/**
 * @param {string} name
 * @param {number[]} values
 * @returns {Attribute}
 */
export function intsAttr(name, values) {
  return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: values };
}

/**
 * @param {string} name
 * @param {number} value
 * @returns {Attribute}
 */
export function floatAttr(name, value) {
  return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: value };
}

/**
 * One operator. Nodes are named after their first output, which is unique in a graph.
 * @param {string} opType
 * @param {string[]} inputs
 * @param {string[]} outputs
 * @param {Attribute[]} [attributes]
 * @returns {import('onnx-proto').onnx.INodeProto}
 */
export function node(opType, inputs, outputs, attributes = []) {
  return { name: `${opType}:${outputs[0]}`, opType, input: inputs, output: outputs, attribute: attributes };
}

/**
 * @typedef {object} ModelSpec
 * @property {string} name the graph's name
 * @property {string} doc the model's doc_string
 * @property {number} opset the default domain's opset version
 * @property {import('onnx-proto').onnx.IValueInfoProto[]} inputs
 * @property {import('onnx-proto').onnx.IValueInfoProto[]} outputs
 * @property {import('onnx-proto').onnx.ITensorProto[]} initializers
 * @property {import('onnx-proto').onnx.INodeProto[]} nodes in topological order
 */

/**
 * The serialized ModelProto.
 * @param {ModelSpec} spec
 * @returns {Uint8Array}
 */
export function encodeModel(spec) {
  /** @type {import('onnx-proto').onnx.IModelProto} */
  const model = {
    irVersion: IR_VERSION,
    producerName: PRODUCER_NAME,
    producerVersion: PRODUCER_VERSION,
    docString: spec.doc,
    opsetImport: [{ domain: '', version: spec.opset }],
    graph: {
      name: spec.name,
      node: spec.nodes,
      initializer: spec.initializers,
      input: spec.inputs,
      output: spec.outputs,
    },
  };
  return onnx.ModelProto.encode(model).finish();
}
