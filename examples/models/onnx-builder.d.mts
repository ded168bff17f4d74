/** Types for onnx-builder.mjs, so that TypeScript (tests that write models of their own) can import it. */
import type { onnx } from 'onnx-proto';

export type DType = 'float32' | 'uint8' | 'int8' | 'int32' | 'int64';
/** A dimension: a size, or a name for a symbolic one (dim_param), e.g. 'batch'. */
export type Dim = number | string;

export declare const IR_VERSION: number;
export declare function elemType(dtype: DType): number;
export declare function valueInfo(name: string, dtype: DType, dims: Dim[]): onnx.IValueInfoProto;
export declare function initializer(
  name: string,
  dtype: DType,
  dims: number[],
  values: ArrayLike<number>,
): onnx.ITensorProto;
export declare function intAttr(name: string, value: number): onnx.IAttributeProto;
export declare function intsAttr(name: string, values: number[]): onnx.IAttributeProto;
export declare function floatAttr(name: string, value: number): onnx.IAttributeProto;
export declare function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  attributes?: onnx.IAttributeProto[],
): onnx.INodeProto;

export type ModelSpec = {
  name: string;
  doc: string;
  opset: number;
  inputs: onnx.IValueInfoProto[];
  outputs: onnx.IValueInfoProto[];
  initializers: onnx.ITensorProto[];
  nodes: onnx.INodeProto[];
};

/** The serialized ModelProto; the same spec always gives the same bytes. */
export declare function encodeModel(spec: ModelSpec): Uint8Array;
