import fc from 'fast-check';
import { keccak256 } from 'viem';
import { describe, expect, it } from 'vitest';
import {
  decodeTensors,
  encodeTensorParts,
  encodeTensors,
  hashEncoded,
  hashTensors,
  tensorsFromJson,
  tensorsToJson,
} from '../../src/protocol/encoding.js';
import { dataHash } from '../../src/protocol/data.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { DTYPES, type Tensor, type TensorMap } from '../../src/protocol/tensor.js';
import { nameArb, tensorArb, tensorMapArb, tensorOfArb } from '../support/arbitraries.js';

/** Bit-level equality of two tensor maps (Object.is alone would confuse NaN payloads). */
function expectSameBits(a: TensorMap, b: TensorMap) {
  expect(Buffer.from(encodeTensors(a)).equals(Buffer.from(encodeTensors(b)))).toBe(true);
}

describe('canonical binary encoding', () => {
  it('decodes a pooled Node Buffer (a view into 8 KiB of other data) as its own bytes', () => {
    const bytes = encodeTensors({ ids: { dtype: 'int32', shape: [3], data: Int32Array.from([7, 8, 9]) } });
    const pooled = Buffer.from(Buffer.from(bytes).toString('base64'), 'base64');
    expect(pooled.byteOffset > 0 || pooled.buffer.byteLength > pooled.byteLength).toBe(true);
    expect(Array.from(decodeTensors(pooled).ids!.data as Int32Array)).toEqual([7, 8, 9]);
  });

  it('round-trips every dtype and shape, empty and scalar included', () => {
    fc.assert(
      fc.property(tensorMapArb, (tensors) => {
        const decoded = decodeTensors(encodeTensors(tensors));
        expect(Object.keys(decoded).sort()).toEqual(Object.keys(tensors).sort());
        for (const [name, t] of Object.entries(tensors)) {
          expect(decoded[name]!.dtype).toBe(t.dtype);
          expect(decoded[name]!.shape).toEqual(t.shape);
        }
        expectSameBits(decoded, tensors);
      }),
      { numRuns: 500 },
    );
  });

  it.each(DTYPES)('round-trips %s scalars and empty tensors', (dtype) => {
    fc.assert(
      fc.property(tensorOfArb(dtype), (t) => {
        expectSameBits(decodeTensors(encodeTensors({ t })), { t });
      }),
      { numRuns: 50 },
    );
  });

  it('does not depend on the order the names were inserted in', () => {
    fc.assert(
      fc.property(tensorMapArb, (tensors) => {
        const reversed = Object.fromEntries(Object.entries(tensors).reverse());
        expect(hashTensors(reversed)).toBe(hashTensors(tensors));
      }),
    );
  });

  it('sorts names by UTF-8 bytes, not UTF-16 code units', () => {
    // U+FF61 sorts before U+1F600 in UTF-16 (0xFF61 < 0xD83D) but after it in UTF-8 (EF < F0).
    const t: Tensor = { dtype: 'uint8', shape: [], data: Uint8Array.of(1) };
    const bytes = encodeTensors({ '\u{FF61}': t, '\u{1F600}': t });
    expect(new TextDecoder().decode(bytes.subarray(4, 7))).toBe('\u{FF61}');
  });
});

describe('hashTensors', () => {
  it('is the dataHash of the canonical encoding: keccak256 of it up to a chunk, its chunked commitment above', () => {
    fc.assert(
      fc.property(tensorMapArb, (tensors) => {
        expect(hashTensors(tensors)).toBe(keccak256(encodeTensors(tensors)));
      }),
      { numRuns: 300 },
    );
    const big = {
      x: { dtype: 'uint8', shape: [3 << 20], data: new Uint8Array(3 << 20).map((_, i) => i * 7) },
    } as const;
    // streamed part by part, it is what hashing the whole encoding at once gives
    expect(hashTensors(big)).toBe(dataHash(encodeTensors(big)));
    expect(hashTensors(big)).not.toBe(keccak256(encodeTensors(big)));
  });
});

describe('the encoding as parts (what a binary request streams)', () => {
  it('is the encoding, hashes like it, and views the tensors data instead of copying it', () => {
    fc.assert(
      fc.property(tensorMapArb, (tensors) => {
        const encoded = encodeTensorParts(tensors);
        const whole = Buffer.concat(encoded.parts);
        expect(whole.equals(Buffer.from(encodeTensors(tensors)))).toBe(true);
        expect(encoded.byteLength).toBe(whole.byteLength);
        expect(hashEncoded(encoded)).toBe(hashTensors(tensors));
      }),
    );
    const data = new Float32Array([1, 2, 3]);
    const { parts } = encodeTensorParts({ x: { dtype: 'float32', shape: [3], data } });
    expect(parts.some((p) => p.buffer === data.buffer)).toBe(true);
  });

  it('decoding is its exact inverse: the hash of received bytes is the hash of what they decode to', () => {
    // A leading U+FEFF is data (a decoder that dropped it would change the hash on re-encoding).
    const tensors: TensorMap = { '\uFEFFname': { dtype: 'string', shape: [2], data: ['\uFEFFa', 'b'] } };
    const bytes = encodeTensors(tensors);
    expect(Buffer.from(encodeTensors(decodeTensors(bytes))).equals(Buffer.from(bytes))).toBe(true);
    expect(hashTensors(decodeTensors(bytes))).toBe(keccak256(bytes));
  });
});

describe('hash sensitivity', () => {
  const nonEmpty = tensorArb.filter((t) => t.data.length > 0);

  it('changes when any data byte changes', () => {
    fc.assert(
      fc.property(nameArb, nonEmpty, fc.nat(), fc.integer({ min: 1, max: 255 }), (name, t, at, flip) => {
        const bytes = encodeTensors({ [name]: t });
        const headerLength = 4 + new TextEncoder().encode(name).length + 1 + 4 + 8 * t.shape.length;
        const i = headerLength + (at % (bytes.length - headerLength));
        const changed = bytes.slice();
        changed[i]! ^= flip;
        let decoded: TensorMap;
        try {
          decoded = decodeTensors(changed); // a flipped string length may no longer decode, which is fine
        } catch (error) {
          expect(isGlassboxError(error, 'TENSOR_DECODE')).toBe(true);
          return;
        }
        expect(hashTensors(decoded)).not.toBe(hashTensors({ [name]: t }));
      }),
      { numRuns: 300 },
    );
  });

  it('changes when the name changes', () => {
    fc.assert(
      fc.property(nameArb, nameArb, tensorArb, (a, b, t) => {
        fc.pre(a !== b);
        expect(hashTensors({ [a]: t })).not.toBe(hashTensors({ [b]: t }));
      }),
    );
  });

  it('changes when the dtype code changes, whatever the tensor', () => {
    fc.assert(
      fc.property(nameArb, tensorArb, fc.integer({ min: 0, max: 255 }), (name, t, code) => {
        const bytes = encodeTensors({ [name]: t });
        const at = 4 + new TextEncoder().encode(name).length;
        fc.pre(bytes[at] !== code);
        const changed = bytes.slice();
        changed[at] = code;
        let decoded: TensorMap;
        try {
          decoded = decodeTensors(changed); // another width, or no dtype at all, no longer decodes
        } catch (error) {
          expect(isGlassboxError(error, 'TENSOR_DECODE')).toBe(true);
          return;
        }
        expect(hashTensors(decoded)).not.toBe(hashTensors({ [name]: t }));
      }),
      { numRuns: 300 },
    );
  });

  it('changes when the dtype changes, even over the same bytes', () => {
    const data = Uint8Array.of(1, 0, 1, 1);
    const asUint8: Tensor = { dtype: 'uint8', shape: [4], data };
    const asBool: Tensor = { dtype: 'bool', shape: [4], data };
    const asInt8: Tensor = { dtype: 'int8', shape: [4], data: new Int8Array(data.buffer) };
    const hashes = new Set([asUint8, asBool, asInt8].map((t) => hashTensors({ x: t })));
    expect(hashes.size).toBe(3);
  });

  it('changes when a dim changes, even with the same elements', () => {
    fc.assert(
      fc.property(tensorArb, (t) => {
        fc.pre(t.shape.length > 0);
        const reshaped = { ...t, shape: [...t.shape, 1] } as Tensor;
        const flattened = { ...t, shape: [t.data.length] } as Tensor;
        expect(hashTensors({ x: reshaped })).not.toBe(hashTensors({ x: t }));
        if (t.shape.length > 1 || t.shape[0] !== t.data.length)
          expect(hashTensors({ x: flattened })).not.toBe(hashTensors({ x: t }));
      }),
    );
  });
});

describe('decoding untrusted bytes', () => {
  it('refuses truncated encodings and trailing garbage with TENSOR_DECODE', () => {
    const bytes = encodeTensors({ x: { dtype: 'float32', shape: [2], data: Float32Array.of(1, 2) } });
    for (const cut of [1, 5, bytes.length - 1]) {
      expect(() => decodeTensors(bytes.subarray(0, cut))).toThrow(
        expect.objectContaining({ code: 'TENSOR_DECODE' }),
      );
    }
    expect(() => decodeTensors(Uint8Array.of(...bytes, 7))).toThrow(
      expect.objectContaining({ code: 'TENSOR_DECODE' }),
    );
  });

  it('refuses unknown dtype codes, repeated names and bool bytes other than 0 and 1', () => {
    const one = encodeTensors({ b: { dtype: 'bool', shape: [1], data: Uint8Array.of(1) } });
    const badCode = one.slice();
    badCode[5] = 99;
    expect(() => decodeTensors(badCode)).toThrow(/unknown dtype code 99/);
    expect(() => decodeTensors(Uint8Array.of(...one, ...one))).toThrow(/out of canonical order or repeated/);
    const badBool = one.slice();
    badBool[badBool.length - 1] = 2;
    expect(() => decodeTensors(badBool)).toThrow(expect.objectContaining({ code: 'TENSOR_DECODE' }));
  });

  it('never throws anything but a GlassboxError on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 128 }), (bytes) => {
        try {
          decodeTensors(bytes);
        } catch (error) {
          expect(isGlassboxError(error, 'TENSOR_DECODE')).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('JSON transport', () => {
  it('round-trips every dtype bit for bit, NaN, infinities, -0 and int64 extremes included', () => {
    fc.assert(
      fc.property(tensorMapArb, (tensors) => {
        const json = JSON.parse(JSON.stringify(tensorsToJson(tensors)));
        expectSameBits(tensorsFromJson(json), tensors);
      }),
      { numRuns: 500 },
    );
  });

  it('names the offending element of a non-numeric value', () => {
    const json = { x: { dtype: 'float32', shape: [3], data: [1, 'two', 3] } };
    expect(() => tensorsFromJson(json, 'inputs')).toThrow(
      expect.objectContaining({ code: 'INPUT_VALUE', field: 'inputs.x.data[1]' }),
    );
  });

  it('refuses out-of-range integers and unsafe int64 numbers', () => {
    expect(() => tensorsFromJson({ x: { dtype: 'uint8', shape: [1], data: [256] } })).toThrow(
      /outside the uint8 range/,
    );
    expect(() => tensorsFromJson({ x: { dtype: 'int64', shape: [1], data: [2 ** 60] } })).toThrow(
      /decimal string/,
    );
  });
});
