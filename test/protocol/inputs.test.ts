import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeTensors, tensorToJson } from '../../src/protocol/encoding.js';
import { checkInputs, inputsFromJson } from '../../src/protocol/inputs.js';
import type { TensorSpec } from '../../src/protocol/manifest.js';
import { MAX_RANK } from '../../src/protocol/encoding.js';
import { DTYPES, dataByteLength, type Tensor } from '../../src/protocol/tensor.js';
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

  it('refuses JSON that is not an object of named tensors', () => {
    const spec: TensorSpec = { name: 'x', dtype: 'float32', shape: ['?'] };
    for (const json of [null, 3, 'x', true, [], [1, 2]])
      expect(() => inputsFromJson([spec], json)).toThrow(
        expect.objectContaining({ code: 'TENSOR_DECODE', field: 'inputs' }),
      );
  });

  it('names the element that is not a number, in nested and in full form', () => {
    const spec: TensorSpec = { name: 'x', dtype: 'float32', shape: [2, 2] };
    expect(() =>
      inputsFromJson([spec], {
        x: [
          [1, 2],
          [3, 'four'],
        ],
      }),
    ).toThrow(expect.objectContaining({ code: 'INPUT_VALUE', field: 'inputs.x.data[3]' }));
    expect(() =>
      inputsFromJson([spec], { x: { dtype: 'float32', shape: [2, 2], data: [1, null, 3, 4] } }),
    ).toThrow(expect.objectContaining({ code: 'INPUT_VALUE', field: 'inputs.x.data[1]' }));
  });

  it('refuses nesting deeper than any tensor may be, without exhausting the stack', () => {
    const spec: TensorSpec = { name: 'x', dtype: 'float32', shape: ['?'] };
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(() => inputsFromJson([spec], { x: deep })).toThrow(
      expect.objectContaining({ code: 'INPUT_RANK', field: 'inputs.x' }),
    );
    let ok: unknown = 1;
    for (let i = 0; i < MAX_RANK; i++) ok = [ok];
    expect(inputsFromJson([spec], { x: ok }).x!.shape).toHaveLength(MAX_RANK);
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

/** Inputs and a schema they fit: each dim fixed, named after its size (so names bind consistently), or `?`. */
const fittingArb = fc
  .uniqueArray(fc.tuple(fc.string({ minLength: 1, maxLength: 6 }), tensorArb), {
    minLength: 1,
    maxLength: 4,
    selector: ([name]) => name,
  })
  .chain((entries) =>
    fc
      .tuple(
        ...entries.map(([, t]) =>
          fc.array(fc.constantFrom('fixed', 'named', '?'), {
            minLength: t.shape.length,
            maxLength: t.shape.length,
          }),
        ),
      )
      .map((kinds) => {
        const specs: TensorSpec[] = entries.map(([name, t], i) => ({
          name,
          dtype: t.dtype,
          shape: t.shape.map((d, j) =>
            kinds[i]![j] === 'fixed' ? d : kinds[i]![j] === 'named' ? `n${d}` : '?',
          ),
        }));
        return { specs, inputs: Object.fromEntries(entries) as Record<string, Tensor> };
      }),
  );

describe('checkInputs on any schema', () => {
  it('accepts inputs that fit, and refuses each kind of misfit with its code and field', () => {
    fc.assert(
      fc.property(fittingArb, fc.nat(), fc.nat(), ({ specs, inputs }, pick, other) => {
        checkInputs(specs, inputs);
        const total = specs.reduce((sum, s) => sum + dataByteLength(inputs[s.name]!), 0);
        checkInputs(specs, inputs, { maxInputBytes: total });
        const i = pick % specs.length;
        const spec = specs[i]!;
        const at = `inputs.${spec.name}`;
        const refuse = (
          s: TensorSpec[],
          x: Record<string, Tensor>,
          code: string,
          field: string,
          limit?: number,
        ) =>
          expect(() => checkInputs(s, x, limit === undefined ? {} : { maxInputBytes: limit })).toThrow(
            expect.objectContaining({ code, field }),
          );
        const withSpec = (changed: TensorSpec) => specs.map((s, j) => (j === i ? changed : s));

        const unknown = `${spec.name}+`;
        if (!specs.some((s) => s.name === unknown))
          refuse(specs, { ...inputs, [unknown]: inputs[spec.name]! }, 'INPUT_UNKNOWN', `inputs.${unknown}`);
        const { [spec.name]: _dropped, ...missing } = inputs;
        refuse(specs, missing, 'INPUT_MISSING', at);
        const dtype =
          DTYPES[(DTYPES.indexOf(spec.dtype) + 1 + (other % (DTYPES.length - 1))) % DTYPES.length]!;
        refuse(withSpec({ ...spec, dtype }), inputs, 'INPUT_DTYPE', `${at}.dtype`);
        refuse(withSpec({ ...spec, shape: [...spec.shape, 1] }), inputs, 'INPUT_RANK', `${at}.shape`);
        const fixed = spec.shape.findIndex((d) => typeof d === 'number');
        if (fixed >= 0) {
          const shape = spec.shape.map((d, j) => (j === fixed ? (d as number) + 1 : d));
          refuse(withSpec({ ...spec, shape }), inputs, 'INPUT_DIM', `${at}.shape[${fixed}]`);
        }
        if (total > 0) {
          const limit = total - 1;
          let running = 0;
          const over = specs.find((s) => (running += dataByteLength(inputs[s.name]!)) > limit)!;
          refuse(specs, inputs, 'INPUT_TOO_LARGE', `inputs.${over.name}`, limit);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a malformed tensor, and does not take inherited properties for inputs', () => {
    const spec: TensorSpec = { name: 'constructor', dtype: 'float32', shape: ['?'] };
    expect(() => checkInputs([spec], {})).toThrow(
      expect.objectContaining({ code: 'INPUT_MISSING', field: 'inputs.constructor' }),
    );
    const bad = { dtype: 'float32', shape: [3], data: new Float32Array(2) } as Tensor;
    expect(() => checkInputs([spec], { constructor: bad })).toThrow(
      expect.objectContaining({ code: 'TENSOR_INVALID', field: 'inputs.constructor.data' }),
    );
  });
});
