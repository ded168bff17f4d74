import type { Hex } from 'viem';
import { GlassboxError } from './errors.js';
import { dataHashStream } from './data.js';
import {
  DTYPE_BYTES,
  DTYPE_BY_CODE,
  DTYPE_CODE,
  assertTensor,
  dataFromBytes,
  elementCount,
  isDType,
  type DType,
  type Tensor,
  type TensorMap,
} from './tensor.js';

/*
 * The canonical binary encoding of a named tensor map (docs/protocol.md, Tensors). Names are
 * sorted by their UTF-8 bytes; per tensor:
 *
 *   u32 name length | name (UTF-8) | u8 dtype code | u32 rank | rank x u64 dim | data
 *
 * all little-endian; fixed-width data is the elements' little-endian bytes (bool: one byte, 0 or
 * 1); string data is, per element, u32 length | UTF-8 bytes. The encoding is injective, so its
 * dataHash (inputHash, outputHash) changes whenever any name, dtype, dim or data byte does.
 */

const utf8Encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is data, kept, so that decoding is the exact inverse of encoding and
// the keccak256 of received bytes is the hash of the tensors they decode to.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The largest rank we accept on decode; ONNX models in practice stay far below it. */
export const MAX_RANK = 64;

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** Tensor names in canonical order (by UTF-8 bytes, not by UTF-16 code units). */
export function canonicalNames(tensors: TensorMap): { name: string; bytes: Uint8Array }[] {
  return Object.keys(tensors)
    .map((name) => ({ name, bytes: utf8Encoder.encode(name) }))
    .sort((a, b) => compareBytes(a.bytes, b.bytes));
}

/** Writes the canonical encoding part by part to `write`: what encoding and hashing share. */
function writeTensors(tensors: TensorMap, write: (part: Uint8Array) => void): void {
  for (const { name, bytes } of canonicalNames(tensors)) {
    const value = tensors[name]!;
    assertTensor(value, name);
    const head = new DataView(new ArrayBuffer(4 + bytes.length + 1 + 4 + 8 * value.shape.length));
    let at = 0;
    head.setUint32(at, bytes.length, true);
    new Uint8Array(head.buffer).set(bytes, (at += 4));
    head.setUint8((at += bytes.length), DTYPE_CODE[value.dtype]);
    head.setUint32((at += 1), value.shape.length, true);
    at += 4;
    for (const dim of value.shape) {
      head.setBigUint64(at, BigInt(dim), true);
      at += 8;
    }
    write(new Uint8Array(head.buffer));
    if (value.dtype === 'string') {
      for (const s of value.data) {
        const b = utf8Encoder.encode(s);
        const len = new Uint8Array(4);
        new DataView(len.buffer).setUint32(0, b.length, true);
        write(len);
        write(b);
      }
    } else {
      write(new Uint8Array(value.data.buffer, value.data.byteOffset, value.data.byteLength));
    }
  }
}

/**
 * The canonical encoding as parts: small headers, and views of the tensors' own data (not copies).
 * What a sender streams and hashes without ever building the whole encoding; the parts are valid
 * while the tensors are not changed.
 */
export type EncodedTensors = { readonly parts: readonly Uint8Array[]; readonly byteLength: number };

export function encodeTensorParts(tensors: TensorMap): EncodedTensors {
  const parts: Uint8Array[] = [];
  let byteLength = 0;
  writeTensors(tensors, (part) => {
    parts.push(part);
    byteLength += part.byteLength;
  });
  return { parts, byteLength };
}

export function encodeTensors(tensors: TensorMap): Uint8Array {
  const { parts, byteLength } = encodeTensorParts(tensors);
  const out = new Uint8Array(byteLength);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/** dataHash of an encoding held as parts: the same hash as `hashTensors` of what they encode. */
export function hashEncoded(encoded: EncodedTensors): Hex {
  return dataHashStream((update) => {
    for (const part of encoded.parts) update(part);
  });
}

export function decodeTensors(bytes: Uint8Array): Record<string, Tensor> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Record<string, Tensor> = Object.create(null);
  let at = 0;
  let previous: Uint8Array | undefined;
  const need = (n: number, what: string) => {
    if (at + n > bytes.length)
      throw new GlassboxError(
        'TENSOR_DECODE',
        `truncated encoding: ${what} needs ${n} bytes at offset ${at}`,
        {
          details: { offset: at, length: bytes.length },
        },
      );
  };
  while (at < bytes.length) {
    need(4, 'name length');
    const nameLength = view.getUint32(at, true);
    at += 4;
    need(nameLength, 'name');
    const nameBytes = bytes.subarray(at, at + nameLength);
    at += nameLength;
    const name = decodeUtf8(nameBytes, 'tensor name', at);
    if (previous && compareBytes(previous, nameBytes) >= 0)
      throw new GlassboxError('TENSOR_DECODE', `tensor "${name}" is out of canonical order or repeated`, {
        field: name,
      });
    previous = nameBytes;
    need(5, 'dtype and rank');
    const code = view.getUint8(at);
    const dtype = DTYPE_BY_CODE.get(code);
    if (!dtype)
      throw new GlassboxError('TENSOR_DECODE', `tensor "${name}" has unknown dtype code ${code}`, {
        field: name,
      });
    const rank = view.getUint32(at + 1, true);
    at += 5;
    if (rank > MAX_RANK)
      throw new GlassboxError('TENSOR_DECODE', `tensor "${name}" has rank ${rank}, above ${MAX_RANK}`, {
        field: name,
      });
    need(8 * rank, 'dims');
    const shape: number[] = [];
    for (let i = 0; i < rank; i++) {
      const dim = view.getBigUint64(at, true);
      if (dim > BigInt(Number.MAX_SAFE_INTEGER))
        throw new GlassboxError('TENSOR_DECODE', `tensor "${name}" dim ${i} is too large`, { field: name });
      shape.push(Number(dim));
      at += 8;
    }
    const count = elementCount(shape);
    if (dtype === 'string') {
      const data: string[] = [];
      for (let i = 0; i < count; i++) {
        need(4, `string ${i} length`);
        const length = view.getUint32(at, true);
        at += 4;
        need(length, `string ${i}`);
        data.push(decodeUtf8(bytes.subarray(at, at + length), `tensor "${name}" string ${i}`, at));
        at += length;
      }
      out[name] = { dtype, shape, data };
    } else {
      const byteLength = count * DTYPE_BYTES[dtype];
      need(byteLength, `tensor "${name}" data`);
      const data = dataFromBytes(dtype, bytes.subarray(at, at + byteLength));
      at += byteLength;
      const value = { dtype, shape, data } as Tensor;
      assertDecoded(value, name);
      out[name] = value;
    }
  }
  return out;
}

function decodeUtf8(bytes: Uint8Array, what: string, offset: number): string {
  try {
    return utf8Decoder.decode(bytes);
  } catch (cause) {
    throw new GlassboxError('TENSOR_DECODE', `${what} is not valid UTF-8 (offset ${offset})`, { cause });
  }
}

function assertDecoded(value: Tensor, name: string): void {
  try {
    assertTensor(value, name);
  } catch (cause) {
    throw new GlassboxError('TENSOR_DECODE', `tensor "${name}" is malformed`, { field: name, cause });
  }
}

/**
 * The dataHash of the canonical encoding (src/protocol/data.ts): the inputHash / outputHash of
 * receipts. Streams the parts into the hash instead of building the encoding, with hash-wasm's
 * keccak (about 15 times faster than the pure-JS one on large tensors).
 */
export function hashTensors(tensors: TensorMap): Hex {
  return dataHashStream((update) => writeTensors(tensors, update));
}

/*
 * JSON transport. A tensor is {dtype, shape, data} with data a flat array in row-major order.
 * Numbers that JSON cannot carry exactly travel as strings: int64 as decimal strings, and the
 * floats NaN, Infinity, -Infinity and -0. Decoding accepts numbers or such strings.
 */

export type JsonTensor = { dtype: DType; shape: number[]; data: (number | string | boolean)[] };

export function tensorToJson(value: Tensor): JsonTensor {
  const data: (number | string | boolean)[] = [];
  switch (value.dtype) {
    case 'string':
      data.push(...value.data);
      break;
    case 'int64':
      for (const v of value.data) data.push(v.toString());
      break;
    case 'bool':
      for (const v of value.data) data.push(v === 1);
      break;
    case 'float32':
    case 'float64':
      for (const v of value.data)
        data.push(Number.isFinite(v) && !Object.is(v, -0) ? v : String(Object.is(v, -0) ? '-0' : v));
      break;
    default:
      for (const v of value.data) data.push(v);
  }
  return { dtype: value.dtype, shape: [...value.shape], data };
}

export function tensorsToJson(tensors: TensorMap): Record<string, JsonTensor> {
  const out: Record<string, JsonTensor> = {};
  for (const { name } of canonicalNames(tensors)) out[name] = tensorToJson(tensors[name]!);
  return out;
}

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
};

/** Parses one element of `dtype` from JSON; throws INPUT_VALUE naming `field` when it can't. */
export function parseElement(dtype: DType, raw: unknown, field: string): number | bigint | string {
  const bad = (why: string): never => {
    throw new GlassboxError('INPUT_VALUE', `${field} is ${JSON.stringify(raw)}: ${why}`, { field });
  };
  switch (dtype) {
    case 'string':
      return typeof raw === 'string' ? raw : bad('not a string');
    case 'bool':
      if (raw === true || raw === 1) return 1;
      if (raw === false || raw === 0) return 0;
      return bad('not a boolean');
    case 'int64': {
      if (typeof raw === 'number')
        return Number.isSafeInteger(raw)
          ? BigInt(raw)
          : bad('not a safe integer (send int64 as a decimal string)');
      if (typeof raw === 'string' && /^-?\d+$/.test(raw)) {
        const v = BigInt(raw);
        return v >= -(2n ** 63n) && v < 2n ** 63n ? v : bad('outside the int64 range');
      }
      return bad('not an integer');
    }
    case 'float32':
    case 'float64': {
      if (typeof raw === 'number') return raw;
      if (raw === 'NaN') return NaN;
      if (raw === 'Infinity') return Infinity;
      if (raw === '-Infinity') return -Infinity;
      if (raw === '-0') return -0;
      return bad('not a number');
    }
    default: {
      if (typeof raw !== 'number' || !Number.isInteger(raw)) return bad(`not an integer`);
      const [min, max] = INT_RANGE[dtype]!;
      return raw >= min && raw <= max ? raw : bad(`outside the ${dtype} range [${min}, ${max}]`);
    }
  }
}

/** Builds a tensor from flat JSON elements, checking each one. */
export function tensorFromElements(
  dtype: DType,
  shape: readonly number[],
  elements: readonly unknown[],
  field: string,
): Tensor {
  const count = elementCount(shape);
  if (elements.length !== count)
    throw new GlassboxError(
      'INPUT_DIM',
      `${field}.data has ${elements.length} elements but shape [${shape.join(', ')}] holds ${count}`,
      {
        field: `${field}.data`,
      },
    );
  if (dtype === 'string') {
    return {
      dtype,
      shape: [...shape],
      data: elements.map((e, i) => parseElement(dtype, e, `${field}.data[${i}]`) as string),
    };
  }
  const value = { dtype, shape: [...shape], data: allocate(dtype, count) } as Tensor;
  const data = value.data as unknown as { [i: number]: number | bigint };
  for (let i = 0; i < count; i++)
    data[i] = parseElement(dtype, elements[i], `${field}.data[${i}]`) as number | bigint;
  return value;
}

function allocate(dtype: Exclude<DType, 'string'>, count: number) {
  return dataFromBytes(dtype, new Uint8Array(count * DTYPE_BYTES[dtype]));
}

export function tensorFromJson(json: unknown, field = 'tensor'): Tensor {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new GlassboxError('TENSOR_DECODE', `${field} is not a {dtype, shape, data} object`, { field });
  const { dtype, shape, data } = json as Record<string, unknown>;
  if (!isDType(dtype))
    throw new GlassboxError('INPUT_DTYPE', `${field}.dtype is ${JSON.stringify(dtype)}, not a known dtype`, {
      field: `${field}.dtype`,
    });
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || (d as number) < 0))
    throw new GlassboxError('TENSOR_DECODE', `${field}.shape is not an array of non-negative integers`, {
      field: `${field}.shape`,
    });
  if (!Array.isArray(data))
    throw new GlassboxError('TENSOR_DECODE', `${field}.data is not an array`, { field: `${field}.data` });
  return tensorFromElements(dtype, shape as number[], data, field);
}

export function tensorsFromJson(json: unknown, field = 'tensors'): Record<string, Tensor> {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new GlassboxError('TENSOR_DECODE', `${field} is not an object of named tensors`, { field });
  const out: Record<string, Tensor> = Object.create(null);
  for (const [name, value] of Object.entries(json)) out[name] = tensorFromJson(value, `${field}.${name}`);
  return out;
}
