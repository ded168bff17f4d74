import { GlassboxError } from './errors.js';

/**
 * Seeded token sampling and its check (docs/protocol.md, LLM generations). A provider picks each
 * output token with Gumbel-max over counter-based noise: the noise of (seed, position, id) is a pure
 * function, so anyone holding the logits of a position can recompute which token the sampler had to
 * pick and by how much the claimed one falls short of it (its margin). Pure: no Node APIs, so a
 * browser re-checks the same way.
 */

/** What the pick depends on besides the logits (the rest of SamplingParams only ends generations). */
export type SamplerParams = {
  /** 0: greedy. Otherwise logits are divided by it. */
  readonly temperature: number;
  /** (0, 1]; 1 keeps every token. */
  readonly topP: number;
  /** 0 keeps every token. */
  readonly topK: number;
};

/** The sampler named in the llm runtime profile (`sampler`): changing any rule here needs a new name. */
export const SAMPLER = 'philox4x32-10/gumbel-max/v1';

// Philox4x32-10 (Salmon et al., SC'11; the Random123 reference): multipliers and Weyl key increments.
const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const TWO_32 = 4294967296;
const INV_TWO_32 = 1 / TWO_32;

/**
 * High 32 bits of the 64-bit product of two uint32. The float64 product is within 2^12 of the exact
 * one and Math.imul gives the exact low word, so (product − low) / 2^32 is within 2^-19 of the
 * integer high word: rounding recovers it exactly (checked against BigInt in the tests).
 */
function mulhi(a: number, b: number): number {
  return Math.round((a * b - (Math.imul(a, b) >>> 0)) * INV_TWO_32);
}

/**
 * One Philox4x32-10 block: 4 uint32 words of counter, 2 of key → 4 uint32 words, written into `out`
 * (so the hot loop allocates nothing).
 */
function philoxInto(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  out: Uint32Array,
): void {
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/** Philox4x32-10 of a counter (4 uint32) under a key (2 uint32), as in Random123's `philox4x32`. */
export function philox4x32(
  counter: readonly [number, number, number, number],
  key: readonly [number, number],
): [number, number, number, number] {
  const out = new Uint32Array(4);
  philoxInto(
    counter[0] >>> 0,
    counter[1] >>> 0,
    counter[2] >>> 0,
    counter[3] >>> 0,
    key[0] >>> 0,
    key[1] >>> 0,
    out,
  );
  return [out[0]!, out[1]!, out[2]!, out[3]!];
}

/** The Philox key of a uint64 seed: (low 32 bits, high 32 bits). */
export function philoxKey(seed: bigint): [number, number] {
  if (seed < 0n || seed >= 1n << 64n)
    throw new GlassboxError('REQUEST_INVALID', `seed ${seed} is not a uint64`, { field: 'seed' });
  return [Number(seed & 0xffffffffn), Number(seed >> 32n)];
}

/** A uint32 as a float64 uniform strictly inside (0, 1): (x + 0.5) / 2^32, never 0 or 1. */
export function uniform(x: number): number {
  return (x + 0.5) / TWO_32;
}

/** Standard Gumbel noise of a uniform: −ln(−ln u). */
export function gumbel(u: number): number {
  return -Math.log(-Math.log(u));
}

/**
 * The position's counter words 1 and 2: the output position t as a uint64 (low, high). Word 0 is
 * floor(id / 4) and word 3 is 0; the id's noise is output word id mod 4.
 */
function positionWords(position: number): [number, number] {
  if (!Number.isSafeInteger(position) || position < 0)
    throw new GlassboxError('REQUEST_INVALID', `position ${position} is not a non-negative integer`, {
      field: 'position',
    });
  return [position >>> 0, Math.floor(position / TWO_32) >>> 0];
}

/** The Gumbel noise g of vocabulary id `id` at output position `position` under `seed`. */
export function gumbelNoise(seed: bigint, position: number, id: number): number {
  const [k0, k1] = philoxKey(seed);
  const [t0, t1] = positionWords(position);
  const out = new Uint32Array(4);
  philoxInto(Math.floor(id / 4) >>> 0, t0, t1, 0, k0, k1, out);
  return gumbel(uniform(out[id % 4]!));
}

/** REQUEST_INVALID naming the field unless the params are in range (the request's own check is llm.ts's). */
export function checkSamplerParams(params: SamplerParams): void {
  const { temperature, topP, topK } = params;
  if (!(Number.isFinite(temperature) && temperature >= 0))
    throw new GlassboxError('REQUEST_INVALID', `temperature ${temperature} must be a finite number ≥ 0`, {
      field: 'temperature',
    });
  if (!(topP > 0 && topP <= 1))
    throw new GlassboxError('REQUEST_INVALID', `top_p ${topP} must be in (0, 1]`, { field: 'top_p' });
  if (!(Number.isSafeInteger(topK) && topK >= 0))
    throw new GlassboxError('REQUEST_INVALID', `top_k ${topK} must be an integer ≥ 0`, { field: 'top_k' });
}

/** True when id a ranks before id b: larger score, or equal score and lower id. */
function before(score: ArrayLike<number>, a: number, b: number): boolean {
  const sa = score[a]!;
  const sb = score[b]!;
  return sa > sb || (sa === sb && a < b);
}

/**
 * The ids of the k largest scores, in rank order (score descending, id ascending): a heap of the
 * best k seen so far whose root is the worst of them, so one pass costs O(V log k).
 */
function topKIds(score: Float64Array, k: number): Int32Array {
  const heap = new Int32Array(k);
  let size = 0;
  // The heap is ordered so that the root is the id that ranks last.
  const worse = (a: number, b: number) => before(score, b, a);
  const siftDown = (from: number) => {
    let i = from;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < size && worse(heap[l]!, heap[m]!)) m = l;
      if (r < size && worse(heap[r]!, heap[m]!)) m = r;
      if (m === i) return;
      const t = heap[i]!;
      heap[i] = heap[m]!;
      heap[m] = t;
      i = m;
    }
  };
  for (let id = 0; id < score.length; id++) {
    if (size < k) {
      let i = size++;
      heap[i] = id;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!worse(heap[i]!, heap[p]!)) break;
        const t = heap[i]!;
        heap[i] = heap[p]!;
        heap[p] = t;
        i = p;
      }
    } else if (before(score, id, heap[0]!)) {
      heap[0] = id;
      siftDown(0);
    }
  }
  return heap.sort((a, b) => (before(score, a, b) ? -1 : 1));
}

/**
 * Top-p over the candidates (all ids when `candidates` is null): probabilities are the softmax of the
 * candidates' scores — max subtracted, exp, the sum Z taken over candidates in ascending id order —
 * and the kept ids are the shortest prefix in rank order whose running float64 sum of p reaches
 * top_p (at least one id; all candidates if rounding keeps the sum below top_p).
 */
function topPIds(score: Float64Array, candidates: Int32Array | null, topP: number): Int32Array {
  let all = candidates;
  if (!all) {
    all = new Int32Array(score.length);
    for (let id = 0; id < all.length; id++) all[id] = id;
  }
  let max = -Infinity;
  for (const id of all) if (score[id]! > max) max = score[id]!;
  const byId = candidates ? Int32Array.from(candidates).sort() : all;
  let z = 0;
  for (const id of byId) z += Math.exp(score[id]! - max);
  // Only the prefix needs ordering: rank the candidates within `width` of the max and widen until
  // their running sum reaches top_p. Those candidates are exactly the head of the full rank order,
  // so the sums, and the prefix, are the same as over a full sort.
  const near = new Int32Array(all.length);
  for (let width = 16; ; width *= 2) {
    let count = 0;
    const floor = width > 1e6 ? -Infinity : max - width;
    for (const id of all) if (score[id]! >= floor) near[count++] = id;
    const ranked = near.subarray(0, count).sort((a, b) => (before(score, a, b) ? -1 : 1));
    let cumulative = 0;
    for (let j = 0; j < count; j++) {
      cumulative += Math.exp(score[ranked[j]!]! - max) / z;
      if (cumulative >= topP) return ranked.slice(0, j + 1);
    }
    if (count === all.length) return ranked.slice();
  }
}

// One scratch row of scores, reused: allocating 1.2 MB per token costs ten times the arithmetic.
// Safe because nothing here is async or re-entrant; a call uses it only until it returns.
let scratch = new Float64Array(0);

/** The scaled scores s = l / T of every id, in float64 (a view of the scratch row). */
function scaled(logits: Float32Array, temperature: number): Float64Array {
  if (scratch.length < logits.length) scratch = new Float64Array(logits.length);
  const s = scratch.subarray(0, logits.length);
  for (let i = 0; i < logits.length; i++) s[i] = logits[i]! / temperature;
  return s;
}

/**
 * The ids the sampler may pick from, in rank order (score descending, id ascending), or null when
 * every id is kept (top_k 0 or ≥ vocabulary, top_p 1): then nothing is sorted at all.
 */
export function keptIds(scores: Float64Array, params: SamplerParams): Int32Array | null {
  let kept: Int32Array | null = null;
  if (params.topK > 0 && params.topK < scores.length) kept = topKIds(scores, params.topK);
  if (params.topP < 1) kept = topPIds(scores, kept, params.topP);
  return kept;
}

/**
 * Greedy: the id of the largest raw logit, the lowest id on ties; the same id as one scan keeping
 * the first strictly larger value (a NaN never wins, and a NaN at id 0 is never beaten).
 */
export function argmax(logits: Float32Array): number {
  const n = logits.length;
  let m0 = logits[0]!;
  if (Number.isNaN(m0)) return 0;
  // The largest value first, in four independent chains of comparisons (one chain waits on each
  // comparison: this runs in under half the time over a 151,936-wide row), then its first id.
  let m1 = m0;
  let m2 = m0;
  let m3 = m0;
  let i = 1;
  for (; i + 3 < n; i += 4) {
    const a = logits[i]!;
    const b = logits[i + 1]!;
    const c = logits[i + 2]!;
    const d = logits[i + 3]!;
    if (a > m0) m0 = a;
    if (b > m1) m1 = b;
    if (c > m2) m2 = c;
    if (d > m3) m3 = d;
  }
  for (; i < n; i++) if (logits[i]! > m0) m0 = logits[i]!;
  if (m1 > m0) m0 = m1;
  if (m2 > m0) m0 = m2;
  if (m3 > m0) m0 = m3;
  // === finds the first id holding the largest value (0 and -0 alike, as > leaves them tied)
  return logits.indexOf(m0);
}

/**
 * The largest Gumbel noise there is (of the largest uniform, x = 2^32 − 1, about 22.87) plus slack: an
 * id whose s + GUMBEL_BOUND is below the best noisy score so far can neither win nor tie, so its
 * noise is never computed. Exact pruning: it changes the work, never the pick or a margin.
 */
const GUMBEL_BOUND = gumbel(uniform(0xffffffff)) + 1e-6;

/**
 * A bound on the noise of word x without a logarithm: −ln u ≥ 1 − u gives g ≤ −ln(1 − u), and
 * 1 − u ≥ 2^(31 − clz32(2^32 − 1 − x)) / 2^32, so g ≤ (1 + clz32(2^32 − 1 − x)) · ln 2 (slack added).
 * Most ids of a row fall short of the best by more than that, and skip both logarithms.
 */
const NOISE_BOUND = Float64Array.from({ length: 33 }, (_, k) => (1 + k) * Math.LN2 + 1e-6);
function noiseBound(x: number): number {
  return NOISE_BOUND[Math.clz32(~x)]!;
}

/** The noisy scores ñ = s + g of a position: the best of the kept ids (all when kept is null). */
type Noisy = { readonly best: number; readonly bestId: number; readonly noisy: (id: number) => number };

function noisyScores(scores: Float64Array, kept: Int32Array | null, seed: bigint, position: number): Noisy {
  const [k0, k1] = philoxKey(seed);
  const [t0, t1] = positionWords(position);
  const out = new Uint32Array(4);
  const noisy = (id: number) => {
    philoxInto(Math.floor(id / 4) >>> 0, t0, t1, 0, k0, k1, out);
    return scores[id]! + gumbel(uniform(out[id % 4]!));
  };
  let best = -Infinity;
  let bestId = -1;
  const consider = (id: number, n: number) => {
    if (bestId < 0 || n > best || (n === best && id < bestId)) {
      best = n;
      bestId = id;
    }
  };
  if (kept) {
    // Rank order: the first ids have the largest s, so the bound prunes most of the rest.
    for (const id of kept) if (bestId < 0 || scores[id]! + GUMBEL_BOUND >= best) consider(id, noisy(id));
    return { best, bestId, noisy };
  }
  // Every id kept. Start from the largest s, then one Philox block gives the noise of 4 consecutive
  // ids; a block none of whose ids can reach the best is skipped.
  const v = scores.length;
  let top = 0;
  for (let id = 1; id < v; id++) if (scores[id]! > scores[top]!) top = id;
  consider(top, noisy(top));
  for (let block = 0; block * 4 < v; block++) {
    const first = block * 4;
    const end = Math.min(first + 4, v);
    let blockMax = -Infinity;
    for (let id = first; id < end; id++) if (scores[id]! > blockMax) blockMax = scores[id]!;
    if (blockMax + GUMBEL_BOUND < best) continue;
    philoxInto(block, t0, t1, 0, k0, k1, out);
    for (let id = first; id < end; id++) {
      const x = out[id - first]!;
      if (scores[id]! + noiseBound(x) >= best) consider(id, scores[id]! + gumbel(uniform(x)));
    }
  }
  return { best, bestId, noisy };
}

function checkLogits(logits: Float32Array): void {
  if (logits.length === 0)
    throw new GlassboxError('REQUEST_INVALID', 'the logits row is empty: no token to pick', {
      field: 'logits',
    });
}

/**
 * The token the sampler picks from one row of logits at output position `position` (0-based) under
 * `seed`: greedy at temperature 0 (no PRNG), otherwise Gumbel-max over the kept ids.
 */
export function sampleToken(
  logits: Float32Array,
  params: SamplerParams,
  seed: bigint,
  position: number,
): number {
  checkSamplerParams(params);
  checkLogits(logits);
  if (params.temperature === 0) return argmax(logits);
  const scores = scaled(logits, params.temperature);
  return noisyScores(scores, keptIds(scores, params), seed, position).bestId;
}

/** How far a claimed token is from the sampler's pick; `outside` when it is not among the kept ids. */
export type TokenMargin = { readonly margin: number; readonly outside: boolean };

/**
 * The margin of `claimed` at a position, by the same code path as `sampleToken` (same kept set, same
 * noise): 0 exactly for the token the sampler picks, > 0 for any other. Greedy: max l − l_c.
 * Sampled: max over kept of ñ − ñ_c, where for a claimed id outside the kept set ñ_c = s_c + g_c.
 */
export function tokenMargin(
  logits: Float32Array,
  params: SamplerParams,
  seed: bigint,
  position: number,
  claimed: number,
): TokenMargin {
  checkSamplerParams(params);
  checkLogits(logits);
  if (!(Number.isInteger(claimed) && claimed >= 0 && claimed < logits.length))
    throw new GlassboxError(
      'REQUEST_INVALID',
      `token id ${claimed} is not in the vocabulary (0..${logits.length - 1})`,
      {
        field: 'claimed',
      },
    );
  if (params.temperature === 0) {
    const best = logits[argmax(logits)]!;
    return { margin: best - logits[claimed]!, outside: false };
  }
  const scores = scaled(logits, params.temperature);
  const kept = keptIds(scores, params);
  const noisy = noisyScores(scores, kept, seed, position);
  const outside = kept !== null && !kept.includes(claimed);
  return { margin: noisy.best - noisy.noisy(claimed), outside };
}

/** One id of a worked sample: its scaled score, noise and noisy score. */
export type SampleStep = { readonly id: number; readonly s: number; readonly g: number; readonly n: number };

/**
 * The whole of one pick, for documentation, tests and the explorer: the kept ids in rank order (all
 * ids in id order when none is dropped) with s, g and ñ, and the pick. Not for hot paths.
 */
export function explainSample(
  logits: Float32Array,
  params: SamplerParams,
  seed: bigint,
  position: number,
): { readonly kept: readonly SampleStep[]; readonly pick: number } {
  checkSamplerParams(params);
  checkLogits(logits);
  if (params.temperature === 0) return { kept: [], pick: argmax(logits) };
  const scores = scaled(logits, params.temperature);
  const kept = keptIds(scores, params) ?? Int32Array.from({ length: logits.length }, (_, i) => i);
  const steps = Array.from(kept, (id) => {
    const g = gumbelNoise(seed, position, id);
    return { id, s: scores[id]!, g, n: scores[id]! + g };
  });
  return { kept: steps, pick: sampleToken(logits, params, seed, position) };
}

/** The token-margin policy of an llm manifest (src/protocol/manifest.ts). */
export type MarginPolicy = { readonly hard: number; readonly soft: number; readonly rate: number };

/**
 * The judgement of a generation's margins. `hard`: an in-set margin above `hard` (no honest sampler
 * is that far off); `statistical`: more positions above `soft` or outside the kept set than
 * `allowed`. `position` is the first failing one: the first hard failure, or the position where the
 * suspicious count first exceeded `allowed`.
 */
export type MarginVerdict = {
  readonly ok: boolean;
  readonly failure: 'hard' | 'statistical' | null;
  readonly position: number | null;
  /** Positions judged (the output length). */
  readonly positions: number;
  /** In-set margins above `hard`. */
  readonly hardCount: number;
  /** Margins above `soft`, or outside the kept set. */
  readonly suspicious: number;
  /** How many suspicious positions are tolerated: max(1, floor(rate · N)). */
  readonly allowed: number;
  readonly maxMargin: number;
};

/** Judges the margins of one generation under a token-margin policy (docs/protocol.md, Margins and the verdict). */
export function judgeMargins(margins: readonly TokenMargin[], policy: MarginPolicy): MarginVerdict {
  const allowed = Math.max(1, Math.floor(policy.rate * margins.length));
  let hardCount = 0;
  let suspicious = 0;
  let firstHard: number | null = null;
  let firstOver: number | null = null;
  let maxMargin = 0;
  margins.forEach(({ margin, outside }, t) => {
    if (!outside && margin > maxMargin) maxMargin = margin;
    // NaN (a broken logits row) fails too: `!(m <= x)` rather than `m > x`.
    if (!outside && !(margin <= policy.hard)) {
      hardCount++;
      firstHard ??= t;
    }
    if (outside || !(margin <= policy.soft)) {
      suspicious++;
      if (suspicious > allowed) firstOver ??= t;
    }
  });
  const failure = firstHard !== null ? 'hard' : firstOver !== null ? 'statistical' : null;
  return {
    ok: failure === null,
    failure,
    position: firstHard ?? firstOver,
    positions: margins.length,
    hardCount,
    suspicious,
    allowed,
    maxMargin,
  };
}
