import type { TokenLogprob } from '../engine.js';
import type { LlmTokenizer } from './tokenizer.js';

/*
 * OpenAI-style logprobs: the log-softmax of the raw logits (temperature and truncation do not
 * change them, as OpenAI and vLLM report them), for the chosen token and the `top` most likely.
 */

export type LogprobWithTop = TokenLogprob & { readonly top: readonly TokenLogprob[] };

/** log Σ exp(l), in float64 with the max subtracted. */
function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return max + Math.log(sum);
}

/** The `n` ids of the largest logits, largest first (ties: lower id first). */
function topIds(row: Float32Array, n: number): number[] {
  const best: number[] = [];
  for (let id = 0; id < row.length; id++) {
    const v = row[id]!;
    if (best.length === n && v <= row[best[n - 1]!]!) continue;
    let at = best.length === n ? n - 1 : best.length;
    if (best.length < n) best.push(id);
    while (at > 0 && row[best[at - 1]!]! < v) {
      best[at] = best[at - 1]!;
      at--;
    }
    best[at] = id;
  }
  return best;
}

export function tokenLogprob(tok: LlmTokenizer, id: number, logprob: number): TokenLogprob {
  const bytes = tok.bytesOf(id);
  return { token: new TextDecoder().decode(bytes), logprob, bytes: Array.from(bytes) };
}

/** The logprob of `id` in this row and the `top` most likely tokens' (0-20). */
export function logprobsOf(tok: LlmTokenizer, row: Float32Array, id: number, top: number): LogprobWithTop {
  const lse = logSumExp(row);
  return {
    ...tokenLogprob(tok, id, row[id]! - lse),
    top: top > 0 ? topIds(row, top).map((t) => tokenLogprob(tok, t, row[t]! - lse)) : [],
  };
}
