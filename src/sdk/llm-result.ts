import { decodeTensors, tensorsToJson, type JsonTensor } from '../protocol/encoding.js';
import { isGlassboxError } from '../protocol/errors.js';
import { llmInputData } from '../protocol/llm.js';
import type { Engines } from '../runtime/registry.js';
import type { GenerationResult, LlmRecheckSummary } from './chat.js';
import type { Client } from './client.js';
import type { Equivocation, Evidence } from './evidence.js';
import { segmentBody, type Call, type Run } from './llm-generation.js';
import type { LlmRoute } from './llm-transport.js';
import { expectedLlmRequest, recheckSummary } from './llm-verify.js';
import { getPackage } from './manifests.js';

/*
 * A finished generation as chat.ts returns it: the local re-check of the whole of it (mode
 * 'local'), whether every token is accounted for, the logprobs of its chunks as one answer's.
 */

/** The engines of mode 'local', loaded on first use (as infer's: onnxruntime only when asked for). */
function localEngines(client: Client): Promise<Engines> {
  client.state.engines ??= import('../runtime/index.js').then((m) => m.defaultEngines());
  return client.state.engines;
}

const runtime = () => import('../runtime/index.js');

/**
 * Mode 'local': the whole generation (every segment's tokens, as one request without a prefix)
 * re-checked here with the model's package: prompt ids, margins, termination and count.
 */
async function localRecheck(call: Call, run: Run): Promise<LlmRecheckSummary> {
  try {
    const provider =
      call.offer.candidates.find((c) => run.segments.some((s) => s.provider === c.address)) ??
      call.offer.candidates[0]!;
    const pkg = await getPackage(call.client, call.offer.id, call.offer.manifest, provider);
    const engine = (await localEngines(call.client)).tokens(pkg);
    const promptIds = run.promptIds ?? [];
    const request = expectedLlmRequest(segmentBody(call, []), promptIds.length, call.offer.manifest);
    const report = await (
      await runtime()
    ).recheckGeneration(engine, pkg, {
      request,
      promptIds,
      outputIds: run.ids,
      completionTokens: run.ids.length,
    });
    return recheckSummary(report);
  } catch (error) {
    return {
      ok: false,
      firstFailure: {
        check: 'local',
        position: null,
        reason: `the local re-check could not run: ${isGlassboxError(error) ? error.shortMessage : String(error)}`,
      },
      margins: { positions: 0, maxMargin: 0, suspicious: 0, allowed: 0 },
      durationMs: 0,
    };
  }
}

/** The result of a run: the re-check in local mode, and whether every token is accounted for. */
export async function finish(call: Call, run: Run): Promise<GenerationResult> {
  await Promise.all(run.pending);
  const recheck = call.local ? await localRecheck(call, run) : undefined;
  // Every token returned is covered by a verified receipt, or (local) re-checked here.
  const covered = run.uncovered === 0 || recheck?.ok === true;
  const ok = !run.failedReceipt && covered && (recheck === undefined || recheck.ok);
  const promptIds = run.promptIds ?? [];
  const evidence = run.evidence.length > 0 ? equivocationEvidence(call, run, run.evidence) : undefined;
  return {
    model: call.offer.id,
    text: run.text,
    finishReason: run.finishReason ?? 'stop',
    promptIds,
    outputIds: run.ids,
    seed: call.seed,
    usage: { promptTokens: promptIds.length, completionTokens: run.ids.length },
    segments: run.segments,
    receipts: run.segments.flatMap((s) => (s.receipt && s.report?.ok ? [s.receipt] : [])),
    report: {
      ok,
      mode: call.local ? 'local' : 'receipt',
      receipts: run.reports,
      rejected: run.rejected,
      hedged: run.hedged,
      failovers: run.failovers,
      ...(recheck ? { recheck } : {}),
    },
    ...(evidence ? { evidence } : {}),
    ...(run.logprobs.length > 0 ? { logprobs: mergeLogprobs(call.route, run.logprobs) } : {}),
  };
}

/** The chunks' logprobs as one answer's: chat `{content: [...]}`, completion's parallel arrays. */
function mergeLogprobs(route: LlmRoute, parts: readonly unknown[]): unknown {
  if (route === 'chat')
    return { content: parts.flatMap((p) => (p as { content?: unknown[] | null }).content ?? []) };
  const out = {
    tokens: [] as unknown[],
    token_logprobs: [] as unknown[],
    top_logprobs: [] as unknown[],
    text_offset: [] as number[],
  };
  let offset = 0;
  for (const p of parts) {
    const lp = p as { tokens?: string[]; token_logprobs?: unknown[]; top_logprobs?: unknown[] | null };
    for (const [i, token] of (lp.tokens ?? []).entries()) {
      out.tokens.push(token);
      out.token_logprobs.push(lp.token_logprobs?.[i]);
      out.top_logprobs.push(lp.top_logprobs?.[i] ?? null);
      out.text_offset.push(offset);
      offset += token.length;
    }
  }
  return out;
}

/** The data a receipt of this call hashes, as JSON tensors (for evidence). */
export function inputsJson(call: Call, promptIds: readonly number[]): Record<string, JsonTensor> {
  const request = expectedLlmRequest(segmentBody(call, []), promptIds.length, call.offer.manifest);
  return tensorsToJson(decodeTensors(llmInputData(request, promptIds)));
}

function equivocationEvidence(call: Call, run: Run, equivocations: readonly Equivocation[]): Evidence {
  return {
    model: call.offer.id,
    policy: call.offer.manifest.policy,
    inputHash: equivocations[0]!.b.receipt.inputHash,
    inputs: inputsJson(call, run.promptIds ?? []),
    majority: [],
    disagreements: [],
    equivocations,
  };
}
