import { toHex, type Address, type Hex } from 'viem';
import {
  encodeTensorParts,
  hashEncoded,
  tensorsFromJson,
  tensorsToJson,
  type EncodedTensors,
  type JsonTensor,
} from '../protocol/encoding.js';
import { GlassboxError, isGlassboxError, type ErrorCode } from '../protocol/errors.js';
import { checkInputs, inputsFromJson } from '../protocol/inputs.js';
import { capInValues } from '../protocol/limits.js';
import type { ModelManifest } from '../protocol/manifest.js';
import { agree, type ComparisonPolicy } from '../protocol/policy.js';
import type { SignedReceipt } from '../protocol/receipt.js';
import { requestMessage, signRequest } from '../protocol/request.js';
import { DTYPE_BYTES, elementCount, isDType, type TensorMap } from '../protocol/tensor.js';
import { voucherToJson } from '../protocol/api.js';
import type { BackgroundRequest, Client } from './client.js';
import { discoverProviders, type ProviderCandidate } from './discovery.js';
import { rememberAnswer, type Disagreement, type Equivocation, type Evidence } from './evidence.js';
import { hedgeBudgetMs, recordFailure, recordSuccess } from './health.js';
import { getManifest, getPackage } from './manifests.js';
import { chargeable, currentVoucher, recordCharge, sendVouchers } from './payments.js';
import { rankProviders } from './select.js';
import { postInfer, type InferAnswer } from './transport.js';
import { verifyReceipt, type Check, type ReceiptReport } from './verify.js';

export type InferMode = 'receipt' | 'local' | { readonly quorum: number };

export type InferParameters = {
  /** The model id (CIDv1 of its manifest). */
  readonly model: string;
  /** Tensors, or JSON: per input a `{dtype, shape, data}` or nested arrays (dtype from the schema). */
  readonly inputs: TensorMap | Readonly<Record<string, unknown>>;
  /** Default 'receipt'. */
  readonly mode?: InferMode;
  /** The most the client pays one provider for this answer, in base units. */
  readonly maxPrice: bigint;
  /** The whole call's time limit (default: the client's timeoutMs). */
  readonly timeoutMs?: number;
  /** One provider's time limit before failing over (default: half of timeoutMs). */
  readonly attemptTimeoutMs?: number;
  /** Ask for an execution trace (its root goes into the receipt). */
  readonly trace?: boolean;
  /** Overrides the client's hedging for this call (`false`: no hedged requests). */
  readonly hedgeAfterMs?: number | false;
  /** Providers not to use. */
  readonly exclude?: readonly Address[];
  readonly signal?: AbortSignal;
};

/** Why an attempt did not count: a provider that failed, timed out or failed verification. */
export type RejectedAttempt = {
  readonly provider: Address;
  readonly code: ErrorCode;
  readonly message: string;
  /** The HTTP status the provider answered with, when it answered one. */
  readonly status?: number;
  /** The failed checks, when the answer came back but failed verification. */
  readonly report?: ReceiptReport;
};

export type VerificationReport = {
  /** Always true on a returned answer: a failed check is never returned. */
  readonly ok: boolean;
  readonly mode: 'receipt' | 'local' | 'quorum';
  /** One entry per verified receipt, with every check. */
  readonly receipts: readonly ReceiptReport[];
  /** Attempts that did not count (failover). */
  readonly rejected: readonly RejectedAttempt[];
  /** Whether a hedged request was sent. */
  readonly hedged: boolean;
  /** Quorum only: the answers grouped by agreement under the model's policy. */
  readonly quorum?: {
    readonly k: number;
    readonly policy: ComparisonPolicy;
    readonly groups: readonly { readonly providers: readonly Address[]; readonly outputHash: Hex }[];
    readonly majority: number;
    /** How many of the k answered and verified (a majority of k stands with fewer than k). */
    readonly answered: number;
  };
};

export type InferReturnType = {
  readonly outputs: TensorMap;
  /** The receipts behind the returned outputs (quorum: the majority's). */
  readonly receipts: readonly SignedReceipt[];
  readonly providers: readonly Address[];
  readonly report: VerificationReport;
  /** Present when answers conflicted (quorum disagreement, or a provider equivocating). */
  readonly evidence?: Evidence;
};

export type InferErrorType = GlassboxError;

type Answer = {
  readonly provider: ProviderCandidate;
  readonly receipt: SignedReceipt;
  readonly outputs: TensorMap;
  readonly report: ReceiptReport;
  readonly equivocation: Equivocation | undefined;
};

type Context = {
  readonly client: Client;
  readonly params: InferParameters;
  readonly manifest: ModelManifest;
  readonly inputs: TensorMap;
  /** How the inputs travel: JSON tensors, or their canonical encoding (BINARY_TRANSPORT_MIN_BYTES). */
  readonly wire:
    | { readonly transport: 'json'; readonly inputs: Record<string, JsonTensor> }
    | { readonly transport: 'binary'; readonly encoded: EncodedTensors };
  /** Whether to ask for the outputs binary. */
  readonly binaryOutputs: boolean;
  /** What the request signature covers of the inputs. */
  readonly inputHash: Hex;
  readonly local: boolean;
  /** Whether each attempt pays for its answer itself (not in quorum mode: the majority is paid). */
  readonly chargeEach: boolean;
  readonly deadline: AbortSignal;
  readonly attemptTimeoutMs: number;
};

/**
 * Runs a model on the network and returns a verified answer. Discovers providers offering the
 * model on chain, drops those priced above `maxPrice`, orders the rest by health, latency and
 * stake, and asks them: one (receipt), one plus local re-execution (local), or k distinct ones
 * compared under the model's policy (quorum). Every answer is verified (verifyReceipt); a failure,
 * timeout or failed check fails over to the next provider, and a slow one is hedged. Signs every
 * request (src/protocol/request.ts) and pays by cumulative voucher for the receipts received
 * (src/sdk/payments.ts says which).
 *
 * Throws PRICE_TOO_HIGH (every offer is above maxPrice), PROVIDER_UNAVAILABLE (nobody answered),
 * VERIFICATION_FAILED (answers came back, none verified), QUORUM_NO_MAJORITY, or input errors.
 */
export async function infer(client: Client, params: InferParameters): Promise<InferReturnType> {
  const mode = params.mode ?? 'receipt';
  const timeoutMs = params.timeoutMs ?? client.options.timeoutMs;
  const deadline = params.signal
    ? AbortSignal.any([params.signal, AbortSignal.timeout(timeoutMs)])
    : AbortSignal.timeout(timeoutMs);
  const candidates = await discoverProviders(client, { model: params.model });
  const ranked = rankProviders({
    candidates,
    maxPrice: params.maxPrice,
    health: client.state.health,
    exclude: new Set(params.exclude ?? []),
  });
  if (ranked.length === 0) throw noProviders(params, candidates);
  const manifest = await getManifest(client, params.model, ranked);
  const inputs = isTensorMap(params.inputs) ? params.inputs : inputsFromJson(manifest.inputs, params.inputs);
  checkInputs(manifest.inputs, inputs);
  // Encoded once, as views of the tensors (no copy): hashed here, and streamed as the body of a
  // binary request.
  const encoded = encodeTensorParts(inputs);
  checkDataCap(client, encoded.byteLength, inputs);
  const threshold = client.options.binaryTransportMinBytes;
  const binary = encoded.byteLength >= threshold;
  const ctx: Context = {
    client,
    params,
    manifest,
    inputs,
    wire: binary ? { transport: 'binary', encoded } : { transport: 'json', inputs: tensorsToJson(inputs) },
    binaryOutputs: binary || (outputBytesBound(manifest, inputs) ?? 0) >= threshold,
    inputHash: hashEncoded(encoded),
    local: mode === 'local',
    chargeEach: typeof mode !== 'object',
    deadline,
    attemptTimeoutMs: params.attemptTimeoutMs ?? Math.max(1, Math.floor(timeoutMs / 2)),
  };
  if (typeof mode === 'object') return quorum(ctx, ranked, mode.quorum);
  const hedge = params.hedgeAfterMs === undefined ? undefined : params.hedgeAfterMs;
  const { answer, rejected, hedged } = await firstVerified(ctx, ranked, hedge);
  const evidence = answer.equivocation ? equivocationEvidence(ctx, [answer.equivocation]) : undefined;
  return {
    outputs: answer.outputs,
    receipts: [answer.receipt],
    providers: [answer.provider.address],
    report: { ok: true, mode: ctx.local ? 'local' : 'receipt', receipts: [answer.report], rejected, hedged },
    ...(evidence ? { evidence } : {}),
  };
}

/**
 * No provider may sign a receipt over more data than it could publish on chain if challenged (the
 * chain's `maxDataBytes`, audit C-1), so inputs over it are refused here, before any provider is
 * asked.
 */
function checkDataCap(client: Client, sizeBytes: number, inputs: TensorMap): void {
  const limitBytes = client.deployment.params.maxDataBytes; // immutable, set at deployment
  if (sizeBytes <= limitBytes) return;
  const inValues = capInValues(
    limitBytes,
    Object.values(inputs).map((t) => t.dtype),
  );
  throw new GlassboxError(
    'INPUT_TOO_LARGE',
    `the inputs take ${sizeBytes} bytes in canonical encoding; no provider may sign a receipt over more than ${limitBytes} bytes${inValues ? ` (about ${inValues.values} ${inValues.dtype} values)` : ''} of inputs and outputs (the chain's maxDataBytes: what a provider publishes on chain if the data is challenged)`,
    {
      field: 'inputs',
      details: { sizeBytes, limitBytes, ...(inValues ? { limitValues: inValues.values } : {}) },
    },
  );
}

/**
 * The size of the outputs' data when the output schema fixes it (its symbolic dims bound by the
 * inputs, e.g. a batch size `N`); undefined when it does not (`?` dims, strings).
 */
function outputBytesBound(manifest: ModelManifest, inputs: TensorMap): number | undefined {
  // checkInputs has bound each named dim to one size across the inputs
  const dims = new Map<string, number>();
  for (const spec of manifest.inputs)
    spec.shape.forEach((d, i) => {
      if (typeof d === 'string' && d !== '?') dims.set(d, inputs[spec.name]!.shape[i]!);
    });
  let total = 0;
  for (const spec of manifest.outputs) {
    if (spec.dtype === 'string') return undefined;
    const shape = spec.shape.map((d) => (typeof d === 'number' ? d : dims.get(d)));
    if (shape.some((d) => d === undefined)) return undefined;
    total += elementCount(shape as number[]) * DTYPE_BYTES[spec.dtype];
  }
  return total;
}

function isTensorMap(value: InferParameters['inputs']): value is TensorMap {
  return Object.values(value).every((t) => {
    if (typeof t !== 'object' || t === null || Array.isArray(t)) return false;
    const { dtype, shape, data } = t as Record<string, unknown>;
    return (
      isDType(dtype) &&
      Array.isArray(shape) &&
      (ArrayBuffer.isView(data) || (dtype === 'string' && Array.isArray(data)))
    );
  });
}

function noProviders(params: InferParameters, candidates: readonly ProviderCandidate[]): GlassboxError {
  const affordable = candidates.filter((c) => c.active && c.price <= params.maxPrice);
  if (candidates.length > 0 && affordable.length === 0) {
    const cheapest = candidates.reduce((a, b) => (b.price < a.price ? b : a));
    return new GlassboxError(
      'PRICE_TOO_HIGH',
      `every provider of model ${params.model} charges more than maxPrice ${params.maxPrice}`,
      {
        field: 'maxPrice',
        metaMessages: [`the cheapest offer is ${cheapest.price} (${cheapest.address})`],
        details: {
          model: params.model,
          maxPrice: params.maxPrice.toString(),
          cheapest: cheapest.price.toString(),
        },
      },
    );
  }
  return new GlassboxError('PROVIDER_UNAVAILABLE', `no active provider offers model ${params.model}`, {
    details: { model: params.model, offers: candidates.length },
  });
}

const randomRequestId = (): Hex => toHex(crypto.getRandomValues(new Uint8Array(32)));

/** One provider, one request: sign, send, settle-and-retry once on 402, decode, verify, pay. */
async function attempt(ctx: Context, provider: ProviderCandidate, signal: AbortSignal): Promise<Answer> {
  const { client, params } = ctx;
  const requestId = randomRequestId();
  const opts = { signal, timeoutMs: ctx.attemptTimeoutMs };
  const quoteCap = provider.price < params.maxPrice ? provider.price : params.maxPrice;
  const head = {
    requestId,
    model: params.model,
    client: client.address,
    maxPrice: quoteCap.toString(),
    ...(params.trace ? { trace: true } : {}),
  };
  // Proves to the provider that this client asks (it extends credit to the address it names).
  const signature = await signRequest(
    client.account,
    requestMessage(head, { provider: provider.address, inputHash: ctx.inputHash }),
    { chainId: client.chainId, verifyingContract: client.deployment.contracts.receiptLedger },
  );
  const send = async () => {
    const voucher = await currentVoucher(client, provider);
    const signed = { ...head, signature, ...(voucher ? { voucher: voucherToJson(voucher) } : {}) };
    return postInfer(
      client,
      provider,
      ctx.wire.transport === 'binary'
        ? { ...signed, encoded: ctx.wire.encoded }
        : { ...signed, inputs: ctx.wire.inputs },
      { ...opts, binaryOutputs: ctx.binaryOutputs },
    );
  };
  const started = performance.now();
  const sentAt = Date.now();
  let wire;
  try {
    try {
      wire = await send();
    } catch (error) {
      // Pay-after with credit: the provider wants what it is owed before serving more. (Refused
      // for want of a deposit, field `client`, no voucher helps.)
      if (!isGlassboxError(error, 'PAYMENT_REQUIRED') || error.field === 'client') throw error;
      const [result] = await sendVouchers(client, {
        providers: [provider.address],
        timeoutMs: ctx.attemptTimeoutMs,
      });
      if (!result?.delivered) throw error;
      wire = await send();
    }
  } catch (error) {
    if (!signal.aborted)
      recordFailure(client, provider.address, isGlassboxError(error) ? error.code : String(error));
    throw error;
  }
  const latencyMs = performance.now() - started;
  const { outputs, decodeProblem } = decodeOutputs(wire);
  const base = await verifyReceipt(client, {
    receipt: wire.receipt,
    model: params.model,
    requestId,
    provider: provider.address,
    maxPrice: params.maxPrice,
    inputs: ctx.inputs,
    ...(outputs ? { outputs, outputSpecs: ctx.manifest.outputs } : {}),
    // hashed once: the inputs when they were encoded, binary outputs as they were read
    hashes: {
      inputs: ctx.inputHash,
      ...(wire.outputs.transport === 'binary' ? { outputs: wire.outputs.outputHash } : {}),
    },
    ...(params.trace ? { trace: true } : {}),
    quote: provider,
    sentAtMs: sentAt,
  });
  const extra: Check[] = [];
  if (decodeProblem)
    extra.push({ check: 'outputs', ok: false, detail: `outputs do not decode: ${decodeProblem}` });
  if (ctx.local && base.ok && outputs) extra.push(await localCheck(ctx, provider, outputs));
  const report: ReceiptReport = extra.length
    ? { ...base, ok: base.ok && extra.every((c) => c.ok), checks: [...base.checks, ...extra] }
    : base;
  if (ctx.chargeEach && chargeable(report, provider.address))
    recordCharge(client, provider, wire.receipt.receipt.price);
  if (!report.ok || !outputs) {
    recordFailure(client, provider.address, 'VERIFICATION_FAILED');
    const failed = report.checks.filter((c) => !c.ok);
    throw new GlassboxError(
      'VERIFICATION_FAILED',
      `the answer of ${provider.address} failed verification: ${failed.map((c) => c.check).join(', ')}`,
      {
        metaMessages: failed.map((c) => `${c.check}: ${c.detail}`),
        details: { provider: provider.address, report },
      },
    );
  }
  recordSuccess(client, provider.address, latencyMs);
  const equivocation = rememberAnswer(client, wire.receipt);
  return {
    provider,
    receipt: wire.receipt,
    outputs,
    report,
    equivocation,
  };
}

/** The outputs of an answer; JSON ones that do not decode fail the `outputs` check. */
function decodeOutputs(wire: InferAnswer): { outputs?: TensorMap; decodeProblem?: string } {
  if (wire.outputs.transport === 'binary') return { outputs: wire.outputs.tensors };
  try {
    return { outputs: tensorsFromJson(wire.outputs.json, 'outputs') };
  } catch (error) {
    return { decodeProblem: isGlassboxError(error) ? error.shortMessage : String(error) };
  }
}

/** Mode 'local': re-execute under our own runtime and compare under the model's policy. */
async function localCheck(ctx: Context, provider: ProviderCandidate, outputs: TensorMap): Promise<Check> {
  try {
    const pkg = await getPackage(ctx.client, ctx.params.model, ctx.manifest, provider);
    ctx.client.state.engines ??= import('../runtime/index.js').then((m) => m.defaultEngines());
    const engine = (await ctx.client.state.engines).for(pkg);
    const mine = await engine.run(pkg, ctx.inputs);
    const result = agree(ctx.manifest.policy, mine.outputs, outputs);
    const same = mine.runtime === engine.runtimeHash ? ' (same runtime profile)' : '';
    return result.agree
      ? {
          check: 'local',
          ok: true,
          detail: `local re-execution agrees under ${ctx.manifest.policy.kind}${same}`,
        }
      : { check: 'local', ok: false, detail: `local re-execution disagrees: ${result.reason}` };
  } catch (error) {
    return {
      check: 'local',
      ok: false,
      detail: `local re-execution failed: ${isGlassboxError(error) ? error.shortMessage : String(error)}`,
    };
  }
}

function rejection(provider: Address, error: unknown): RejectedAttempt {
  if (isGlassboxError(error)) {
    const status = error.details.status;
    return {
      provider,
      code: error.code,
      message: error.shortMessage,
      ...(typeof status === 'number' ? { status } : {}),
      ...(error.details.report ? { report: error.details.report as ReceiptReport } : {}),
    };
  }
  return { provider, code: 'PROVIDER_ERROR', message: String(error) };
}

/**
 * Refusals that follow from the request itself: the same model bytes under the same runtime
 * profile fail alike on the same inputs, and the data cap is the chain's. Every provider would
 * answer them the same way, so asking more only wastes time.
 */
const REQUEST_FAULTS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'RUN_FAILED',
  'OUTPUT_TOO_LARGE',
  'INPUT_TOO_LARGE',
  'INPUT_UNKNOWN',
  'INPUT_MISSING',
  'INPUT_DTYPE',
  'INPUT_RANK',
  'INPUT_DIM',
  'INPUT_VALUE',
  'TENSOR_INVALID',
  'TENSOR_DECODE',
]);

const isRequestFault = (r: RejectedAttempt): boolean =>
  REQUEST_FAULTS.has(r.code) && r.status !== undefined && r.status >= 400 && r.status < 500;

/**
 * The request's own fault, once it is believable: two providers refused it for the same reason, or
 * the only one there is did. One provider's word is not enough, or a single liar answering 422
 * would keep the client from the honest rest.
 */
function requestFault(
  ctx: Context,
  rejected: readonly RejectedAttempt[],
  providers: number,
): GlassboxError | undefined {
  const faults = rejected.filter(isRequestFault);
  const last = faults.at(-1);
  if (!last) return undefined;
  const same = faults.filter((r) => r.code === last.code);
  if (same.length < Math.min(2, providers)) return undefined;
  return new GlassboxError(last.code, `${last.message} (the request's fault: not retried elsewhere)`, {
    metaMessages: same.map((r) => `${r.provider} answered ${r.status}: ${r.code}`),
    details: { model: ctx.params.model, status: last.status, rejected },
  });
}

/**
 * What to call a call that got nothing: the one reason every provider gave, when they all refused
 * alike for the same reason (a body over each one's size limit, a price above maxPrice); else
 * VERIFICATION_FAILED if an answer came back and failed; else PROVIDER_UNAVAILABLE.
 */
function failureCode(rejected: readonly RejectedAttempt[]): ErrorCode {
  const first = rejected[0];
  const shared =
    first !== undefined &&
    first.status !== undefined &&
    first.status < 500 &&
    rejected.every((r) => r.code === first.code && r.status !== undefined);
  if (shared) return first.code;
  return rejected.some((r) => r.code === 'VERIFICATION_FAILED')
    ? 'VERIFICATION_FAILED'
    : 'PROVIDER_UNAVAILABLE';
}

/** Nothing verified: VERIFICATION_FAILED if any answer came back and failed, else PROVIDER_UNAVAILABLE. */
function exhausted(ctx: Context, rejected: readonly RejectedAttempt[], what: string): GlassboxError {
  const code = failureCode(rejected);
  const timedOut = ctx.deadline.aborted ? ' before the time limit' : '';
  const message =
    code === 'VERIFICATION_FAILED'
      ? `no answer for model ${ctx.params.model} verified${timedOut} (${what})`
      : code === 'PROVIDER_UNAVAILABLE'
        ? `no provider of model ${ctx.params.model} answered${timedOut} (${what})`
        : `every provider of model ${ctx.params.model} refused the request: ${rejected[0]!.message}`;
  return new GlassboxError(code, message, {
    metaMessages: rejected.map((r) => `${r.provider}: ${r.code}: ${r.message}`),
    details: {
      model: ctx.params.model,
      rejected,
      ...(rejected[0]?.status ? { status: rejected[0].status } : {}),
    },
  });
}

/**
 * Failover and hedging: ask the first provider; when it fails, ask the next at once; when it is
 * slower than its hedge budget, ask the next as well (at most two in flight). The first verified
 * answer wins. A request still in flight then is not aborted: the provider is doing the work and
 * will count the answer as delivered, so it finishes in the background (within its attempt timeout)
 * and is paid for if it verifies, which is what hedging honestly costs (audit M-4). `settle` waits
 * for such requests; `closeClient` cancels them.
 */
function firstVerified(
  ctx: Context,
  ranked: readonly ProviderCandidate[],
  hedgeOverride: number | false | undefined,
): Promise<{ answer: Answer; rejected: RejectedAttempt[]; hedged: boolean }> {
  return new Promise((resolve, reject) => {
    const rejected: RejectedAttempt[] = [];
    const inFlight = new Map<Address, BackgroundRequest>();
    let next = 0;
    let done = false;
    let hedged = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = () => {
      done = true;
      clearTimeout(timer);
      ctx.deadline.removeEventListener('abort', onDeadline);
    };
    const onDeadline = () => {
      if (done) return;
      finish();
      for (const request of inFlight.values()) request.controller.abort();
      reject(exhausted(ctx, rejected, 'time limit reached'));
    };
    ctx.deadline.addEventListener('abort', onDeadline, { once: true });
    const budget = (provider: Address) => {
      if (hedgeOverride === false) return undefined;
      return hedgeOverride ?? hedgeBudgetMs(ctx.client, provider);
    };
    const launch = () => {
      if (done) return;
      if (next >= ranked.length) {
        if (inFlight.size === 0) {
          finish();
          reject(exhausted(ctx, rejected, `${ranked.length} provider(s) tried`));
        }
        return;
      }
      const provider = ranked[next++]!;
      clearTimeout(timer);
      const wait = budget(provider.address);
      if (wait !== undefined)
        timer = setTimeout(() => {
          if (done || inFlight.size >= 2 || next >= ranked.length) return;
          hedged = true;
          launch();
        }, wait);
      // Cancelled by the deadline only while the call waits for it (onDeadline), not once it lost.
      const controller = new AbortController();
      const settled = attempt(ctx, provider, controller.signal).then(
        (answer) => {
          inFlight.delete(provider.address);
          if (done) return;
          finish();
          // The others go on in the background; their answers are charged by `attempt`.
          for (const request of inFlight.values()) keepInBackground(ctx.client, request);
          resolve({ answer, rejected, hedged });
        },
        (error: unknown) => {
          inFlight.delete(provider.address);
          if (done) return;
          rejected.push(rejection(provider.address, error));
          const fault = requestFault(ctx, rejected, ranked.length);
          if (!fault) return launch();
          finish();
          for (const request of inFlight.values()) request.controller.abort();
          reject(fault);
        },
      );
      inFlight.set(provider.address, { controller, settled });
    };
    if (ctx.deadline.aborted) onDeadline();
    else launch();
  });
}

/** Tracks a request that outlives its call until it settles (`settle` waits, `closeClient` cancels). */
function keepInBackground(client: Client, request: BackgroundRequest): void {
  client.state.background.add(request);
  void request.settled.then(() => client.state.background.delete(request));
}

/**
 * k distinct providers, each answer verified; a failed one is replaced by the next provider. Ends
 * as soon as k answers are in, or no provider is left to ask and none is in flight (it never waits
 * for the deadline when nothing more can come).
 */
function collectQuorum(
  ctx: Context,
  ranked: readonly ProviderCandidate[],
  k: number,
): Promise<{ answers: Answer[]; rejected: RejectedAttempt[] }> {
  return new Promise((resolve) => {
    const answers: Answer[] = [];
    const rejected: RejectedAttempt[] = [];
    const inFlight = new Map<Address, AbortController>();
    let next = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      ctx.deadline.removeEventListener('abort', finish);
      for (const ac of inFlight.values()) ac.abort();
      resolve({ answers, rejected });
    };
    ctx.deadline.addEventListener('abort', finish, { once: true });
    // Ask more providers while fewer than k answers are in or on their way; end when nothing more can come.
    const progress = () => {
      if (done) return;
      while (answers.length + inFlight.size < k && next < ranked.length) ask(ranked[next++]!);
      if (answers.length >= k || inFlight.size === 0) finish();
    };
    const ask = (provider: ProviderCandidate) => {
      const ac = new AbortController();
      inFlight.set(provider.address, ac);
      attempt(ctx, provider, AbortSignal.any([ac.signal, ctx.deadline])).then(
        (answer) => {
          inFlight.delete(provider.address);
          if (done) return;
          answers.push(answer);
          progress();
        },
        (error: unknown) => {
          inFlight.delete(provider.address);
          if (done) return;
          rejected.push(rejection(provider.address, error));
          if (requestFault(ctx, rejected, ranked.length)) finish();
          else progress();
        },
      );
    };
    if (ctx.deadline.aborted) finish();
    else progress();
  });
}

async function quorum(
  ctx: Context,
  ranked: readonly ProviderCandidate[],
  k: number,
): Promise<InferReturnType> {
  if (!Number.isInteger(k) || k < 1)
    throw new GlassboxError('USAGE', `quorum must be a whole number >= 1, not ${k}`, {
      field: 'mode.quorum',
    });
  if (ranked.length < k)
    throw new GlassboxError(
      'PROVIDER_UNAVAILABLE',
      `quorum ${k} needs ${k} distinct providers of model ${ctx.params.model} within maxPrice; ${ranked.length} offer it`,
      { field: 'mode.quorum', details: { model: ctx.params.model, available: ranked.length, k } },
    );
  const { answers, rejected } = await collectQuorum(ctx, ranked, k);
  // A majority of k stands even if some of the k never answered: it is as many agreeing answers as
  // a full quorum needs. Fewer than that can never make one, so the call ends here, naming who failed.
  const needed = Math.floor(k / 2) + 1;
  if (answers.length < needed)
    throw requestFault(ctx, rejected, ranked.length) ?? quorumShort(ctx, k, answers, rejected);
  const policy = ctx.manifest.policy;
  // Group by agreement with each group's first answer (under `exact` this is grouping by bits).
  const groups: Answer[][] = [];
  for (const a of answers) {
    const g = groups.find((group) => agree(policy, group[0]!.outputs, a.outputs).agree);
    if (g) g.push(a);
    else groups.push([a]);
  }
  groups.sort((a, b) => b.length - a.length);
  const top = groups[0]!;
  const hasMajority = top.length * 2 > k;
  const equivocations = answers.flatMap((a) => (a.equivocation ? [a.equivocation] : []));
  const evidence =
    groups.length > 1 || equivocations.length > 0
      ? buildEvidence(ctx, hasMajority ? top : [], groups, equivocations)
      : undefined;
  const report: VerificationReport = {
    ok: hasMajority,
    mode: 'quorum',
    receipts: answers.map((a) => a.report),
    rejected,
    hedged: false,
    quorum: {
      k,
      policy,
      groups: groups.map((g) => ({
        providers: g.map((a) => a.provider.address),
        outputHash: g[0]!.receipt.receipt.outputHash,
      })),
      majority: top.length,
      answered: answers.length,
    },
  };
  // Only the majority is paid: a minority answer is disputed, not paid (audit L-6), and with no
  // majority no answer is known to be right. The majority's receipts passed every check, so each
  // is one the client pays for.
  if (hasMajority) for (const a of top) recordCharge(ctx.client, a.provider, a.receipt.receipt.price);
  if (!hasMajority)
    throw new GlassboxError(
      'QUORUM_NO_MAJORITY',
      `the ${answers.length} answering providers of model ${ctx.params.model} gave ${groups.length} different answers; none has a majority of ${k}`,
      {
        metaMessages: [
          ...groups.map((g, i) => `answer ${i + 1}: ${g.map((a) => a.provider.address).join(', ')}`),
          ...rejected.map((r) => `no answer from ${r.provider}: ${r.code}: ${r.message}`),
        ],
        details: { report, evidence },
      },
    );
  return {
    outputs: top[0]!.outputs,
    receipts: top.map((a) => a.receipt),
    providers: top.map((a) => a.provider.address),
    report,
    ...(evidence ? { evidence } : {}),
  };
}

/** Too few verified answers for a majority of k: names who answered and why each other one did not. */
function quorumShort(
  ctx: Context,
  k: number,
  answers: readonly Answer[],
  rejected: readonly RejectedAttempt[],
): GlassboxError {
  const timedOut = ctx.deadline.aborted ? ' before the time limit' : '';
  return new GlassboxError(
    failureCode(rejected),
    `quorum ${k} for model ${ctx.params.model}: ${answers.length} verified answer(s)${timedOut}; a majority needs ${Math.floor(k / 2) + 1}`,
    {
      metaMessages: [
        ...answers.map((a) => `${a.provider.address}: answered, verified`),
        ...rejected.map((r) => `${r.provider}: ${r.code}: ${r.message}`),
      ],
      details: { model: ctx.params.model, k, answered: answers.map((a) => a.provider.address), rejected },
    },
  );
}

function buildEvidence(
  ctx: Context,
  majority: readonly Answer[],
  groups: readonly Answer[][],
  equivocations: readonly Equivocation[],
): Evidence {
  const policy = ctx.manifest.policy;
  const against = majority[0];
  const disagreements: Disagreement[] = [];
  for (const group of groups) {
    if (group === majority) continue;
    for (const a of group) {
      const reference = against ?? groups.find((g) => g !== group)![0]!;
      const result = agree(policy, reference.outputs, a.outputs);
      disagreements.push({
        provider: a.provider.address,
        receipt: a.receipt,
        outputs: tensorsToJson(a.outputs),
        reason: result.agree ? 'agrees' : result.reason,
        ...(against ? { against: against.receipt } : {}),
        inputsUri: `${a.provider.endpoint.replace(/\/+$/, '')}/v1/receipts/${a.receipt.receipt.requestId}`,
      });
    }
  }
  return {
    model: ctx.params.model,
    policy,
    inputHash: (majority[0] ?? groups[0]![0]!).receipt.receipt.inputHash,
    inputs: inputsJson(ctx),
    majority: majority.map((a) => a.receipt),
    disagreements,
    equivocations,
  };
}

/** The inputs as JSON, for evidence (made only when there is some: a binary request has none). */
function inputsJson(ctx: Context): Record<string, JsonTensor> {
  return ctx.wire.transport === 'json' ? ctx.wire.inputs : tensorsToJson(ctx.inputs);
}

function equivocationEvidence(ctx: Context, equivocations: readonly Equivocation[]): Evidence {
  return {
    model: ctx.params.model,
    policy: ctx.manifest.policy,
    inputHash: equivocations[0]!.b.receipt.inputHash,
    inputs: inputsJson(ctx),
    majority: [],
    disagreements: [],
    equivocations,
  };
}
