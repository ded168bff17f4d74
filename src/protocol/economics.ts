/*
 * How often verifiers must re-execute so that cheating loses money (Proof of Sampling's argument,
 * docs/economics.md). A provider that fakes or skips one inference saves at most `gain` (the
 * honest compute it did not do, plus anything a wrong answer earns it). Each of `verifiers`
 * independent verifiers re-executes a committed receipt with probability p, so the receipt is
 * checked with probability q = 1 - (1 - p)^verifiers. Caught, the provider loses `slash` (a share
 * of its stake); the payments the escrow still holds for it go back to clients too, which this
 * leaves out (it only makes cheating worse). Cheating on one receipt is
 * unprofitable when the expected loss exceeds the gain:
 *
 *     q * loss >= (1 - q) * gain   <=>   q >= gain / (loss + gain)
 *
 * per receipt (convictions compound, so a provider cheating at volume risks at most its whole
 * stake plus the payments the escrow holds for it: see docs/economics.md). Separately, a
 * provider that cheats on `cheats` receipts within one challenge window escapes every check with
 * probability (1 - q)^cheats; asking that to be at most
 * 1 - confidence gives a second floor for q. The default p is the larger of the two, and the
 * verifiers' compute is `verifiers * p` of the providers'.
 */

const BPS = 10_000n;

export type SamplingInputs = {
  /**
   * What the honest computation of one inference costs the provider (base units): what faking
   * an answer saves (the fake is paid the same price as the honest answer would be).
   */
  readonly computeCost: bigint;
  /** The provider's stake (base units). */
  readonly stake: bigint;
  /** The share of stake a conviction slashes, in basis points. */
  readonly slashBps: number;
  /** Independent verifiers sampling every batch. */
  readonly verifiers: number;
  /**
   * The fewest wrong answers a cheater gives within one challenge window that must be caught
   * with `confidence` (a cheater cheating less often gains less, and still loses in expectation).
   */
  readonly cheats: number;
  /** The probability of catching a cheater that gives `cheats` wrong answers, e.g. 0.999. */
  readonly confidence: number;
};

export type SamplingPlan = {
  /** The sampling probability each verifier applies to each committed receipt. */
  readonly p: number;
  /** The per-receipt check probability q that makes a single cheat unprofitable. */
  readonly qUnprofitable: number;
  /** The per-receipt check probability q that catches `cheats` wrong answers with `confidence`. */
  readonly qDetect: number;
  /** The per-receipt check probability with `p` and all the verifiers. */
  readonly q: number;
  /** The probability that a cheater giving `cheats` wrong answers is caught. */
  readonly catchProbability: number;
  /** Expected loss per cheat minus what it saves (base units; positive: cheating loses). */
  readonly expectedNetLossPerCheat: number;
  /** Verifier re-executions per provider execution: `verifiers * p`. */
  readonly computeShare: number;
};

/** The network's default assumptions: two verifiers; 100 wrong answers caught with 99.9%. */
export const DEFAULT_SAMPLING = { verifiers: 2, cheats: 100, confidence: 0.999 } as const;

export function samplingPlan(x: SamplingInputs): SamplingPlan {
  if (!Number.isInteger(x.verifiers) || x.verifiers < 1) throw new RangeError('verifiers must be >= 1');
  if (!Number.isInteger(x.cheats) || x.cheats < 1) throw new RangeError('cheats must be >= 1');
  if (!(x.confidence > 0 && x.confidence < 1)) throw new RangeError('confidence must be in (0, 1)');
  if (x.slashBps < 0 || x.slashBps > 10_000) throw new RangeError('slashBps must be in [0, 10000]');
  const gain = Number(x.computeCost);
  const loss = Number((x.stake * BigInt(x.slashBps)) / BPS);
  const qUnprofitable = loss + gain === 0 ? 1 : gain / (loss + gain);
  const qDetect = 1 - Math.pow(1 - x.confidence, 1 / x.cheats);
  const qNeeded = Math.min(1, Math.max(qUnprofitable, qDetect));
  const p = 1 - Math.pow(1 - qNeeded, 1 / x.verifiers);
  const q = 1 - Math.pow(1 - p, x.verifiers);
  return {
    p,
    qUnprofitable,
    qDetect,
    q,
    catchProbability: 1 - Math.pow(1 - q, x.cheats),
    expectedNetLossPerCheat: q * loss - (1 - q) * gain,
    computeShare: x.verifiers * p,
  };
}
