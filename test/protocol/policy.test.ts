import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { agree, type ComparisonPolicy } from '../../src/protocol/policy.js';
import type { Tensor, TensorMap } from '../../src/protocol/tensor.js';
import { tensorMapArb } from '../support/arbitraries.js';

const policyArb: fc.Arbitrary<ComparisonPolicy> = fc.oneof(
  fc.constant({ kind: 'exact' } as const),
  fc.record({
    kind: fc.constant('tolerance' as const),
    abs: fc.double({ min: 0, max: 1, noNaN: true }),
    rel: fc.double({ min: 0, max: 1, noNaN: true }),
  }),
);

const f32 = (...values: number[]): Tensor => ({
  dtype: 'float32',
  shape: [values.length],
  data: Float32Array.from(values),
});

/** A map and a copy of it with some float elements nudged, so that pairs are often close but not equal. */
const nearPairArb = tensorMapArb.chain((a) =>
  fc.array(fc.double({ min: -1e-3, max: 1e-3, noNaN: true }), { maxLength: 8 }).map((nudges) => {
    const b: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(a)) {
      if (t.dtype === 'float32' || t.dtype === 'float64') {
        const data = t.data.slice();
        nudges.forEach((n, i) => {
          if (data.length > 0) data[i % data.length]! += n;
        });
        b[name] = { ...t, data } as Tensor;
      } else b[name] = t;
    }
    return [a, b] as const;
  }),
);

describe('agree', () => {
  it('is symmetric for every policy, argmax over each output included', () => {
    const withArgmax = nearPairArb.chain(([a, b]) => {
      const argmax = Object.keys(a).map((output) => ({ kind: 'argmax', output }) as const);
      return fc.tuple(
        fc.oneof(policyArb, ...argmax.map((p) => fc.constant(p))),
        fc.constant([a, b] as const),
      );
    });
    fc.assert(
      fc.property(withArgmax, ([policy, [a, b]]) => {
        expect(agree(policy, a, b).agree).toBe(agree(policy, b, a).agree);
      }),
      { numRuns: 500 },
    );
  });

  it('is reflexive: a result agrees with itself under every policy, NaN included', () => {
    fc.assert(
      fc.property(policyArb, tensorMapArb, (policy, a) => {
        expect(agree(policy, a, a)).toEqual({ agree: true });
      }),
    );
  });

  it('exact agreement implies tolerance agreement', () => {
    fc.assert(
      fc.property(policyArb, nearPairArb, (tolerance, [a, b]) => {
        if (agree({ kind: 'exact' }, a, b).agree) expect(agree(tolerance, a, b).agree).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('exact requires every bit, and says where the first difference is', () => {
    const result = agree({ kind: 'exact' }, { y: f32(1, 2, 3) }, { y: f32(1, 2.0000002, 3) });
    expect(result).toMatchObject({ agree: false, output: 'y', index: 1 });
    expect(agree({ kind: 'exact' }, { y: f32(0) }, { y: f32(-0) }).agree).toBe(false);
  });

  it('tolerance bounds each element by abs + rel * max(|a|, |b|)', () => {
    const policy: ComparisonPolicy = { kind: 'tolerance', abs: 0.01, rel: 0.1 };
    expect(agree(policy, { y: f32(100) }, { y: f32(109) }).agree).toBe(true);
    const far = agree(policy, { y: f32(1, 100) }, { y: f32(1, 120) });
    expect(far).toMatchObject({ agree: false, output: 'y', index: 1 });
    if (!far.agree) expect(far.reason).toMatch(/exceeds abs 0.01 \+ rel 0.1/);
    expect(agree(policy, { y: f32(NaN) }, { y: f32(1) }).agree).toBe(false);
    expect(agree(policy, { y: f32(Infinity) }, { y: f32(-Infinity) }).agree).toBe(false);
    expect(agree(policy, { y: f32(Infinity) }, { y: f32(Infinity) }).agree).toBe(true);
  });

  it('tolerance still compares integer outputs exactly', () => {
    const policy: ComparisonPolicy = { kind: 'tolerance', abs: 10, rel: 1 };
    const i32 = (v: number): Tensor => ({ dtype: 'int32', shape: [1], data: Int32Array.of(v) });
    expect(agree(policy, { y: i32(1) }, { y: i32(2) }).agree).toBe(false);
  });

  it('argmax compares the largest index per row of one output only', () => {
    const policy: ComparisonPolicy = { kind: 'argmax', output: 'p' };
    const rows = (...values: number[]): Tensor => ({
      dtype: 'float32',
      shape: [2, 3],
      data: Float32Array.from(values),
    });
    const a: TensorMap = { p: rows(0.1, 0.7, 0.2, 0.5, 0.4, 0.1), other: f32(1) };
    const b: TensorMap = { p: rows(0.2, 0.6, 0.2, 0.9, 0.05, 0.05), other: f32(2) };
    expect(agree(policy, a, b).agree).toBe(true);
    const c: TensorMap = { p: rows(0.2, 0.6, 0.2, 0.1, 0.8, 0.1) };
    expect(agree(policy, a, c)).toMatchObject({ agree: false, output: 'p', index: 1 });
    expect(agree(policy, a, { other: f32(1) })).toMatchObject({ agree: false, output: 'p' });
  });

  it('refuses results that differ in names, dtypes or shapes', () => {
    expect(agree({ kind: 'exact' }, { y: f32(1) }, { z: f32(1) })).toMatchObject({ agree: false });
    expect(
      agree(
        { kind: 'exact' },
        { y: f32(1, 2) },
        { y: { dtype: 'float32', shape: [2, 1], data: Float32Array.of(1, 2) } },
      ),
    ).toMatchObject({
      agree: false,
      output: 'y',
    });
  });

  it('refuses a malformed tolerance', () => {
    expect(() => agree({ kind: 'tolerance', abs: -1, rel: 0 }, {}, {})).toThrow(
      expect.objectContaining({ code: 'POLICY_INVALID' }),
    );
  });
});
