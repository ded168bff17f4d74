import { GlassboxError } from './errors.js';

/** The element types a Glassbox tensor may carry. */
export const DTYPES = [
  'float32',
  'float64',
  'int8',
  'uint8',
  'int16',
  'int32',
  'int64',
  'bool',
  'string',
] as const;
export type DType = (typeof DTYPES)[number];

/** The in-memory array behind each dtype (the same ones onnxruntime uses; bool is bytes 0 or 1). */
export type TensorDataOf = {
  float32: Float32Array;
  float64: Float64Array;
  int8: Int8Array;
  uint8: Uint8Array;
  int16: Int16Array;
  int32: Int32Array;
  int64: BigInt64Array;
  bool: Uint8Array;
  string: string[];
};

export type Tensor<D extends DType = DType> = {
  [K in D]: { readonly dtype: K; readonly shape: readonly number[]; readonly data: TensorDataOf[K] };
}[D];

/** Named tensors: a model's inputs or outputs. */
export type TensorMap = Readonly<Record<string, Tensor>>;

type NumericDType = Exclude<DType, 'string'>;

/**
 * Wire codes are ONNX's TensorProto.DataType numbers, so a tensor's dtype byte means the same
 * thing to us and to anyone reading ONNX.
 */
export const DTYPE_CODE: Readonly<Record<DType, number>> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float64: 11,
};

export const DTYPE_BY_CODE: ReadonlyMap<number, DType> = new Map(
  Object.entries(DTYPE_CODE).map(([dtype, code]) => [code, dtype as DType]),
);

/** Bytes per element of the fixed-width dtypes. */
export const DTYPE_BYTES: Readonly<Record<NumericDType, number>> = {
  float32: 4,
  float64: 8,
  int8: 1,
  uint8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
  bool: 1,
};

const ARRAY_OF: {
  [K in NumericDType]: { new (length: number): TensorDataOf[K]; new (buffer: ArrayBuffer): TensorDataOf[K] };
} = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  bool: Uint8Array,
};

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && (DTYPES as readonly string[]).includes(value);
}

/** The number of elements a shape holds (1 for a scalar, 0 if any dim is 0). */
export function elementCount(shape: readonly number[]): number {
  let count = 1;
  for (const dim of shape) count *= dim;
  return count;
}

/** A zero-filled typed array (or empty strings) of `length` elements of `dtype`. */
export function allocateData<D extends DType>(dtype: D, length: number): TensorDataOf[D] {
  if (dtype === 'string') return new Array<string>(length).fill('') as TensorDataOf[D];
  return new ARRAY_OF[dtype as NumericDType](length) as TensorDataOf[D];
}

/** A typed array of `dtype` viewing a copy of little-endian `bytes` (the host is little-endian). */
export function dataFromBytes<D extends NumericDType>(dtype: D, bytes: Uint8Array): TensorDataOf[D] {
  // Uint8Array's slice, a copy: a Node Buffer's own `slice` is a view of its pool, whose `.buffer`
  // is the whole pool (a pooled Buffer from base64 decoded into the pool's 8 KiB of other data).
  const copy = Uint8Array.prototype.slice.call(bytes).buffer;
  return new ARRAY_OF[dtype](copy) as TensorDataOf[D];
}

/**
 * Builds a tensor and checks that it is well formed; the way to make one from untrusted parts.
 * `field` names the tensor in errors.
 */
export function tensor<D extends DType>(
  dtype: D,
  shape: readonly number[],
  data: TensorDataOf[D],
  field = 'tensor',
): Tensor<D> {
  const value = { dtype, shape: [...shape], data } as unknown as Tensor<D>;
  assertTensor(value, field);
  return value;
}

/** Throws TENSOR_INVALID, naming `field`, unless `value` is a well-formed tensor. */
export function assertTensor(value: unknown, field = 'tensor'): asserts value is Tensor {
  if (typeof value !== 'object' || value === null) fail(field, 'is not an object');
  const { dtype, shape, data } = value as { dtype: unknown; shape: unknown; data: unknown };
  if (!isDType(dtype)) fail(`${field}.dtype`, `is ${JSON.stringify(dtype)}, not one of ${DTYPES.join(', ')}`);
  if (!Array.isArray(shape)) fail(`${field}.shape`, 'is not an array');
  shape.forEach((dim: unknown, i) => {
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0)
      fail(`${field}.shape[${i}]`, `is ${String(dim)}, not a non-negative integer`);
  });
  const expected = elementCount(shape as number[]);
  if (dtype === 'string') {
    if (!Array.isArray(data) || data.some((s) => typeof s !== 'string'))
      fail(`${field}.data`, 'is not an array of strings');
  } else if (!(data instanceof ARRAY_OF[dtype])) {
    fail(`${field}.data`, `is not a ${ARRAY_OF[dtype].name} for dtype ${dtype}`);
  }
  const length = (data as ArrayLike<unknown>).length;
  if (length !== expected)
    fail(
      `${field}.data`,
      `has ${length} elements but shape [${(shape as number[]).join(', ')}] holds ${expected}`,
    );
  if (dtype === 'bool') {
    const bad = (data as Uint8Array).findIndex((b) => b > 1);
    if (bad >= 0) fail(`${field}.data[${bad}]`, 'is a bool that is neither 0 nor 1');
  }
}

function fail(field: string, problem: string): never {
  throw new GlassboxError('TENSOR_INVALID', `${field} ${problem}`, { field });
}

/** The size in bytes of a tensor's data (strings: their UTF-8 bytes). */
export function dataByteLength(value: Tensor): number {
  if (value.dtype === 'string') return value.data.reduce((sum, s) => sum + utf8.encode(s).byteLength, 0);
  return value.data.byteLength;
}

const utf8 = new TextEncoder();
