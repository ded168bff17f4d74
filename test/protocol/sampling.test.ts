import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isGlassboxError } from '../../src/protocol/errors.js';
import {
  argmax,
  explainSample,
  gumbel,
  gumbelNoise,
  judgeMargins,
  philox4x32,
  philoxKey,
  sampleToken,
  tokenMargin,
  uniform,
  type SamplerParams,
  type TokenMargin,
} from '../../src/protocol/sampling.js';

const GREEDY: SamplerParams = { temperature: 0, topP: 1, topK: 0 };
const PLAIN: SamplerParams = { temperature: 1, topP: 1, topK: 0 };

/**
 * The rules of docs/protocol.md written the obvious way (full sort, noise for every id): the module's
 * pruning and partial ordering must give exactly the same picks and margins.
 */
function reference(logits: Float32Array, p: SamplerParams, seed: bigint, t: number, claimed?: number) {
  const v = logits.length;
  if (p.temperature === 0) {
    let best = 0;
    for (let i = 1; i < v; i++) if (logits[i]! > logits[best]!) best = i;
    return {
      pick: best,
      margin: claimed === undefined ? 0 : logits[best]! - logits[claimed]!,
      outside: false,
    };
  }
  const s = Array.from(logits, (l) => l / p.temperature);
  let order = [...s.keys()].sort((a, b) => s[b]! - s[a]! || a - b);
  if (p.topK > 0) order = order.slice(0, p.topK);
  if (p.topP < 1) {
    const max = Math.max(...order.map((i) => s[i]!));
    const z = [...order].sort((a, b) => a - b).reduce((acc, i) => acc + Math.exp(s[i]! - max), 0);
    let c = 0;
    const prefix: number[] = [];
    for (const i of order) {
      prefix.push(i);
      c += Math.exp(s[i]! - max) / z;
      if (c >= p.topP) break;
    }
    order = prefix;
  }
  const n = (i: number) => s[i]! + gumbelNoise(seed, t, i);
  let pick = order[0]!;
  for (const i of order) if (n(i) > n(pick) || (n(i) === n(pick) && i < pick)) pick = i;
  if (claimed === undefined) return { pick, margin: 0, outside: false };
  return { pick, margin: n(pick) - n(claimed), outside: !order.includes(claimed) };
}

const paramsArb: fc.Arbitrary<SamplerParams> = fc.record({
  temperature: fc.oneof(fc.constant(0), fc.double({ min: 0.05, max: 2, noNaN: true })),
  topP: fc.oneof(fc.constant(1), fc.double({ min: 1e-6, max: 1, noNaN: true })),
  topK: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 40 })),
});
// Few distinct values so that ties happen often.
const logitsArb = fc
  .array(fc.oneof(fc.integer({ min: -8, max: 8 }), fc.double({ min: -30, max: 30, noNaN: true })), {
    minLength: 1,
    maxLength: 40,
  })
  .map((xs) => Float32Array.from(xs));
const seedArb = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const positionArb = fc.integer({ min: 0, max: 2 ** 40 });

describe('Philox4x32-10', () => {
  it("matches Random123's known-answer vectors (kat_vectors)", () => {
    expect(philox4x32([0, 0, 0, 0], [0, 0])).toEqual([0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    expect(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])).toEqual([
      0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd,
    ]);
    expect(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])).toEqual([
      0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1,
    ]);
  });

  it('is the Random123 algorithm, written with BigInt, for any counter and key', () => {
    const word = fc.integer({ min: 0, max: 0xffffffff });
    const mulhilo = (a: number, b: number) => {
      const p = BigInt(a) * BigInt(b);
      return [Number(p >> 32n), Number(p & 0xffffffffn)] as const;
    };
    const slow = (c: number[], k: number[]) => {
      let [c0, c1, c2, c3] = c as [number, number, number, number];
      let [k0, k1] = k as [number, number];
      for (let round = 0; round < 10; round++) {
        if (round > 0) [k0, k1] = [(k0 + 0x9e3779b9) % 2 ** 32, (k1 + 0xbb67ae85) % 2 ** 32];
        const [hi0, lo0] = mulhilo(0xd2511f53, c0);
        const [hi1, lo1] = mulhilo(0xcd9e8d57, c2);
        [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
      }
      return [c0, c1, c2, c3];
    };
    fc.assert(
      fc.property(fc.tuple(word, word, word, word), fc.tuple(word, word), (c, k) => {
        expect(philox4x32(c, k)).toEqual(slow(c, k));
      }),
      { numRuns: 2000 },
    );
  });

  it('keys by the seed (low word, high word) and counts (id / 4, position low, position high, 0)', () => {
    expect(philoxKey((1n << 32n) | 42n)).toEqual([42, 1]);
    const seed = 0x0123456789abcdefn;
    const t = 2 ** 32 + 7;
    const words = philox4x32([2, 7, 1, 0], [0x89abcdef, 0x01234567]);
    expect(gumbelNoise(seed, t, 9)).toBe(gumbel(uniform(words[1])));
    expect(gumbelNoise(seed, t, 11)).toBe(gumbel(uniform(words[3])));
  });

  it('maps uint32 words strictly inside (0, 1) and refuses seeds outside uint64', () => {
    expect(uniform(0)).toBeGreaterThan(0);
    expect(uniform(0xffffffff)).toBeLessThan(1);
    expect(Number.isFinite(gumbel(uniform(0)))).toBe(true);
    expect(() => philoxKey(1n << 64n)).toThrow(/uint64/);
    expect(() => philoxKey(-1n)).toThrow(/uint64/);
  });
});

describe('sampleToken', () => {
  it('is the rule of the docs, written naively, for any logits, params, seed and position', () => {
    fc.assert(
      fc.property(logitsArb, paramsArb, seedArb, positionArb, (logits, params, seed, t) => {
        expect(sampleToken(logits, params, seed, t)).toBe(reference(logits, params, seed, t).pick);
      }),
      { numRuns: 400 },
    );
  });

  it('is deterministic, and another seed or position gives other picks', () => {
    const logits = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i));
    const picks = (seed: bigint, from: number) =>
      Array.from({ length: 20 }, (_, t) => sampleToken(logits, PLAIN, seed, from + t));
    expect(picks(42n, 0)).toEqual(picks(42n, 0));
    expect(picks(43n, 0)).not.toEqual(picks(42n, 0));
    expect(picks(42n, 20)).not.toEqual(picks(42n, 0));
  });

  it('draws tokens with the softmax probabilities of logits / T (chi-square, 20,000 draws)', () => {
    const logits = Float32Array.from([1, 0.5, 0, -0.5, 2, -3]);
    for (const temperature of [1, 0.7]) {
      const z = logits.reduce((acc, l) => acc + Math.exp(l / temperature), 0);
      const draws = 20_000;
      const counts = new Array<number>(logits.length).fill(0);
      for (let t = 0; t < draws; t++) counts[sampleToken(logits, { ...PLAIN, temperature }, 7n, t)]!++;
      const chi2 = counts.reduce((acc, c, i) => {
        const expected = (draws * Math.exp(logits[i]! / temperature)) / z;
        return acc + (c - expected) ** 2 / expected;
      }, 0);
      // 5 degrees of freedom: 20.5 is the 0.999 quantile.
      expect(chi2).toBeLessThan(20.5);
    }
  });

  it('greedy is the argmax of the raw logits, lowest id on ties, whatever the seed', () => {
    const logits = Float32Array.from([1, 3, 2, 3]);
    expect(sampleToken(logits, GREEDY, 0n, 0)).toBe(1);
    expect(sampleToken(logits, GREEDY, 99n, 12)).toBe(1);
  });

  it('greedy picks what one scan keeping the first strictly larger logit picks: ties, NaN, ±0, ±Infinity', () => {
    const scan = (logits: Float32Array) => {
      let best = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
      return best;
    };
    const special = [NaN, 0, -0, Infinity, -Infinity, 1, -1, 2.5];
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constantFrom(...special), fc.float({ noNaN: true })), {
          minLength: 1,
          maxLength: 13,
        }),
        (values) => {
          const logits = Float32Array.from(values);
          expect(argmax(logits)).toBe(scan(logits));
        },
      ),
      { numRuns: 2000 },
    );
    // a vocabulary-wide row with the largest value twice: the lower id, wherever the chains split it
    const row = Float32Array.from({ length: 151936 }, (_, i) => Math.sin(i));
    row[70001] = 9;
    row[90002] = 9;
    expect(argmax(row)).toBe(70001);
  });

  it('top-k: k ≥ vocabulary keeps everything; ties at the cut keep the lower ids', () => {
    const logits = Float32Array.from({ length: 50 }, (_, i) => Math.cos(i) * 3);
    for (let t = 0; t < 30; t++) {
      const all = sampleToken(logits, PLAIN, 5n, t);
      expect(sampleToken(logits, { ...PLAIN, topK: 50 }, 5n, t)).toBe(all);
      expect(sampleToken(logits, { ...PLAIN, topK: 1000 }, 5n, t)).toBe(all);
    }
    const flat = new Float32Array(10);
    const picks = new Set(
      Array.from({ length: 200 }, (_, t) => sampleToken(flat, { ...PLAIN, topK: 2 }, 1n, t)),
    );
    expect([...picks].sort()).toEqual([0, 1]);
  });

  it('top-p: a tiny p keeps only the top token (lowest id on ties), p = 1 keeps all', () => {
    const logits = Float32Array.from([0, 5, 5, 1]);
    for (let t = 0; t < 50; t++) expect(sampleToken(logits, { ...PLAIN, topP: 1e-9 }, 3n, t)).toBe(1);
    const picks = new Set(
      Array.from({ length: 400 }, (_, t) => sampleToken(logits, { ...PLAIN, topP: 1 }, 3n, t)),
    );
    expect(picks.size).toBe(4);
  });

  it('refuses out-of-range params naming the field', () => {
    const logits = new Float32Array(4);
    const field = (params: SamplerParams) => {
      try {
        sampleToken(logits, params, 0n, 0);
      } catch (error) {
        return isGlassboxError(error, 'REQUEST_INVALID') ? error.field : 'other';
      }
      return 'none';
    };
    expect(field({ ...PLAIN, temperature: -1 })).toBe('temperature');
    expect(field({ ...PLAIN, temperature: Number.NaN })).toBe('temperature');
    expect(field({ ...PLAIN, topP: 0 })).toBe('top_p');
    expect(field({ ...PLAIN, topP: 1.5 })).toBe('top_p');
    expect(field({ ...PLAIN, topK: 1.5 })).toBe('top_k');
    expect(() => sampleToken(new Float32Array(0), PLAIN, 0n, 0)).toThrow(/empty/);
  });
});

describe('tokenMargin', () => {
  it('is 0 exactly for the sampled token, > 0 for any other kept one, and the naive margin', () => {
    fc.assert(
      fc.property(logitsArb, paramsArb, seedArb, positionArb, (logits, params, seed, t) => {
        const pick = sampleToken(logits, params, seed, t);
        expect(tokenMargin(logits, params, seed, t, pick)).toEqual({ margin: 0, outside: false });
        for (let c = 0; c < logits.length; c++) {
          const m = tokenMargin(logits, params, seed, t, c);
          const r = reference(logits, params, seed, t, c);
          expect(m).toEqual({ margin: r.margin, outside: r.outside });
          // Any other kept id is strictly behind (greedy may tie). An id outside the kept set may
          // even be ahead: it was never eligible, which `outside` says.
          if (c !== pick && params.temperature > 0 && !m.outside) expect(m.margin).toBeGreaterThan(0);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('says when the claimed token is outside the kept set', () => {
    const logits = Float32Array.from([4, 3, 2, 1, 0]);
    const m = tokenMargin(logits, { ...PLAIN, topK: 2 }, 42n, 0, 4);
    expect(m.outside).toBe(true);
    expect(m.margin).toBeGreaterThan(0);
    expect(() => tokenMargin(logits, PLAIN, 42n, 0, 5)).toThrow(/not in the vocabulary/);
  });
});

describe('judgeMargins', () => {
  const policy = { hard: 1, soft: 0.1, rate: 0.1 };
  const at = (...ms: (number | 'out')[]): TokenMargin[] =>
    ms.map((m) => (m === 'out' ? { margin: 5, outside: true } : { margin: m, outside: false }));

  it('passes margins at or under the thresholds, allowing max(1, floor(rate · N)) suspicious ones', () => {
    expect(judgeMargins(at(0, 0, 0.1, 0.5, 0), policy)).toMatchObject({
      ok: true,
      failure: null,
      position: null,
      suspicious: 1,
      allowed: 1,
      maxMargin: 0.5,
    });
    expect(judgeMargins([], policy).ok).toBe(true);
  });

  it('fails hard at the first in-set margin above hard', () => {
    expect(judgeMargins(at(0, 0.05, 1.5, 2), policy)).toMatchObject({
      ok: false,
      failure: 'hard',
      position: 2,
      hardCount: 2,
    });
    expect(judgeMargins(at(0, Number.NaN), policy)).toMatchObject({ failure: 'hard', position: 1 });
  });

  it('fails statistically where the suspicious count first exceeds the allowance; outside ids count', () => {
    expect(judgeMargins(at(0, 0.5, 0, 'out', 0), policy)).toMatchObject({
      ok: false,
      failure: 'statistical',
      position: 3,
      suspicious: 2,
      hardCount: 0,
    });
    const long = at(...Array.from({ length: 40 }, (_, i) => (i % 10 === 3 ? 0.5 : 0)));
    expect(judgeMargins(long, policy)).toMatchObject({ ok: true, suspicious: 4, allowed: 4 });
  });
});

describe('worked example (docs/protocol.md)', () => {
  it('samples the 6-token toy row at T = 0.7, top_k = 3, seed 42, position 0', () => {
    const logits = Float32Array.from([1.5, -0.25, 3, 2.75, 0.5, 2]);
    const example = explainSample(logits, { temperature: 0.7, topP: 1, topK: 3 }, 42n, 0);
    expect(philox4x32([0, 0, 0, 0], [42, 0])).toEqual([0x9ceaf053, 0x77f5493b, 0x12bf50ad, 0x5742b3d7]);
    expect(philox4x32([1, 0, 0, 0], [42, 0])).toEqual([0xfcdb2127, 0x53ba6cfd, 0x838f5a6e, 0x744e06fb]);
    expect(example).toEqual({
      kept: [
        { id: 2, s: 4.285714285714286, g: -0.9609299613430473, n: 3.3247843243712385 },
        { id: 3, s: 3.928571428571429, g: -0.07350962646775222, n: 3.8550618021036764 },
        { id: 5, s: 2.857142857142857, g: -0.1111846929756222, n: 2.745958164167235 },
      ],
      pick: 3,
    });
    const params = { temperature: 0.7, topP: 1, topK: 3 };
    expect(tokenMargin(logits, params, 42n, 0, 2)).toEqual({ margin: 0.5302774777324379, outside: false });
    // Id 4's noise is large (4.39): ahead of the pick, but it was never eligible.
    expect(tokenMargin(logits, params, 42n, 0, 4)).toEqual({ margin: -1.2527250860639234, outside: true });
  });
});

describe('speed over a 151,936-token vocabulary (Qwen3)', () => {
  const vocab = 151_936;
  const logits = Float32Array.from({ length: vocab }, (_, i) => Math.sin(i * 12.9898) * 8);
  // CPU time per call, not wall time: the machine is shared, and a test waiting for a core says
  // nothing about the sampler.
  const cpuMs = (run: (t: number) => unknown) => {
    for (let t = 0; t < 5; t++) run(t);
    const start = process.cpuUsage();
    for (let t = 0; t < 15; t++) run(t);
    const used = process.cpuUsage(start);
    return (used.user + used.system) / 1000 / 15;
  };

  // Loose bounds: they catch a full sort or an allocation per id, not jitter.
  it('greedy stays under 2 ms, a full-vocabulary sampled pick under 40 ms', () => {
    expect(cpuMs((t) => sampleToken(logits, GREEDY, 42n, t))).toBeLessThan(2);
    expect(cpuMs((t) => sampleToken(logits, { temperature: 0.7, topP: 1, topK: 0 }, 42n, t))).toBeLessThan(
      40,
    );
    expect(cpuMs((t) => sampleToken(logits, { temperature: 0.7, topP: 0.9, topK: 50 }, 42n, t))).toBeLessThan(
      40,
    );
  });
});
