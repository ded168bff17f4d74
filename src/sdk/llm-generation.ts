import { toHex, type Address, type Hex } from 'viem';
import type { ChatCompletionRequest, CompletionRequest } from '../api/openai.js';
import { GlassboxError, isGlassboxError, type ErrorCode } from '../protocol/errors.js';
import type { LlmRequest } from '../protocol/llm.js';
import type { GenerationDelta, Segment, TokenPriceCap } from './chat.js';
import type { Client } from './client.js';
import type { ProviderCandidate } from './discovery.js';
import { rememberAnswer, type Equivocation } from './evidence.js';
import { hedgeBudgetMs, recordFailure, recordSuccess } from './health.js';
import type { RejectedAttempt } from './infer.js';
import type { LlmOffer } from './llm-models.js';
import { getGenerationReceipt, postGeneration, type LlmRoute, type LlmStreamEvent } from './llm-transport.js';
import { expectedLlmRequest, verifyLlmReceipt, type SentBody } from './llm-verify.js';
import { chargeable, recordCharge, sendVouchers } from './payments.js';
import type { ReceiptReport } from './verify.js';

/*
 * One generation across providers, for src/sdk/chat.ts: segment after segment, each on the best
 * provider not yet tried (a slow first token hedged by the next), continuing after the ids accepted
 * so far (D2's prefix_ids), each receipt verified before its tokens count; and the errors a call
 * that got nothing ends with.
 */

/** What one call is: the request as every provider gets it, where to send it, and its limits. */
export type Call = {
  readonly client: Client;
  readonly route: LlmRoute;
  /** The parsed body with the model's id and the seed set; stream fields are the transport's. */
  readonly body: ChatCompletionRequest | CompletionRequest;
  /** The most tokens asked for (max_completion_tokens or max_tokens), if any. */
  readonly maxTokens: number | undefined;
  readonly seed: bigint;
  readonly offer: LlmOffer;
  readonly cap: TokenPriceCap;
  readonly local: boolean;
  readonly deadline: AbortSignal;
  readonly stallMs: number;
  readonly hedgeAfterMs: number | false | undefined;
  /** Non-stream: a segment's tokens count only once its receipt verified. */
  readonly stream: boolean;
  /** Whether each verified receipt is paid for as it comes (not in a quorum: the majority is paid). */
  readonly chargeEach: boolean;
};

/** The generation as it stands: what was accepted, from whom, and what did not count. */
export type Run = {
  promptIds: readonly number[] | undefined;
  ids: number[];
  text: string;
  logprobs: unknown[];
  finishReason: 'stop' | 'length' | undefined;
  segments: Segment[];
  reports: ReceiptReport[];
  rejected: RejectedAttempt[];
  hedged: boolean;
  failovers: number;
  /** Providers asked in this call: one that failed is not asked again. */
  tried: Set<Address>;
  /** A stream delivered something no verified receipt covers (a cut, or a receipt that failed). */
  uncovered: number;
  /** Whether a receipt behind delivered tokens failed verification (stream only). */
  failedReceipt: boolean;
  evidence: Equivocation[];
  /** Receipts of broken-off segments still being asked for (awaited before the result). */
  pending: Promise<void>[];
  /** Refusals that follow from the request itself (requestFault). */
  faults: GlassboxError[];
};

export const newRun = (): Run => ({
  promptIds: undefined,
  ids: [],
  text: '',
  logprobs: [],
  finishReason: undefined,
  segments: [],
  reports: [],
  rejected: [],
  hedged: false,
  failovers: 0,
  tried: new Set(),
  uncovered: 0,
  failedReceipt: false,
  evidence: [],
  pending: [],
  faults: [],
});

/**
 * The generation, provider after provider until it ends: each segment starts on the best provider
 * not yet tried (a slow first token hedged by the next), continues from the ids accepted so far
 * (`prefix_ids`), and ends with its receipt, verified before its tokens count. A provider that
 * fails before its receipt is replaced: in a stream the next one continues after what was
 * delivered (the reader sees no break); a whole answer keeps only receipted tokens, so it goes on
 * from the last verified segment.
 */
export async function generate(
  call: Call,
  ranked: readonly ProviderCandidate[],
  emit?: (delta: GenerationDelta) => void,
): Promise<Run> {
  const run = newRun();
  while (run.finishReason === undefined) {
    run.finishReason = endedWithoutReceipt(call, run);
    if (run.finishReason) break;
    const started = await startSegment(call, ranked, run);
    await consumeSegment(call, run, started, emit);
  }
  return run;
}

/**
 * A stream whose provider broke off right after the last token (an EOS, or the max_tokens-th) has
 * nothing left to continue: no provider takes such a prefix, so it ends here.
 */
function endedWithoutReceipt(call: Call, run: Run): 'stop' | 'length' | undefined {
  const last = run.ids.at(-1);
  if (last !== undefined && call.offer.manifest.llm.eosTokenIds.includes(last)) return 'stop';
  if (call.maxTokens !== undefined && run.ids.length >= call.maxTokens) return 'length';
  return undefined;
}

/** One provider's stream once it answered its first event. */
export type Started = {
  readonly provider: ProviderCandidate;
  readonly requestId: Hex;
  readonly sent: SentBody;
  readonly sentAtMs: number;
  readonly firstAfterMs: number;
  readonly iterator: AsyncIterator<LlmStreamEvent>;
  readonly first: LlmStreamEvent;
  readonly controller: AbortController;
};

/** The body a segment sends: the call's, with the prefix and what is left of max_tokens. */
export function segmentBody(call: Call, prefix: readonly number[]): SentBody {
  const { max_completion_tokens: _m, ...rest } = call.body as ChatCompletionRequest;
  const left = call.maxTokens === undefined ? undefined : call.maxTokens - prefix.length;
  const body = {
    ...(call.route === 'chat' ? rest : call.body),
    ...(left === undefined ? {} : { max_tokens: left }),
    glassbox: { token_ids: true, ...(prefix.length > 0 ? { prefix_ids: [...prefix] } : {}) },
  };
  return call.route === 'chat'
    ? { route: 'chat', body: body as ChatCompletionRequest }
    : { route: 'completion', body: body as CompletionRequest };
}

const randomRequestId = (): Hex => toHex(crypto.getRandomValues(new Uint8Array(32)));

/**
 * Asks providers in rank order until one sends its first event: when the first is slower than its
 * hedge budget, the next is asked as well (at most two at once) and the first to answer wins; the
 * other is cancelled (it is paid for nothing it did not deliver). Throws when nobody is left.
 */
export function startSegment(call: Call, ranked: readonly ProviderCandidate[], run: Run): Promise<Started> {
  const prefix = [...run.ids];
  const sent = segmentBody(call, prefix);
  return new Promise((resolve, reject) => {
    const inFlight = new Map<Address, AbortController>();
    let done = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = () => {
      done = true;
      clearTimeout(timer);
      call.deadline.removeEventListener('abort', onDeadline);
    };
    const onDeadline = () => {
      if (done) return;
      finish();
      for (const c of inFlight.values()) c.abort();
      reject(exhausted(call, run, 'time limit reached'));
    };
    call.deadline.addEventListener('abort', onDeadline, { once: true });
    const next = () => ranked.find((p) => !run.tried.has(p.address));
    const budget = (provider: Address) =>
      call.hedgeAfterMs === false ? undefined : (call.hedgeAfterMs ?? hedgeBudgetMs(call.client, provider));
    const launch = () => {
      if (done) return;
      const provider = next();
      if (!provider) {
        if (inFlight.size === 0) {
          finish();
          reject(exhausted(call, run, `${run.tried.size} provider(s) tried`));
        }
        return;
      }
      run.tried.add(provider.address);
      clearTimeout(timer);
      const wait = budget(provider.address);
      if (wait !== undefined)
        timer = setTimeout(() => {
          if (done || inFlight.size >= 2 || !next()) return;
          run.hedged = true;
          launch();
        }, wait);
      const controller = new AbortController();
      inFlight.set(provider.address, controller);
      open(call, provider, sent, AbortSignal.any([controller.signal, call.deadline])).then(
        (opened) => {
          inFlight.delete(provider.address);
          if (done) {
            controller.abort();
            return;
          }
          finish();
          for (const c of inFlight.values()) c.abort();
          resolve({ ...opened, provider, sent, controller });
        },
        (error: unknown) => {
          inFlight.delete(provider.address);
          if (done) return;
          if (!call.deadline.aborted) recordFailure(call.client, provider.address, codeOf(error));
          run.rejected.push(rejection(provider.address, error));
          if (isGlassboxError(error) && isRequestFault(error)) run.faults.push(error);
          const fault = requestFault(call, run, ranked.length);
          if (!fault) return launch();
          finish();
          for (const c of inFlight.values()) c.abort();
          reject(fault);
        },
      );
    };
    if (call.deadline.aborted) onDeadline();
    else launch();
  });
}

/** Sends one segment's request and waits for its first event (paying what is owed once on a 402). */
async function open(
  call: Call,
  provider: ProviderCandidate,
  sent: SentBody,
  signal: AbortSignal,
): Promise<Omit<Started, 'provider' | 'sent' | 'controller'>> {
  for (let attempt = 0; ; attempt++) {
    const requestId = randomRequestId();
    const sentAtMs = Date.now();
    const t0 = performance.now();
    const iterator = postGeneration(call.client, provider, {
      route: call.route,
      body: sent.body,
      requestId,
      signal,
      stallMs: call.stallMs,
    });
    try {
      const first = await iterator.next();
      if (first.done)
        throw new GlassboxError('PROVIDER_ERROR', `provider ${provider.address} ended its stream at once`);
      return { requestId, sentAtMs, firstAfterMs: performance.now() - t0, iterator, first: first.value };
    } catch (error) {
      // Pay-after with credit: the provider wants what it is owed before serving more (a refusal for
      // want of a deposit names `client`: no voucher helps).
      if (attempt > 0 || !isGlassboxError(error, 'PAYMENT_REQUIRED') || error.field === 'client') throw error;
      const [result] = await sendVouchers(call.client, {
        providers: [provider.address],
        timeoutMs: call.stallMs,
      });
      if (!result?.delivered) throw error;
    }
  }
}

/**
 * Reads one segment to its end: deltas are delivered (a stream) or held (a whole answer), the
 * receipt is verified, and the tokens count once it is. A break before the receipt leaves the
 * generation where it was accepted for the next provider to continue.
 */
export async function consumeSegment(
  call: Call,
  run: Run,
  s: Started,
  emit: ((delta: GenerationDelta) => void) | undefined,
): Promise<void> {
  const from = run.ids.length;
  const ids: number[] = [];
  const held: GenerationDelta[] = [];
  let text = '';
  let finishReason: 'stop' | 'length' | undefined;
  let end: Extract<LlmStreamEvent, { type: 'end' }> | undefined;
  /** Text delivered without its token ids: nothing to continue after if the provider breaks off. */
  let untracked = false;
  const take = (event: LlmStreamEvent) => {
    if (event.type === 'end') {
      end = event;
      return;
    }
    const delta: GenerationDelta = {
      text: event.text,
      tokenIds: event.tokenIds,
      ...(event.logprobs === undefined ? {} : { logprobs: event.logprobs }),
    };
    ids.push(...event.tokenIds);
    text += event.text;
    if (event.text !== '' && event.tokenIds.length === 0) untracked = true;
    if (event.finishReason) finishReason = event.finishReason;
    if (emit) {
      // Delivered at once: it is part of the generation whatever comes next.
      run.ids.push(...event.tokenIds);
      run.text += event.text;
      if (delta.logprobs !== undefined) run.logprobs.push(delta.logprobs);
      if (delta.text !== '' || delta.tokenIds.length > 0 || delta.logprobs !== undefined) emit(delta);
    } else held.push(delta);
  };
  try {
    take(s.first);
    while (!end) {
      const next = await s.iterator.next();
      if (next.done) break;
      take(next.value);
    }
    await s.iterator.return?.(undefined);
  } catch (error) {
    s.controller.abort();
    if (emit && untracked)
      throw new GlassboxError(
        'PROVIDER_ERROR',
        `provider ${s.provider.address} broke off a stream whose chunks named no token ids: it cannot be continued elsewhere`,
        { details: { provider: s.provider.address, delivered: run.ids.length }, cause: error },
      );
    cut(call, run, s, from, ids, error);
    return;
  }
  if (!end) {
    const error = new GlassboxError('PROVIDER_ERROR', 'the stream ended without its receipt');
    cut(call, run, s, from, ids, error);
    return;
  }
  // A provider that does not send token ids per chunk still names them all at the end.
  const outputIds = ids.length === 0 && end.outputIds ? [...end.outputIds] : ids;
  const report = await verifySegment(call, run, s, end, outputIds);
  const segment: Segment = {
    provider: s.provider.address,
    fromToken: from,
    toToken: from + outputIds.length,
    receipt: end.receipt,
    report,
  };
  if (call.chargeEach && chargeable(report, s.provider.address))
    recordCharge(call.client, s.provider, end.receipt.receipt.price);
  if (report.ok) {
    recordSuccess(call.client, s.provider.address, s.firstAfterMs);
    const equivocation = rememberAnswer(call.client, end.receipt);
    if (equivocation) run.evidence.push(equivocation);
    run.reports.push(report);
    run.promptIds ??= end.promptIds;
    run.segments.push(segment);
    if (!emit) {
      run.ids.push(...outputIds);
      run.text += text;
      for (const d of held) if (d.logprobs !== undefined) run.logprobs.push(d.logprobs);
    } else if (ids.length === 0) run.ids.push(...outputIds);
    run.finishReason = finishReason ?? 'stop';
    return;
  }
  recordFailure(call.client, s.provider.address, 'VERIFICATION_FAILED');
  const failed = report.checks.filter((c) => !c.ok);
  run.rejected.push({
    provider: s.provider.address,
    code: 'VERIFICATION_FAILED',
    message: `the receipt of ${s.provider.address} failed verification: ${failed.map((c) => `${c.check}: ${c.detail}`).join('; ')}`,
    report,
  });
  if (emit) {
    // Delivered already: the stream ends as it is, and says so.
    run.segments.push(segment);
    run.reports.push(report);
    run.failedReceipt = true;
    run.uncovered += outputIds.length;
    run.promptIds ??= end.promptIds;
    run.finishReason = finishReason ?? 'stop';
  }
}

/**
 * A segment that broke off before its receipt. A whole answer drops what it held (the next provider
 * starts after the last verified segment). A stream keeps what it delivered, uncovered until the
 * provider's receipt for those tokens turns up (one that noticed the client go away signs for what
 * it delivered): asked for while the next provider already continues (`run.pending`, awaited before
 * the result), so a provider that died costs the stream no wait.
 */
function cut(call: Call, run: Run, s: Started, from: number, ids: readonly number[], error: unknown): void {
  if (!call.deadline.aborted) recordFailure(call.client, s.provider.address, codeOf(error));
  const rejected = rejection(s.provider.address, error);
  run.rejected.push(rejected);
  if (call.deadline.aborted) throw exhausted(call, run, 'time limit reached');
  if (!call.stream || ids.length === 0) return;
  run.failovers++;
  run.uncovered += ids.length;
  const index =
    run.segments.push({
      provider: s.provider.address,
      fromToken: from,
      toToken: from + ids.length,
      cut: `${rejected.code}: ${rejected.message}`,
    }) - 1;
  run.pending.push(coverCut(call, run, s, ids, index));
}

/** Adds a broken-off segment's receipt, when its provider has one, and its tokens are covered if it verifies. */
async function coverCut(
  call: Call,
  run: Run,
  s: Started,
  ids: readonly number[],
  index: number,
): Promise<void> {
  const report = await cutReceipt(call, run, s, ids);
  if (!report) return;
  run.segments[index] = { ...run.segments[index]!, receipt: report.receipt, report };
  if (call.chargeEach && chargeable(report, s.provider.address))
    recordCharge(call.client, s.provider, report.receipt.receipt.price);
  if (!report.ok) return;
  run.uncovered -= ids.length;
  run.reports.push(report);
}

/** How long a broken-off segment's receipt is waited for (the provider records it as it stops). */
const CUT_RECEIPT_WAIT_MS = 1_000;

/**
 * The receipt a provider recorded for a segment that broke off, checked as a request for exactly
 * the tokens it delivered (src/node/generate.ts records a cut generation so): undefined when it has
 * none yet within CUT_RECEIPT_WAIT_MS, or cannot be reached.
 */
async function cutReceipt(
  call: Call,
  run: Run,
  s: Started,
  ids: readonly number[],
): Promise<ReceiptReport | undefined> {
  const until = Date.now() + CUT_RECEIPT_WAIT_MS;
  for (;;) {
    let stored;
    try {
      stored = await getGenerationReceipt(call.client, s.provider, s.requestId, CUT_RECEIPT_WAIT_MS);
    } catch {
      return undefined; // gone (killed, unreachable) or answering garbage: nothing to cover with
    }
    if (stored) {
      const sent = withMaxTokens(s.sent, stored.outputIds.length);
      const receipt = { receipt: stored.receipt, promptIds: stored.promptIds };
      const report = await verifySegment(call, run, { ...s, sent }, receipt, ids);
      if (report.ok) run.promptIds ??= stored.promptIds;
      return report;
    }
    if (Date.now() >= until) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The sent body as the provider records a cut generation: max_tokens = the tokens it delivered. */
function withMaxTokens(sent: SentBody, maxTokens: number): SentBody {
  return sent.route === 'chat'
    ? { route: 'chat', body: { ...sent.body, max_tokens: maxTokens } }
    : { route: 'completion', body: { ...sent.body, max_tokens: maxTokens } };
}

/**
 * The segment's receipt against what was sent and received. The prompt ids are the first segment's
 * (a later provider tokenizing the prompt otherwise has signed another input).
 */
function verifySegment(
  call: Call,
  run: Run,
  s: Pick<Started, 'sent' | 'requestId' | 'provider' | 'sentAtMs'>,
  end: Pick<Extract<LlmStreamEvent, { type: 'end' }>, 'receipt'> &
    Partial<Pick<Extract<LlmStreamEvent, { type: 'end' }>, 'promptIds' | 'usage'>>,
  outputIds: readonly number[],
): Promise<ReceiptReport> {
  const promptIds = run.promptIds ?? end.promptIds ?? [];
  let request: LlmRequest | { readonly problem: string };
  try {
    request = expectedLlmRequest(s.sent, promptIds.length, call.offer.manifest);
  } catch (error) {
    request = { problem: isGlassboxError(error) ? error.shortMessage : String(error) };
  }
  return verifyLlmReceipt(call.client, {
    receipt: end.receipt,
    model: call.offer.id,
    requestId: s.requestId,
    provider: s.provider.address,
    quote: s.provider,
    request,
    promptIds,
    outputIds,
    ...(end.usage ? { usage: end.usage } : {}),
    cap: call.cap,
    sentAtMs: s.sentAtMs,
  });
}

function codeOf(error: unknown): string {
  return isGlassboxError(error) ? error.code : String(error);
}

export function rejection(provider: Address, error: unknown): RejectedAttempt {
  if (isGlassboxError(error)) {
    const status = error.details.status;
    return {
      provider,
      code: error.code,
      message: error.shortMessage,
      ...(typeof status === 'number' ? { status } : {}),
    };
  }
  return { provider, code: 'PROVIDER_ERROR', message: String(error) };
}

/** Refusals that follow from the request itself: every provider of the model answers them alike. */
const REQUEST_FAULTS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'REQUEST_INVALID',
  'REQUEST_TOO_LARGE',
  'OUTPUT_TOO_LARGE',
]);

const isRequestFault = (error: GlassboxError): boolean => {
  const status = error.details.status;
  return REQUEST_FAULTS.has(error.code) && typeof status === 'number' && status >= 400 && status < 500;
};

/**
 * The request's own fault, once believable: two providers refused it for the same reason, or the
 * only one there is did (a single liar answering 400 must not keep the client from the rest). It
 * names the field the provider named.
 */
function requestFault(call: Call, run: Run, providers: number): GlassboxError | undefined {
  const last = run.faults.at(-1);
  if (!last) return undefined;
  const same = run.faults.filter((e) => e.code === last.code);
  if (same.length < Math.min(2, providers)) return undefined;
  return new GlassboxError(last.code, `${last.shortMessage} (the request's fault: not retried elsewhere)`, {
    ...(last.field ? { field: last.field } : {}),
    metaMessages: same.map((e) => e.shortMessage),
    details: { model: call.offer.id, status: last.details.status, rejected: run.rejected },
  });
}

/** The one code every provider refused with (4xx), else VERIFICATION_FAILED or PROVIDER_UNAVAILABLE. */
export function failureCode(rejected: readonly RejectedAttempt[]): ErrorCode {
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

export function exhausted(call: Call, run: Run, what: string): GlassboxError {
  // The caller cancelled (a stream's reader that stopped reading): that is the reason, not a time limit.
  const reason: unknown = call.deadline.reason;
  if (call.deadline.aborted && isGlassboxError(reason, 'ABORTED')) return reason;
  const code = failureCode(run.rejected);
  const timedOut = call.deadline.aborted ? ' before the time limit' : '';
  const message =
    code === 'VERIFICATION_FAILED'
      ? `no generation of model ${call.offer.id} verified${timedOut} (${what})`
      : code === 'PROVIDER_UNAVAILABLE'
        ? `no provider of model ${call.offer.id} answered${timedOut} (${what})`
        : `every provider of model ${call.offer.id} refused the request: ${run.rejected[0]!.message}`;
  return new GlassboxError(code, message, {
    metaMessages: run.rejected.map((r) => `${r.provider}: ${r.code}: ${r.message}`),
    details: {
      model: call.offer.id,
      rejected: run.rejected,
      delivered: run.ids.length,
      ...(run.rejected[0]?.status ? { status: run.rejected[0].status } : {}),
    },
  });
}
