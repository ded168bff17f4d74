import fc from 'fast-check';
import { DTYPES, elementCount, type DType, type Tensor, type TensorMap } from '../../src/protocol/tensor.js';

/** Shapes up to rank 4 with at most 64 elements: scalars ([]) and empty tensors (a 0 dim) included. */
export const shapeArb = fc
  .array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 })
  .filter((shape) => elementCount(shape) <= 64);

const elementArb: { [K in DType]: fc.Arbitrary<unknown> } = {
  float32: fc.float({ noDefaultInfinity: false, noNaN: false }),
  float64: fc.double(),
  int8: fc.integer({ min: -128, max: 127 }),
  uint8: fc.integer({ min: 0, max: 255 }),
  int16: fc.integer({ min: -32768, max: 32767 }),
  int32: fc.integer({ min: -2147483648, max: 2147483647 }),
  int64: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  bool: fc.integer({ min: 0, max: 1 }),
  string: fc.string({ unit: 'grapheme', maxLength: 8 }),
};

function toData(dtype: DType, values: unknown[]): Tensor['data'] {
  switch (dtype) {
    case 'float32':
      return Float32Array.from(values as number[]);
    case 'float64':
      return Float64Array.from(values as number[]);
    case 'int8':
      return Int8Array.from(values as number[]);
    case 'uint8':
    case 'bool':
      return Uint8Array.from(values as number[]);
    case 'int16':
      return Int16Array.from(values as number[]);
    case 'int32':
      return Int32Array.from(values as number[]);
    case 'int64':
      return BigInt64Array.from(values as bigint[]);
    case 'string':
      return values as string[];
  }
}

export const tensorOfArb = (dtype: DType): fc.Arbitrary<Tensor> =>
  shapeArb.chain((shape) =>
    fc
      .array(elementArb[dtype], { minLength: elementCount(shape), maxLength: elementCount(shape) })
      .map((values) => ({ dtype, shape, data: toData(dtype, values) }) as Tensor),
  );

export const dtypeArb = fc.constantFrom(...DTYPES);

export const tensorArb: fc.Arbitrary<Tensor> = dtypeArb.chain(tensorOfArb);

/** Tensor names include non-ASCII, so that UTF-8 ordering (not UTF-16) is exercised. */
export const nameArb = fc.string({ unit: 'grapheme', minLength: 0, maxLength: 6 });

export const tensorMapArb: fc.Arbitrary<TensorMap> = fc.dictionary(nameArb, tensorArb, { maxKeys: 4 });

/**
 * `length` bytes from a seed (xorshift32), quickly: fast-check's byte arrays are slow at hundreds of
 * KiB. `nonZero`: every byte odd, so calldata pays full price for each (gas measurements).
 */
export function seededBytes(length: number, seed: number, options: { nonZero?: boolean } = {}): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = options.nonZero ? (x & 0xfe) | 1 : x & 0xff;
  }
  return out;
}
