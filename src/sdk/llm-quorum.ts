import { decodeTensors, tensorsToJson } from '../protocol/encoding.js';
import { GlassboxError } from '../protocol/errors.js';
import { llmOutputData } from '../protocol/llm.js';
import type { GenerationResult, LlmVerificationReport } from './chat.js';
import type { ProviderCandidate } from './discovery.js';
import type { Disagreement, Evidence } from './evidence.js';
import type { RejectedAttempt } from './infer.js';
import {
  consumeSegment,
  failureCode,
  newRun,
  rejection,
  startSegment,
  type Call,
  type Run,
} from './llm-generation.js';
import { finish, inputsJson } from './llm-result.js';
import { recordCharge } from './payments.js';

/**
 * Quorum k (non-stream): k distinct providers each generate the whole answer with the same seed
 * (one provider each: a failed one is replaced by the next, never continued), their receipts
 * verified; the output ids are compared, and the majority's answer is returned with Disagreement
 * evidence against the rest. Only the majority is paid (as infer's quorum, audit L-6).
 */
export async function quorum(
  call: Call,
  ranked: readonly ProviderCandidate[],
  k: number,
): Promise<GenerationResult> {
  if (ranked.length < k)
    throw new GlassboxError(
      'PROVIDER_UNAVAILABLE',
      `quorum ${k} needs ${k} distinct providers of model ${call.offer.id} within the price cap; ${ranked.length} offer it`,
      { field: 'mode.quorum', details: { model: call.offer.id, available: ranked.length, k } },
    );
  const solo: Call = { ...call, hedgeAfterMs: false, chargeEach: false };
  const answers: { provider: ProviderCandidate; run: Run }[] = [];
  const rejected: RejectedAttempt[] = [];
  let next = 0;
  const member = async (): Promise<void> => {
    while (next < ranked.length) {
      const provider = ranked[next++]!;
      const run = newRun();
      try {
        const started = await startSegment(solo, [provider], run);
        await consumeSegment(solo, run, started, undefined);
        if (run.finishReason === undefined || run.reports.length !== 1) {
          rejected.push(...run.rejected);
          continue;
        }
        answers.push({ provider, run });
        return;
      } catch (error) {
        rejected.push(...(run.rejected.length > 0 ? run.rejected : [rejection(provider.address, error)]));
        if (call.deadline.aborted) return;
      }
    }
  };
  await Promise.all(Array.from({ length: k }, member));
  const needed = Math.floor(k / 2) + 1;
  if (answers.length < needed)
    throw new GlassboxError(
      failureCode(rejected),
      `quorum ${k} for model ${call.offer.id}: ${answers.length} verified answer(s); a majority needs ${needed}`,
      {
        metaMessages: rejected.map((r) => `${r.provider}: ${r.code}: ${r.message}`),
        details: { model: call.offer.id, k, rejected },
      },
    );
  const groups: (typeof answers)[] = [];
  for (const a of answers) {
    const g = groups.find((group) => sameIds(group[0]!.run.ids, a.run.ids));
    if (g) g.push(a);
    else groups.push([a]);
  }
  groups.sort((a, b) => b.length - a.length);
  const top = groups[0]!;
  const hasMajority = top.length * 2 > k;
  const reports = answers.flatMap((a) => a.run.reports);
  // Only the majority is paid: a minority answer is disputed, and with no majority none is known right.
  if (hasMajority)
    for (const a of top) recordCharge(call.client, a.provider, a.run.segments[0]!.receipt!.receipt.price);
  const evidence = groups.length > 1 ? disagreementEvidence(call, hasMajority ? top : [], groups) : undefined;
  const report: LlmVerificationReport = {
    ok: hasMajority,
    mode: 'quorum',
    receipts: reports,
    rejected,
    hedged: false,
    failovers: 0,
    quorum: {
      k,
      groups: groups.map((g) => ({
        providers: g.map((a) => a.provider.address),
        outputHash: g[0]!.run.segments[0]!.receipt!.receipt.outputHash,
      })),
      majority: top.length,
      answered: answers.length,
    },
  };
  if (!hasMajority)
    throw new GlassboxError(
      'QUORUM_NO_MAJORITY',
      `the ${answers.length} answering providers of model ${call.offer.id} gave ${groups.length} different generations; none has a majority of ${k}`,
      { details: { report, evidence } },
    );
  const best = top[0]!.run;
  const result = await finish(call, best);
  return {
    ...result,
    segments: top.flatMap((a) => a.run.segments),
    receipts: top.map((a) => a.run.segments[0]!.receipt!),
    report: { ...report, ...(result.report.recheck ? { recheck: result.report.recheck } : {}) },
    ...(evidence ? { evidence } : {}),
  };
}

const sameIds = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((id, i) => id === b[i]);

function disagreementEvidence(
  call: Call,
  majority: readonly { provider: ProviderCandidate; run: Run }[],
  groups: readonly (readonly { provider: ProviderCandidate; run: Run }[])[],
): Evidence {
  const against = majority[0];
  const first = (majority[0] ?? groups[0]![0]!).run;
  const disagreements: Disagreement[] = [];
  for (const group of groups) {
    if (group === majority) continue;
    for (const a of group) {
      const receipt = a.run.segments[0]!.receipt!;
      const reference = (against ?? groups.find((g) => g !== group)![0]!).run.ids;
      const at = a.run.ids.findIndex((id, i) => id !== reference[i]);
      disagreements.push({
        provider: a.provider.address,
        receipt,
        outputs: tensorsToJson(decodeTensors(llmOutputData(a.run.ids))),
        reason: `output ids differ from token ${at < 0 ? Math.min(a.run.ids.length, reference.length) : at}`,
        ...(against ? { against: against.run.segments[0]!.receipt! } : {}),
        inputsUri: `${a.provider.endpoint.replace(/\/+$/, '')}/v1/receipts/${receipt.receipt.requestId}`,
      });
    }
  }
  return {
    model: call.offer.id,
    policy: call.offer.manifest.policy,
    inputHash: first.segments[0]!.receipt!.receipt.inputHash,
    inputs: inputsJson(call, first.promptIds ?? []),
    majority: majority.map((a) => a.run.segments[0]!.receipt!),
    disagreements,
    equivocations: [],
  };
}
