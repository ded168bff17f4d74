import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeTensors, tensorToJson } from '../../src/protocol/encoding.js';
import { checkInputs, inputsFromJson } from '../../src/protocol/inputs.js';
import type { TensorSpec } from '../../src/protocol/manifest.js';
import type { Tensor } from '../../src/protocol/tensor.js';
import { tensorArb } from '../support/arbitraries.js';

/** Nested arrays in row-major order: the plain-JSON way of writing a tensor. */
function nest(values: unknown[], shape: readonly number[]): unknown {
  if (shape.length === 0) return values[0];
  const [dim, ...rest] = shape;
  const size = rest.reduce((a, b) => a * b, 1);
  return Array.from({ length: dim! }, (_, i) => nest(values.slice(i * size, (i + 1) * size), rest));
}

describe('inputsFromJson', () => {
  it('reads nested arrays and full tensors alike, to the same bits', () => {
    // Nesting cannot express a 0-length dim followed by others, so those shapes are left out.
    const arb = tensorArb.filter(
      (t) => !t.shape.slice(0, -1).includes(0) && !(t.shape.at(-1) === 0 && t.shape.length > 1),
    );
    fc.assert(
      fc.property(arb, (t) => {
        const spec: TensorSpec = { name: 'x', dtype: t.dtype, shape: t.shape.map((_, i) => `d${i}`) };
        const json = tensorToJson(t);
        const full = inputsFromJson([spec], JSON.parse(JSON.stringify({ x: json })));
        const nested = inputsFromJson([spec], JSON.parse(JSON.stringify({ x: nest(json.data, t.shape) })));
        expect(Buffer.from(encodeTensors(nested)).equals(Buffer.from(encodeTensors({ x: t })))).toBe(true);
        expect(Buffer.from(encodeTensors(full)).equals(Buffer.from(encodeTensors({ x: t })))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses ragged arrays, naming the row', () => {
    const spec: TensorSpec = { name: 'x', dtype: 'float32', shape: ['n', 2] };
    expect(() => inputsFromJson([spec], { x: [[1, 2], [3]] })).toThrow(
      expect.objectContaining({ code: 'INPUT_DIM', field: 'inputs.x[1]' }),
    );
    expect(() => inputsFromJson([spec], { x: [1, [2, 3]] })).toThrow(
      expect.objectContaining({ field: 'inputs.x[1]' }),
    );
    expect(() => inputsFromJson([spec], [[1, 2]])).toThrow(
      expect.objectContaining({ code: 'TENSOR_DECODE', field: 'inputs' }),
    );
  });
});

describe('checkInputs', () => {
  const f32 = (shape: number[]): Tensor => ({
    dtype: 'float32',
    shape,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
  });
  const specs: TensorSpec[] = [
    { name: 'x', dtype: 'float32', shape: ['batch', 3] },
    { name: 'mask', dtype: 'float32', shape: ['batch', '?'] },
  ];

  it('binds a symbolic dim to one size across inputs, and leaves ? free', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 0, max: 8 }),
        (a, b, free) => {
          const check = () => checkInputs(specs, { x: f32([a, 3]), mask: f32([b, free]) });
          if (a === b) check();
          else
            expect(check).toThrow(
              expect.objectContaining({ code: 'INPUT_DIM', field: 'inputs.mask.shape[0]' }),
            );
        },
      ),
    );
  });

  it('counts the bytes of all inputs against the limit', () => {
    const inputs = { x: f32([10, 3]), mask: f32([10, 10]) };
    checkInputs(specs, inputs, { maxInputBytes: 520 });
    expect(() => checkInputs(specs, inputs, { maxInputBytes: 519 })).toThrow(
      expect.objectContaining({ code: 'INPUT_TOO_LARGE', field: 'inputs.mask' }),
    );
  });
});
