import { encodeAbiParameters, hexToBigInt, keccak256, type Address, type Hex } from 'viem';
import type { TensorMap } from '../../protocol/tensor.js';
import type { DivergenceProof, TokenCheckName, TokenClaim } from '../../chain/index.js';
import { dataHash } from '../../protocol/data.js';
import { decodeTensors } from '../../protocol/encoding.js';
import { decodeLlmInput, decodeLlmOutput } from '../../protocol/llm.js';
import { modelDigest, type ModelPackage } from '../../protocol/manifest.js';
import { traceRoot, traceTree } from '../../protocol/merkle.js';
import { isGlassboxError } from '../../protocol/errors.js';
import { agree } from '../../protocol/policy.js';
import { ZERO_HASH, type Receipt } from '../../protocol/receipt.js';
import type { TensorEngine, TokenEngine } from '../../runtime/engine.js';
import { recheckGeneration, type RecheckReport } from '../../runtime/index.js';
import type { Engines } from '../../runtime/registry.js';

/*
 * The verifier's core rules, free of loops and I/O so they are easy to test: which receipts a
 * verifier samples, and what re-executing one says about it.
 */

/**
 * Whether `verifier` samples the receipt: keccak256(blockHash, receiptHash, verifier) read as a
 * number below p * 2^256. `blockHash` is the hash of the block after the batch's commit block,
 * which did not exist when the provider signed and committed, so the provider cannot tell which
 * receipts will be checked; mixing in the verifier's address makes verifiers sample independently.
 */
export function isSampled(params: {
  blockHash: Hex;
  receiptHash: Hex;
  verifier: Address;
  p: number;
}): boolean {
  if (params.p >= 1) return true;
  if (params.p <= 0) return false;
  const draw = hexToBigInt(
    keccak256(
      encodeAbiParameters(
        [{ type: 'bytes32' }, { type: 'bytes32' }, { type: 'address' }],
        [params.blockHash, params.receiptHash, params.verifier],
      ),
    ),
  );
  const SCALE = 1n << 53n; // p to 53 bits of precision: plenty for a sampling rate
  return draw < ((1n << 256n) * BigInt(Math.floor(params.p * Number(SCALE)))) / SCALE;
}

/** What re-executing a receipt found. */
export type Recheck =
  | { readonly kind: 'match'; readonly computeMs: number }
  | {
      readonly kind: 'mismatch';
      readonly computeMs: number;
      readonly detail: string;
      /** The first divergent step, when both runs were traced and the provider served its trace. */
      readonly divergence?: DivergenceProof;
      /** A generation: the check that fails and the first position where it does (a token challenge). */
      readonly token?: TokenClaim;
    }
  | { readonly kind: 'skipped'; readonly detail: string }
  /**
   * Not judged for want of evidence: on a model whose policy is not `exact`, a run that differs
   * in bits needs the provider's outputs to compare under the policy. A verifier skips it; a
   * committee member holds it against the challenger, whose case it was to make.
   */
  | { readonly kind: 'unproven'; readonly detail: string };

export function modelByDigest(
  models: ReadonlyMap<string, ModelPackage>,
  digest: Hex,
): ModelPackage | undefined {
  for (const pkg of models.values()) if (modelDigest(pkg.id) === digest.toLowerCase()) return pkg;
  return undefined;
}

/**
 * Re-executes `receipt` on `inputs` (whose hash the caller checked) under our engine and compares
 * under the model's policy: bit equality of the outputs' hash for `exact`, the policy on the
 * provider's `outputs` otherwise. A traced receipt is re-executed traced, and with the provider's
 * `trace` (step hashes) the first divergent step is proven against both roots.
 */
export async function recheck(params: {
  receipt: Receipt;
  inputs: Uint8Array;
  outputs?: Uint8Array;
  trace?: readonly Hex[];
  engines: Engines;
  /** The receipt's model, when this node has it or could fetch it. */
  pkg: ModelPackage | undefined;
  /** A generation's token challenge being judged: only what it claims (`recheckTokens`). */
  claim?: TokenClaim;
}): Promise<Recheck> {
  const { receipt, pkg } = params;
  if (!pkg) return { kind: 'skipped', detail: `model ${receipt.model} is not available here` };
  if (params.engines.list.some((e) => e.kind === 'tokens' && e.format === pkg.manifest.format))
    return recheckTokens({ ...params, pkg });
  const traced = receipt.traceRoot !== ZERO_HASH;
  let engine: TensorEngine;
  try {
    engine = params.engines.for(pkg, { trace: traced });
  } catch (error) {
    return { kind: 'skipped', detail: `no engine here for it: ${firstLine(error)}` };
  }
  if (receipt.runtime !== engine.runtimeHash)
    return {
      kind: 'skipped',
      detail: `runtime ${receipt.runtime} differs from ours (${engine.runtimeHash})`,
    };
  const attempt = await runSafely(() => engine.run(pkg, decodeTensors(params.inputs), { trace: traced }));
  if ('invalid' in attempt)
    return {
      kind: 'mismatch',
      computeMs: 0,
      detail: `the receipt's inputs are not valid for the model: ${attempt.invalid}`,
    };
  if ('failed' in attempt) return { kind: 'skipped', detail: `re-execution failed: ${attempt.failed}` };
  const run = attempt.value;
  const computeMs = run.durationMs;
  if (run.outputHash === receipt.outputHash) return { kind: 'match', computeMs };
  if (pkg.manifest.policy.kind !== 'exact') {
    // Bits differ; whether the answer is within the policy needs the provider's own outputs.
    if (!params.outputs || dataHash(params.outputs) !== receipt.outputHash)
      return {
        kind: 'unproven',
        detail: "the provider's outputs (matching its outputHash) were not supplied",
      };
    let theirs: TensorMap;
    try {
      theirs = decodeTensors(params.outputs);
    } catch (error) {
      // bytes the provider signed as its outputs that are not even tensors: a wrong answer
      const why = isGlassboxError(error) ? error.shortMessage : String(error);
      return { kind: 'mismatch', computeMs, detail: `the receipt's outputs do not decode: ${why}` };
    }
    const verdict = agree(pkg.manifest.policy, run.outputs, theirs);
    if (verdict.agree) return { kind: 'match', computeMs };
  }
  const detail = `re-execution gives outputHash ${run.outputHash}, the receipt says ${receipt.outputHash}`;
  // a served trace counts only if it is the one the receipt commits to
  const served = params.trace && traceRoot(params.trace) === receipt.traceRoot ? params.trace : undefined;
  const divergence =
    traced && run.trace && served
      ? proveDivergence(
          served,
          run.trace.steps.map((s) => s.hash),
        )
      : undefined;
  return { kind: 'mismatch', computeMs, detail, ...(divergence ? { divergence } : {}) };
}

/**
 * Re-checks a generation's receipt by teacher forcing (src/runtime/llm/recheck.ts) from its input
 * data (request and prompt ids) and output data (the claimed ids), under the token engine whose
 * runtime is the receipt's. Without `claim` (a verifier's sample) the whole generation is checked
 * and a failure names its first failing check and position; with one (a committee member judging
 * a token challenge) the margins are scored only through the named position and the verdict is
 * whether the named check fails there: a false claim is innocent, however else the receipt fares.
 * Input data that is no request for this model is a `prompt` failure at 0 (the provider signed it).
 */
export async function recheckTokens(params: {
  receipt: Receipt;
  inputs: Uint8Array;
  outputs?: Uint8Array;
  engines: Engines;
  pkg: ModelPackage;
  claim?: TokenClaim;
}): Promise<Recheck> {
  const { receipt, pkg, claim } = params;
  let engine: TokenEngine;
  try {
    engine = params.engines.tokens(pkg);
  } catch (error) {
    return { kind: 'skipped', detail: `no engine here for it: ${firstLine(error)}` };
  }
  if (receipt.runtime !== engine.runtimeHash)
    return {
      kind: 'skipped',
      detail: `runtime ${receipt.runtime} differs from ours (${engine.runtimeHash})`,
    };
  if (!params.outputs || dataHash(params.outputs) !== receipt.outputHash)
    return {
      kind: 'unproven',
      detail: "the provider's output ids (matching its outputHash) were not supplied",
    };
  const badData = (detail: string): Recheck =>
    !claim || claim.check === 'prompt'
      ? { kind: 'mismatch', computeMs: 0, detail, token: { check: 'prompt', position: 0 } }
      : { kind: 'match', computeMs: 0 }; // true, but not what this challenge claims
  let input: ReturnType<typeof decodeLlmInput>;
  let outputIds: number[];
  try {
    input = decodeLlmInput(params.inputs);
    outputIds = decodeLlmOutput(params.outputs);
  } catch (error) {
    return badData(`the receipt's data is not a generation's: ${firstLine(error)}`);
  }
  if (input.request.model !== pkg.id)
    return badData(`the receipt's request is for model ${input.request.model}, not ${pkg.id}`);
  const through = claim === undefined ? undefined : claim.check === 'margin' ? claim.position : -1;
  const attempt = await runSafely(() =>
    recheckGeneration(engine, pkg, { ...input, outputIds, ...(through === undefined ? {} : { through }) }),
  );
  if (!('value' in attempt))
    return {
      kind: 'skipped',
      detail: `re-check failed: ${'failed' in attempt ? attempt.failed : attempt.invalid}`,
    };
  const report = attempt.value;
  const computeMs = report.durationMs;
  if (claim)
    return failsAt(report, claim.check)
      ? { kind: 'mismatch', computeMs, detail: describeFailure(report, claim), token: claim }
      : { kind: 'match', computeMs };
  if (!report.failure) return { kind: 'match', computeMs };
  const { check, position } = report.failure;
  const token: TokenClaim = { check: check === 'margins' ? 'margin' : check, position: position ?? 0 };
  return { kind: 'mismatch', computeMs, detail: describeFailure(report, token), token };
}

/** Whether `check` fails in the report (for `margin`: the verdict over the margins it scored). */
function failsAt(report: RecheckReport, check: TokenCheckName): boolean {
  switch (check) {
    case 'margin':
      return !report.verdict.ok;
    case 'prompt':
      return !report.prompt.ok;
    case 'termination':
      return !report.termination.ok;
    case 'count':
      return !report.count.ok;
  }
}

function describeFailure(report: RecheckReport, token: TokenClaim): string {
  const why =
    token.check === 'margin'
      ? `${report.verdict.failure} margin failure (max ${report.verdict.maxMargin}, ${report.verdict.suspicious} suspicious of ${report.margins.length})`
      : token.check === 'termination'
        ? report.termination.reason
        : token.check === 'prompt'
          ? `prompt ids differ at ${report.prompt.firstMismatch}`
          : `${report.count.claimed} tokens claimed, ${report.count.actual} output`;
  return `generation re-check: ${token.check} fails at position ${token.position}: ${why}`;
}

/** Input problems that mean the receipt's inputs could never have been run: a provider signed garbage. */
const INVALID_INPUT_CODES: ReadonlySet<string> = new Set([
  'TENSOR_INVALID',
  'TENSOR_DECODE',
  'INPUT_UNKNOWN',
  'INPUT_MISSING',
  'INPUT_DTYPE',
  'INPUT_RANK',
  'INPUT_DIM',
  'INPUT_VALUE',
  'INPUT_TOO_LARGE',
]);

/**
 * Runs `f`, telling apart inputs that are not valid for the model (the provider signed a receipt
 * over something no honest provider would run) from other failures (ours: we can't judge).
 */
export async function runSafely<T>(
  f: () => Promise<T>,
): Promise<{ value: T } | { invalid: string } | { failed: string }> {
  try {
    return { value: await f() };
  } catch (error) {
    if (isGlassboxError(error) && INVALID_INPUT_CODES.has(error.code)) return { invalid: error.shortMessage };
    return { failed: firstLine(error) };
  }
}

const firstLine = (error: unknown): string =>
  error instanceof Error ? error.message.split('\n')[0]! : String(error);

/**
 * The first step at which the provider's trace (`theirs`) and ours part, with the Merkle proofs
 * DisputeManager.openTracedChallenge checks. Undefined when they agree throughout or differ in
 * length before parting (then the plain challenge stands).
 */
export function proveDivergence(theirs: readonly Hex[], ours: readonly Hex[]): DivergenceProof | undefined {
  const step = theirs.findIndex((hash, i) => i < ours.length && hash !== ours[i]);
  if (step < 0) return undefined;
  const t = traceTree(theirs);
  const o = traceTree(ours);
  return {
    step,
    providerHash: theirs[step]!,
    providerProof: t.proof(step),
    challengerRoot: o.root,
    challengerHash: ours[step]!,
    challengerProof: o.proof(step),
    priorHash: step > 0 ? theirs[step - 1]! : ZERO_HASH,
    priorProviderProof: step > 0 ? t.proof(step - 1) : [],
    priorChallengerProof: step > 0 ? o.proof(step - 1) : [],
  };
}
