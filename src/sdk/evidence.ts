import type { Address, Hex } from 'viem';
import { openChallenge, reportEquivocation } from '../chain/disputes.js';
import { getModel } from '../chain/models.js';
import type { JsonTensor } from '../protocol/encoding.js';
import { isGlassboxError } from '../protocol/errors.js';
import type { ComparisonPolicy } from '../protocol/policy.js';
import type { SignedReceipt } from '../protocol/receipt.js';
import type { Client } from './client.js';

/**
 * What a client holds when answers conflict. Two kinds, because the chain treats them differently:
 *
 * - `equivocations`: two receipts signed by ONE provider for the same model, input, params and
 *   runtime with different outputs. On a model registered `exact` this is a proof by itself:
 *   `submitEvidence` calls DisputeManager.reportEquivocation and the provider is slashed at once.
 *   The client finds these by remembering the receipts it verified (quorum or not).
 * - `disagreements`: receipts of DIFFERENT providers whose outputs disagree under the model's
 *   policy (a quorum's minority against its majority). Neither signature proves who is wrong, so
 *   this is the material of a challenge (a committee re-executes): `submitEvidence` opens one per
 *   minority receipt only when asked (`challenge: true`, it posts a bond); until verifiers vote
 *   (issue 5) such a challenge resolves void and the bond comes back.
 */
export type Evidence = {
  readonly model: string;
  readonly policy: ComparisonPolicy;
  readonly inputHash: Hex;
  /** The inputs all the receipts answered (JSON transport), for whoever re-executes. */
  readonly inputs: Record<string, JsonTensor>;
  /** The majority's receipts (empty when there is none). */
  readonly majority: readonly SignedReceipt[];
  readonly disagreements: readonly Disagreement[];
  readonly equivocations: readonly Equivocation[];
};

export type Disagreement = {
  readonly provider: Address;
  readonly receipt: SignedReceipt;
  readonly outputs: Record<string, JsonTensor>;
  /** Why it disagrees with `against` under the policy. */
  readonly reason: string;
  /** A majority receipt it disagrees with (absent when there is no majority). */
  readonly against?: SignedReceipt;
  /** Where a committee can fetch the receipt and its inputs (the provider's /v1/receipts/:id). */
  readonly inputsUri: string;
};

export type Equivocation = {
  readonly provider: Address;
  readonly a: SignedReceipt;
  readonly b: SignedReceipt;
};

/** A verified answer the client remembers, to catch a provider answering one input two ways. */
export type RememberedAnswer = { readonly receipt: SignedReceipt; readonly at: number };

/** How many verified receipts a client remembers for equivocation checks. */
export const REMEMBERED_ANSWERS = 4096;

/**
 * Remembers a verified receipt; returns an equivocation when the same provider already signed a
 * different output for the same model, input, params and runtime.
 */
export function rememberAnswer(client: Client, signed: SignedReceipt): Equivocation | undefined {
  const r = signed.receipt;
  const key = [r.provider, r.model, r.inputHash, r.paramsHash, r.runtime].join(':').toLowerCase();
  const seen = client.state.answers.get(key);
  if (seen) {
    if (seen.receipt.receipt.outputHash !== r.outputHash)
      return { provider: r.provider, a: seen.receipt, b: signed };
    return undefined;
  }
  client.state.answers.set(key, { receipt: signed, at: Date.now() });
  if (client.state.answers.size > REMEMBERED_ANSWERS) {
    const oldest = client.state.answers.keys().next().value;
    if (oldest !== undefined) client.state.answers.delete(oldest);
  }
  return undefined;
}

export type SubmitEvidenceParameters = {
  /** Also open a challenge (posting the bond) for each disagreement. Default false. */
  readonly challenge?: boolean;
};

export type SubmitEvidenceReturnType = {
  readonly equivocations: readonly (
    | {
        readonly provider: Address;
        readonly submitted: true;
        readonly hash: Hex;
        readonly slashed: bigint;
        readonly reward: bigint;
      }
    | { readonly provider: Address; readonly submitted: false; readonly reason: string }
  )[];
  readonly challenges: readonly (
    | {
        readonly provider: Address;
        readonly submitted: true;
        readonly hash: Hex;
        readonly challengeId: bigint;
      }
    | { readonly provider: Address; readonly submitted: false; readonly reason: string }
  )[];
};

/**
 * Submits what the chain can act on: each equivocation on an `exact` model is reported (slashing
 * the provider at once); disagreements between providers are challenges, opened only with
 * `challenge: true`. Everything not submitted says why.
 */
export async function submitEvidence(
  client: Client,
  evidence: Evidence,
  params: SubmitEvidenceParameters = {},
): Promise<SubmitEvidenceReturnType> {
  const record = await getModel(client.chain, evidence.model);
  const exact = record?.exact === true;
  const equivocations: SubmitEvidenceReturnType['equivocations'][number][] = [];
  for (const e of evidence.equivocations) {
    if (!exact) {
      equivocations.push({
        provider: e.provider,
        submitted: false,
        reason: record
          ? 'the model is not registered exact on chain: equivocation is not slashable for it'
          : 'the model is not registered on chain',
      });
      continue;
    }
    try {
      const tx = await reportEquivocation(client.chain, { a: e.a, b: e.b });
      equivocations.push({
        provider: e.provider,
        submitted: true,
        hash: tx.hash,
        slashed: tx.slashed,
        reward: tx.reward,
      });
    } catch (error) {
      equivocations.push({
        provider: e.provider,
        submitted: false,
        reason: isGlassboxError(error)
          ? `${error.shortMessage}${error.details.error ? ` (${String(error.details.error)})` : ''}`
          : String(error),
      });
    }
  }
  const challenges: SubmitEvidenceReturnType['challenges'][number][] = [];
  for (const d of evidence.disagreements) {
    if (!params.challenge) {
      challenges.push({
        provider: d.provider,
        submitted: false,
        reason:
          'a disagreement between providers is a challenge (bond, committee re-execution): pass challenge: true',
      });
      continue;
    }
    try {
      const tx = await openChallenge(client.chain, {
        receipt: d.receipt.receipt,
        signature: d.receipt.signature,
        inputsUri: d.inputsUri,
      });
      challenges.push({ provider: d.provider, submitted: true, hash: tx.hash, challengeId: tx.challengeId });
    } catch (error) {
      challenges.push({
        provider: d.provider,
        submitted: false,
        reason: isGlassboxError(error) ? error.shortMessage : String(error),
      });
    }
  }
  return { equivocations, challenges };
}
