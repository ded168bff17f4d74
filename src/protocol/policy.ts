import { GlassboxError } from './errors.js';
import type { Tensor, TensorMap } from './tensor.js';

/**
 * How two results of one model are compared (docs/protocol.md, Comparison policies). Per model, in its
 * manifest. `exact`: bit equality. `tolerance`: each float element within `abs + rel * max(|a|,|b|)`
 * (non-float tensors still compare exactly). `argmax`: the index of the largest element along the
 * last axis of `output` agrees, row by row (other outputs are not compared).
 */
export type ComparisonPolicy =
  | { readonly kind: 'exact' }
  | { readonly kind: 'tolerance'; readonly abs: number; readonly rel: number }
  | { readonly kind: 'argmax'; readonly output: string }
  /** LLM generations: see docs/protocol.md, Token margins (src/protocol/sampling.ts judges them). */
  | { readonly kind: 'token-margin'; readonly hard: number; readonly soft: number; readonly rate: number };

export type Agreement =
  | { readonly agree: true }
  | {
      readonly agree: false;
      /** Why, for people: the first difference found. */
      readonly reason: string;
      /** The output tensor that differs, when one does. */
      readonly output?: string;
      /** The flat element index (or row, for argmax) of the first difference. */
      readonly index?: number;
    };

const AGREE: Agreement = { agree: true };

/**
 * The tolerance a float model gets when its packer names no policy: the one the example float
 * models (iris, cnn) use. float32 answers of one admitted profile are bit-identical, but a model
 * packed `exact` is registered `exact` on chain, which makes any bit difference slashable
 * equivocation; the default must not expose providers to that for a model nobody declared exact.
 */
export const DEFAULT_TOLERANCE = {
  kind: 'tolerance',
  abs: 1e-5,
  rel: 1e-4,
} as const satisfies ComparisonPolicy;

/**
 * The policy of a model whose packer named none: `tolerance` (DEFAULT_TOLERANCE) when an output
 * is a float tensor, else `exact` (integer and string outputs are bit-exact everywhere).
 */
export function defaultPolicy(outputs: readonly { readonly dtype: string }[]): ComparisonPolicy {
  return outputs.some((o) => o.dtype === 'float32' || o.dtype === 'float64')
    ? DEFAULT_TOLERANCE
    : { kind: 'exact' };
}

export function assertPolicy(policy: ComparisonPolicy): void {
  if (policy.kind === 'tolerance') {
    for (const key of ['abs', 'rel'] as const) {
      const v = policy[key];
      if (!(Number.isFinite(v) && v >= 0))
        throw new GlassboxError('POLICY_INVALID', `tolerance.${key} is ${v}, not a finite number >= 0`, {
          field: `policy.${key}`,
        });
    }
  }
}

/** Whether two results agree under `policy`, and if not, where and why. Pure and symmetric. */
export function agree(policy: ComparisonPolicy, a: TensorMap, b: TensorMap): Agreement {
  assertPolicy(policy);
  if (policy.kind === 'argmax') {
    const ta = a[policy.output];
    const tb = b[policy.output];
    if (!ta || !tb)
      return differ(
        `output "${policy.output}" is missing from ${ta ? 'the second' : 'the first'} result`,
        policy.output,
      );
    return compareTensor(policy, policy.output, ta, tb);
  }
  const namesA = Object.keys(a).sort();
  const namesB = Object.keys(b).sort();
  if (namesA.join('\0') !== namesB.join('\0'))
    return differ(`the results name different outputs: [${namesA.join(', ')}] vs [${namesB.join(', ')}]`);
  for (const name of namesA) {
    const result = compareTensor(policy, name, a[name]!, b[name]!);
    if (!result.agree) return result;
  }
  return AGREE;
}

function differ(reason: string, output?: string, index?: number): Agreement {
  return {
    agree: false,
    reason,
    ...(output === undefined ? {} : { output }),
    ...(index === undefined ? {} : { index }),
  };
}

function compareTensor(policy: ComparisonPolicy, name: string, a: Tensor, b: Tensor): Agreement {
  if (a.dtype !== b.dtype) return differ(`output "${name}" has dtype ${a.dtype} vs ${b.dtype}`, name);
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i]))
    return differ(`output "${name}" has shape [${a.shape.join(', ')}] vs [${b.shape.join(', ')}]`, name);
  if (policy.kind === 'argmax') return compareArgmax(name, a, b);
  const float = a.dtype === 'float32' || a.dtype === 'float64';
  if (policy.kind === 'tolerance' && float)
    return compareClose(name, a.data, b.data as typeof a.data, policy.abs, policy.rel);
  return compareBits(name, a, b);
}

function compareBits(name: string, a: Tensor, b: Tensor): Agreement {
  if (a.dtype === 'string') {
    const i = a.data.findIndex((s, k) => s !== (b.data as string[])[k]);
    return i < 0 ? AGREE : differ(`output "${name}" differs at element ${i}`, name, i);
  }
  const other = b.data as typeof a.data;
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(other.buffer, other.byteOffset, other.byteLength);
  for (let k = 0; k < x.length; k++) {
    if (x[k] !== y[k]) {
      const i = Math.floor(k / a.data.BYTES_PER_ELEMENT);
      return differ(`output "${name}" differs at element ${i}: ${a.data[i]} vs ${other[i]}`, name, i);
    }
  }
  return AGREE;
}

function compareClose(
  name: string,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  abs: number,
  rel: number,
): Agreement {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (Object.is(x, y) || x === y || (Number.isNaN(x) && Number.isNaN(y))) continue;
    const diff = Math.abs(x - y);
    // Unequal values of which one is NaN or infinite are never close; `!(<=)` also catches NaN.
    if (!Number.isFinite(diff) || !(diff <= abs + rel * Math.max(Math.abs(x), Math.abs(y))))
      return differ(
        `output "${name}" element ${i} is ${x} vs ${y}: |diff| ${diff} exceeds abs ${abs} + rel ${rel}`,
        name,
        i,
      );
  }
  return AGREE;
}

function compareArgmax(name: string, a: Tensor, b: Tensor): Agreement {
  if (a.dtype === 'string') return differ(`argmax output "${name}" holds strings`, name);
  const width = a.shape.length === 0 ? 1 : a.shape[a.shape.length - 1]!;
  const rows = width === 0 ? 0 : a.data.length / width;
  for (let row = 0; row < rows; row++) {
    const ia = argmaxRow(a.data, row * width, width);
    const ib = argmaxRow(b.data as typeof a.data, row * width, width);
    if (ia !== ib) return differ(`output "${name}" row ${row} has argmax ${ia} vs ${ib}`, name, row);
  }
  return AGREE;
}

/** Index of the first largest element; NaN counts as largest so that NaN outputs can't hide. */
function argmaxRow(data: ArrayLike<number | bigint>, start: number, width: number): number {
  let best = 0;
  for (let i = 1; i < width; i++) {
    const v = data[start + i]!;
    const m = data[start + best]!;
    if (typeof m === 'number' && Number.isNaN(m)) break;
    if ((typeof v === 'number' && Number.isNaN(v)) || v > m) best = i;
  }
  return best;
}
