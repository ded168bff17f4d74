import { GlassboxError } from '../../protocol/errors.js';
import type { LlmManifest, ModelPackage } from '../../protocol/manifest.js';
import { judgeMargins, tokenMargin, type MarginVerdict, type TokenMargin } from '../../protocol/sampling.js';
import type { FinishReason, LlmPrompt, SamplingParams, TokenEngine } from '../engine.js';

/*
 * The teacher-forced re-check of one generation (docs/protocol.md, Token margins): anyone holding
 * the package re-templates the request, runs ONE forward pass over prompt + claimed output, and
 * asks at every output position how far the claimed token is from what the protocol's sampler
 * picks from those logits. Under the provider's own runtime profile every margin is exactly 0;
 * under another profile honest margins are tiny, and the manifest's token-margin policy says how
 * tiny. Termination and the token count are checked from the ids alone.
 */

/**
 * What a generation was asked: the prompt before templating and the parameters, defaults filled in.
 * The protocol's normalized request (src/protocol/llm.ts `LlmRequest`, as a receipt's input data
 * decodes) is one; its `model`, when given, must be the package's id.
 */
export type RecheckRequest = LlmPrompt & {
  readonly params: SamplingParams;
  readonly model?: string;
  /**
   * A continuation's prefix (docs/protocol.md, Continuing a generation): output ids an earlier
   * provider produced, which this generation continued after. Scored as context, never judged.
   */
  readonly prefixIds?: readonly number[];
};

export type RecheckParameters = {
  readonly request: RecheckRequest;
  /** The prompt ids the provider claims it generated from (its receipt's input data); checked if given. */
  readonly promptIds?: readonly number[];
  /** The claimed output ids, including the EOS or the token that completed a stop string. */
  readonly outputIds: readonly number[];
  /** The completion token count the provider claims (and charged for); checked if given. */
  readonly completionTokens?: number;
  /**
   * Scores and judges the margins of `outputIds[0..through]` only (a committee judging a token
   * challenge: nothing after the named position bears on the claim); negative scores none (a claim
   * about the prompt, the count or the ending, which the ids settle). Default: every output.
   */
  readonly through?: number;
};

export type RecheckCheck = 'prompt' | 'margins' | 'termination' | 'count';

export type RecheckReport = {
  /** Every check holds. */
  readonly ok: boolean;
  /** The first check that failed (in the order prompt, count, termination, margins), and why. */
  readonly failure: {
    readonly check: RecheckCheck;
    readonly position: number | null;
    readonly reason: string;
  } | null;
  readonly prompt: {
    readonly ok: boolean;
    /** The prompt ids the request templates to here. */
    readonly ids: readonly number[];
    /** The first index where the claimed ids differ (or where one ends), null when equal or not claimed. */
    readonly firstMismatch: number | null;
    /**
     * Why the request's prefix cannot be one an unfinished generation left (an id outside the
     * vocabulary, an EOS, a stop string already complete), and at which of its items; null if it can.
     */
    readonly prefix: { readonly position: number; readonly reason: string } | null;
  };
  /** Per output position (a continuation's new tokens only): the claimed token's margin (sampling.ts `tokenMargin`). */
  readonly margins: readonly TokenMargin[];
  readonly verdict: MarginVerdict;
  readonly termination: {
    readonly ok: boolean;
    /** How the output legitimately ends, or null when it does not. */
    readonly finishReason: FinishReason | null;
    readonly position: number | null;
    readonly reason: string | null;
  };
  readonly count: { readonly ok: boolean; readonly claimed: number | null; readonly actual: number };
  /** Wall time of templating, the forward pass and the margins, in ms. */
  readonly durationMs: number;
};

/**
 * Re-checks a claimed generation of `pkg` with `engine` (any profile): prompt ids, margins under the
 * manifest's token-margin policy, termination and count. Refuses (REQUEST_INVALID naming the field)
 * only what cannot be checked at all; a wrong claim is a failing report, never an exception.
 */
export async function recheckGeneration(
  engine: TokenEngine,
  pkg: ModelPackage,
  params: RecheckParameters,
): Promise<RecheckReport> {
  const started = performance.now();
  const manifest = pkg.manifest as LlmManifest;
  if (manifest.format !== 'llm' || manifest.policy.kind !== 'token-margin')
    throw new GlassboxError('REQUEST_INVALID', `model ${pkg.id} is not an llm with a token-margin policy`, {
      field: 'model',
    });
  const { request, outputIds } = params;
  if (request.model !== undefined && request.model !== pkg.id)
    throw new GlassboxError('REQUEST_INVALID', `the request is for model ${request.model}, not ${pkg.id}`, {
      field: 'model',
    });
  const sampling = request.params;
  const asked: LlmPrompt =
    request.kind === 'chat'
      ? { kind: 'chat', messages: request.messages }
      : { kind: 'completion', prompt: request.prompt };
  const expected = await engine.prompt(pkg, asked);
  const prefixIds = request.prefixIds ?? [];
  const prefixProblem = await checkPrefix(engine, pkg, manifest, prefixIds, sampling.stop);
  const compared = comparePrompt(expected.ids, params.promptIds);
  const prompt = { ...compared, ok: compared.ok && prefixProblem === null, prefix: prefixProblem };
  const count = {
    ok: params.completionTokens === undefined || params.completionTokens === outputIds.length,
    claimed: params.completionTokens ?? null,
    actual: outputIds.length,
  };
  const termination = prefixProblem
    ? { ok: false, finishReason: null, position: null, reason: 'the prefix is not an unfinished generation' }
    : await checkTermination(engine, pkg, manifest, prefixIds, outputIds, sampling);
  const margins: TokenMargin[] = [];
  // a continuation's context is prompt + prefix; its new tokens sit at positions after the prefix.
  // Teacher forcing needs only the tokens up to the last judged one: row t depends on ids before t.
  const context = [...expected.ids, ...prefixIds];
  const scored = outputIds.slice(
    0,
    params.through === undefined ? undefined : Math.max(0, params.through + 1),
  );
  if (
    !prefixProblem &&
    scored.length > 0 &&
    context.length + outputIds.length <= manifest.llm.contextLength
  ) {
    const rows = await engine.score(pkg, context, scored);
    for (let t = 0; t < scored.length; t++)
      margins.push(tokenMargin(rows[t]!, sampling, sampling.seed, prefixIds.length + t, scored[t]!));
  }
  const verdict = judgeMargins(margins, manifest.policy);
  const failure = firstFailure(prompt, count, termination, verdict);
  return {
    ok: failure === null,
    failure,
    prompt,
    margins,
    verdict,
    termination,
    count,
    durationMs: performance.now() - started,
  };
}

function comparePrompt(
  ids: readonly number[],
  claimed: readonly number[] | undefined,
): { ok: boolean; ids: readonly number[]; firstMismatch: number | null } {
  if (claimed === undefined) return { ok: true, ids, firstMismatch: null };
  const n = Math.min(ids.length, claimed.length);
  let at = 0;
  while (at < n && ids[at] === claimed[at]) at++;
  const equal = at === n && ids.length === claimed.length;
  return { ok: equal, ids, firstMismatch: equal ? null : at };
}

/**
 * A continuation's prefix is what an unfinished generation of this model leaves: ids of its
 * vocabulary, no EOS, and no stop string complete in its text. The first problem, or null.
 */
async function checkPrefix(
  engine: TokenEngine,
  pkg: ModelPackage,
  manifest: LlmManifest,
  prefixIds: readonly number[],
  stop: readonly string[],
): Promise<RecheckReport['prompt']['prefix']> {
  const eos = new Set(manifest.llm.eosTokenIds);
  for (const [i, id] of prefixIds.entries()) {
    if (!(Number.isInteger(id) && id >= 0 && id < manifest.llm.vocabSize))
      return { position: i, reason: `prefix item ${i} (${id}) is not a token id of the model` };
    if (eos.has(id))
      return {
        position: i,
        reason: `prefix item ${i} is the EOS id ${id}: the generation had ended, it cannot be continued`,
      };
  }
  const at = await stopPosition(engine, pkg, prefixIds, stop);
  return at === null
    ? null
    : {
        position: at,
        reason: `a stop string is complete at prefix item ${at}: the generation had ended there`,
      };
}

/**
 * How the output may end: its last id is an EOS, or it completes a stop string (first completed by
 * exactly its last token, stop strings sought in the text of prefix + output, since a stop string
 * may begin in the prefix), or it holds max_tokens ids; and no EOS comes before the end. Positions
 * are output positions (after the prefix).
 */
async function checkTermination(
  engine: TokenEngine,
  pkg: ModelPackage,
  manifest: LlmManifest,
  prefixIds: readonly number[],
  outputIds: readonly number[],
  params: SamplingParams,
): Promise<RecheckReport['termination']> {
  const fail = (position: number | null, reason: string) => ({
    ok: false,
    finishReason: null,
    position,
    reason,
  });
  const n = outputIds.length;
  if (n === 0) return fail(null, 'the output has no tokens');
  if (n > params.maxTokens)
    return fail(params.maxTokens, `the output has ${n} tokens, more than max_tokens ${params.maxTokens}`);
  const eos = new Set(manifest.llm.eosTokenIds);
  const early = outputIds.findIndex((id, t) => eos.has(id) && t < n - 1);
  if (early >= 0) return fail(early, `EOS ${outputIds[early]} at position ${early}, before the end`);
  if (eos.has(outputIds[n - 1]!)) return { ok: true, finishReason: 'stop', position: null, reason: null };
  const whole = await stopPosition(engine, pkg, [...prefixIds, ...outputIds], params.stop);
  // checkPrefix has ruled out a stop string complete within the prefix
  const stopAt = whole === null ? null : whole - prefixIds.length;
  if (stopAt !== null && stopAt < n - 1)
    return fail(stopAt, `a stop string is complete at position ${stopAt}, but the output goes on`);
  if (stopAt === n - 1) return { ok: true, finishReason: 'stop', position: null, reason: null };
  if (n === params.maxTokens) return { ok: true, finishReason: 'length', position: null, reason: null };
  return fail(
    n - 1,
    `the output ends after ${n} tokens without EOS, a stop string or max_tokens ${params.maxTokens} (truncated)`,
  );
}

/** The first output position whose token completes a stop string, as generation decides it, or null. */
async function stopPosition(
  engine: TokenEngine,
  pkg: ModelPackage,
  outputIds: readonly number[],
  stop: readonly string[],
): Promise<number | null> {
  const stops = stop.filter((s) => s.length > 0);
  if (stops.length === 0) return null;
  // Generation cuts at the first stop string in the visible text. Containing one is monotone in the
  // prefix length (a longer prefix's text extends a shorter one's), so the first prefix is found by
  // bisection: log2(n) decodes.
  const contains = async (length: number) => {
    const text = await engine.decode(pkg, outputIds.slice(0, length));
    return stops.some((s) => text.includes(s));
  };
  if (!(await contains(outputIds.length))) return null;
  let lo = 0; // no stop string in the first lo tokens
  let hi = outputIds.length; // one in the first hi
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (await contains(mid)) hi = mid;
    else lo = mid;
  }
  return hi - 1;
}

function firstFailure(
  prompt: RecheckReport['prompt'],
  count: RecheckReport['count'],
  termination: RecheckReport['termination'],
  verdict: MarginVerdict,
): RecheckReport['failure'] {
  if (prompt.prefix)
    return { check: 'prompt', position: prompt.prefix.position, reason: prompt.prefix.reason };
  if (!prompt.ok)
    return {
      check: 'prompt',
      position: prompt.firstMismatch,
      reason: `the claimed prompt ids differ from the request's at index ${prompt.firstMismatch}`,
    };
  if (!count.ok)
    return {
      check: 'count',
      position: null,
      reason: `${count.claimed} completion tokens claimed, the output has ${count.actual}`,
    };
  if (!termination.ok)
    return { check: 'termination', position: termination.position, reason: termination.reason! };
  if (!verdict.ok)
    return {
      check: 'margins',
      position: verdict.position,
      reason:
        verdict.failure === 'hard'
          ? `a token's margin is above the policy's hard limit (${verdict.hardCount} such; max ${verdict.maxMargin})`
          : `${verdict.suspicious} tokens above the soft limit or outside the kept set, more than the ${verdict.allowed} allowed`,
    };
  return null;
}
