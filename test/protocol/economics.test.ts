import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, samplingPlan, type SamplingInputs } from '../../src/protocol/economics.js';

const E18 = 10n ** 18n;

const inputsArb: fc.Arbitrary<SamplingInputs> = fc.record({
  computeCost: fc.bigInt({ min: 0n, max: 10n * E18 }),
  stake: fc.bigInt({ min: 0n, max: 1_000_000n * E18 }),
  slashBps: fc.integer({ min: 0, max: 10_000 }),
  verifiers: fc.integer({ min: 1, max: 20 }),
  cheats: fc.integer({ min: 1, max: 100_000 }),
  confidence: fc.double({ min: 0.5, max: 0.999999, noNaN: true }),
});

describe('samplingPlan', () => {
  it('meets both floors: a faked answer loses money in expectation, and `cheats` of them are caught with `confidence`', () => {
    fc.assert(
      fc.property(inputsArb, (x) => {
        const plan = samplingPlan(x);
        expect(plan.p).toBeGreaterThanOrEqual(0);
        expect(plan.p).toBeLessThanOrEqual(1);
        const eps = 1e-9;
        expect(plan.q).toBeGreaterThanOrEqual(plan.qUnprofitable - eps);
        expect(plan.q).toBeGreaterThanOrEqual(plan.qDetect - eps);
        expect(plan.catchProbability).toBeGreaterThanOrEqual(x.confidence - eps);
        const loss = Number((x.stake * BigInt(x.slashBps)) / 10_000n);
        const gain = Number(x.computeCost);
        // expected loss of one faked answer is at least what faking saved (up to float rounding)
        expect(plan.q * loss - (1 - plan.q) * gain).toBeGreaterThanOrEqual(-1e-6 * (loss + gain + 1));
        expect(plan.computeShare).toBeCloseTo(x.verifiers * plan.p, 12);
      }),
    );
  });

  it('more verifiers each sample less; more cheats per window need less sampling', () => {
    const base = {
      computeCost: 10n ** 15n,
      stake: 100n * E18,
      slashBps: 5000,
      cheats: 100,
      confidence: 0.999,
    };
    const p = (verifiers: number, cheats = 100) => samplingPlan({ ...base, verifiers, cheats }).p;
    expect(p(1)).toBeGreaterThan(p(2));
    expect(p(2)).toBeGreaterThan(p(5));
    expect(p(2, 20)).toBeGreaterThan(p(2, 100));
    expect(p(2, 100)).toBeGreaterThan(p(2, 1000));
  });

  it('the defaults catch 100 wrong answers with 99.9 % at under 10 % extra compute (docs/economics.md)', () => {
    const plan = samplingPlan({
      ...DEFAULT_SAMPLING,
      computeCost: 10n ** 15n,
      stake: 100n * E18,
      slashBps: 5000,
    });
    expect(plan.p).toBeCloseTo(0.0339, 4);
    expect(plan.q).toBeCloseTo(0.0667, 4);
    expect(plan.computeShare).toBeLessThan(0.1);
    expect(plan.catchProbability).toBeCloseTo(0.999, 6);
    // slashing half of 100 tokens against 0.001 token saved: unprofitability alone needs almost nothing
    expect(plan.qUnprofitable).toBeCloseTo(2e-5, 8);
  });

  it('a slash too small for the compute saved raises p, up to checking everything', () => {
    const nothingAtStake = samplingPlan({
      ...DEFAULT_SAMPLING,
      computeCost: 10n * E18,
      stake: 0n,
      slashBps: 5000,
    });
    expect(nothingAtStake.qUnprofitable).toBe(1);
    expect(nothingAtStake.p).toBe(1);
  });

  it('refuses inputs that have no meaning', () => {
    const ok = { ...DEFAULT_SAMPLING, computeCost: 1n, stake: 1n, slashBps: 5000 };
    expect(() => samplingPlan({ ...ok, verifiers: 0 })).toThrow(/verifiers/);
    expect(() => samplingPlan({ ...ok, cheats: 0 })).toThrow(/cheats/);
    expect(() => samplingPlan({ ...ok, confidence: 1 })).toThrow(/confidence/);
    expect(() => samplingPlan({ ...ok, slashBps: 10_001 })).toThrow(/slashBps/);
  });
});
