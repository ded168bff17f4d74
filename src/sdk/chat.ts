import { getAddress, toHex, type Address, type Hex } from 'viem';
import type { z } from 'zod';
import {
  chatCompletionRequestSchema,
  completionRequestSchema,
  type ChatCompletionRequest,
  type CompletionRequest,
} from '../api/openai.js';
import { decodeTensors, tensorsToJson, type JsonTensor } from '../protocol/encoding.js';
import { GlassboxError, isGlassboxError, type ErrorCode } from '../protocol/errors.js';
import { llmInputData, llmOutputData, randomSeed, type LlmRequest } from '../protocol/llm.js';
import type { SignedReceipt } from '../protocol/receipt.js';
import { parseWith } from '../protocol/validate.js';
import type { Engines } from '../runtime/registry.js';
import type { Client } from './client.js';
import type { ProviderCandidate } from './discovery.js';
import { rememberAnswer, type Disagreement, type Equivocation, type Evidence } from './evidence.js';
import { hedgeBudgetMs, recordFailure, recordSuccess } from './health.js';
import type { RejectedAttempt } from './infer.js';
import { cheapest, llmOffers, resolveLlmModel, type LlmOffer } from './llm-models.js';
import { postGeneration, type LlmRoute, type LlmStreamEvent } from './llm-transport.js';
import {
  expectedLlmRequest,
  recheckSummary,
  verifyLlmReceipt,
  withinCap,
  type SentBody,
} from './llm-verify.js';
import { getPackage } from './manifests.js';
import { chargeable, recordCharge, sendVouchers } from './payments.js';
import { rankProviders } from './select.js';
import type { ReceiptReport } from './verify.js';

/*
 * The SDK's chat API (issue 14, D3): an OpenAI body in, a verified generation out, routed over the
 * network's providers of the model with the same price cap, health ranking, hedging, failover and
 * quorum as `infer`, and one thing `infer` has no use for: a generation that breaks off mid-stream
 * continues on the next provider from the ids already delivered (D2's `prefix_ids`), so a stream's
 * consumer never sees the break. The gateway and the CLI are thin layers over these functions.
 */

/** 'receipt': verified receipts; 'local': and a re-check of the whole generation here; quorum: k providers compared. */
export type LlmMode = 'receipt' | 'local' | { readonly quorum: number };

/** The most the client pays per million tokens, in base units: prompt (input) and generated (output). */
export type TokenPriceCap = { readonly input: bigint; readonly output: bigint };

/** An OpenAI chat body as a caller writes it (defaults not filled in); `model` is an id or a name. */
export type ChatRequestBody = z.input<typeof chatCompletionRequestSchema>;
/** An OpenAI (legacy) completions body as a caller writes it. */
export type CompletionRequestBody = z.input<typeof completionRequestSchema>;

type CallParameters = {
  /** Providers priced above this (either price) are routed around. */
  readonly maxPrice: TokenPriceCap;
  /** Default 'receipt'. Quorum answers non-stream calls only (USAGE otherwise). */
  readonly mode?: LlmMode;
  /** The whole call's time limit (default: the client's timeoutMs). */
  readonly timeoutMs?: number;
  /** How long a provider may take to its first token (and between tokens) before it counts as failed. */
  readonly firstTokenTimeoutMs?: number;
  /** No first token by then: a second provider races (`false`: never; default from health, like infer). */
  readonly hedgeAfterMs?: number | false;
  /** Providers not to use. */
  readonly exclude?: readonly Address[];
  readonly signal?: AbortSignal;
};

export type ChatParameters = CallParameters & {
  /** The OpenAI body (src/api/openai.ts chatCompletionRequestSchema's input); `model` is an id or a name. */
  readonly body: ChatRequestBody;
};

export type CompletionParameters = CallParameters & {
  readonly body: CompletionRequestBody;
};

/** A piece of the generation as it arrives: its text and the token ids behind it. */
export type GenerationDelta = {
  readonly text: string;
  readonly tokenIds: readonly number[];
  /** The provider chunk's logprobs (chat or completion shape), when asked for. */
  readonly logprobs?: unknown;
};

/** The output tokens [fromToken, toToken) one provider produced, with its receipt and its checks. */
export type Segment = {
  readonly provider: Address;
  readonly fromToken: number;
  readonly toToken: number;
  readonly receipt?: SignedReceipt;
  readonly report?: ReceiptReport;
  /** Why it ended before the generation did (the provider failed mid-stream), when it did. */
  readonly cut?: string;
};

/** The local re-check of the whole generation (local mode), summarized. */
export type LlmRecheckSummary = {
  readonly ok: boolean;
  /** The first check that failed, where (output position) and why. */
  readonly firstFailure?: {
    readonly check: string;
    readonly position: number | null;
    readonly reason: string;
  };
  readonly margins: {
    readonly positions: number;
    readonly maxMargin: number;
    readonly suspicious: number;
    readonly allowed: number;
  };
  readonly durationMs: number;
};

export type LlmVerificationReport = {
  /** Every receipt behind the returned tokens verified (and the re-check, in local mode, passed). */
  readonly ok: boolean;
  readonly mode: 'receipt' | 'local' | 'quorum';
  /** One entry per verified receipt, with every check. */
  readonly receipts: readonly ReceiptReport[];
  /** Attempts that did not count: failures, timeouts, receipts that failed verification. */
  readonly rejected: readonly RejectedAttempt[];
  /** Whether a hedged request was sent. */
  readonly hedged: boolean;
  /** How many times the generation moved to another provider after tokens were delivered. */
  readonly failovers: number;
  readonly recheck?: LlmRecheckSummary;
  readonly quorum?: {
    readonly k: number;
    readonly groups: readonly { readonly providers: readonly Address[]; readonly outputHash: Hex }[];
    readonly majority: number;
    readonly answered: number;
  };
};

export type GenerationResult = {
  /** The model id (CID) that answered. */
  readonly model: string;
  readonly text: string;
  readonly finishReason: 'stop' | 'length';
  readonly promptIds: readonly number[];
  readonly outputIds: readonly number[];
  /** The sampler's seed: the body's, or one the SDK picked (so a continuation samples the same). */
  readonly seed: bigint;
  readonly usage: { readonly promptTokens: number; readonly completionTokens: number };
  /** One per provider that produced tokens, in order. */
  readonly segments: readonly Segment[];
  readonly receipts: readonly SignedReceipt[];
  readonly report: LlmVerificationReport;
  readonly evidence?: Evidence;
  readonly logprobs?: unknown;
};

/** The deltas as they arrive; `result` settles when the generation ends (and rejects if it fails). */
export type GenerationStream = AsyncIterable<GenerationDelta> & {
  readonly result: Promise<GenerationResult>;
};

/** An LLM model with at least one active offer on chain. */
export type LlmModelListing = {
  readonly id: string;
  readonly name: string;
  readonly contextLength: number;
  /** Active providers offering it. */
  readonly providers: number;
  /** The cheapest active offer's prices, per token in base units. */
  readonly price: { readonly input: bigint; readonly output: bigint };
};

/** A chat generation on the network, verified: see the module comment. */
export function chat(client: Client, params: ChatParameters & { readonly stream: true }): GenerationStream;
export function chat(
  client: Client,
  params: ChatParameters & { readonly stream?: false },
): Promise<GenerationResult>;
export function chat(
  client: Client,
  params: ChatParameters & { readonly stream?: boolean },
): GenerationStream | Promise<GenerationResult> {
  return params.stream === true ? streamed(client, 'chat', params) : whole(client, 'chat', params);
}

/** A (legacy) completion on the network, verified: as `chat`. */
export function completion(
  client: Client,
  params: CompletionParameters & { readonly stream: true },
): GenerationStream;
export function completion(
  client: Client,
  params: CompletionParameters & { readonly stream?: false },
): Promise<GenerationResult>;
export function completion(
  client: Client,
  params: CompletionParameters & { readonly stream?: boolean },
): GenerationStream | Promise<GenerationResult> {
  return params.stream === true
    ? streamed(client, 'completion', params)
    : whole(client, 'completion', params);
}

/** The LLM models with at least one active offer, cheapest offer first... by name. */
export async function listLlmModels(client: Client): Promise<LlmModelListing[]> {
  const offers = await llmOffers(client);
  return offers
    .map((o) => {
      const best = cheapest(o.candidates);
      return {
        id: o.id,
        name: o.manifest.name,
        contextLength: o.manifest.llm.contextLength,
        providers: o.candidates.length,
        price: { input: best.inputPrice, output: best.price },
      };
    })
    .sort((a, b) => (a.name === b.name ? (a.id < b.id ? -1 : 1) : a.name < b.name ? -1 : 1));
}

type AnyParameters = CallParameters & { readonly body: ChatRequestBody | CompletionRequestBody };

/** What one call is: the request as every provider gets it, where to send it, and its limits. */
type Call = {
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

/** Validates the parameters and resolves the model: everything before a provider is asked. */
async function prepare(
  client: Client,
  route: LlmRoute,
  params: AnyParameters,
  stream: boolean,
  deadline: AbortSignal,
): Promise<{ call: Call; ranked: ProviderCandidate[] }> {
  const schema = route === 'chat' ? chatCompletionRequestSchema : completionRequestSchema;
  const parsed = parseWith(schema, params.body, { code: 'REQUEST_INVALID' }) as
    ChatCompletionRequest | CompletionRequest;
  checkCap(params.maxPrice);
  const mode = params.mode ?? 'receipt';
  if (typeof mode === 'object') {
    if (stream)
      throw new GlassboxError('REQUEST_INVALID', 'mode: a quorum answers non-stream requests only', {
        field: 'mode',
      });
    if (!Number.isInteger(mode.quorum) || mode.quorum < 1)
      throw new GlassboxError(
        'REQUEST_INVALID',
        `mode.quorum: must be a whole number >= 1, not ${mode.quorum}`,
        {
          field: 'mode.quorum',
        },
      );
  }
  const offer = await resolveLlmModel(client, parsed.model);
  const seed = parsed.seed == null ? randomSeed() : BigInt(parsed.seed);
  const maxTokens =
    route === 'chat'
      ? ((parsed as ChatCompletionRequest).max_completion_tokens ?? parsed.max_tokens ?? undefined)
      : (parsed.max_tokens ?? undefined);
  const exclude = new Set((params.exclude ?? []).map((a) => getAddress(a)));
  const affordable = offer.candidates.filter((c) => withinCap(c, params.maxPrice));
  if (affordable.length === 0) throw priceTooHigh(offer, params.maxPrice);
  const ranked = rankProviders({
    candidates: affordable,
    maxPrice: UNCAPPED,
    health: client.state.health,
    exclude,
  });
  if (ranked.length === 0)
    throw new GlassboxError('PROVIDER_UNAVAILABLE', `every provider of model ${offer.id} is excluded`, {
      field: 'exclude',
      details: { model: offer.id, offers: offer.candidates.length },
    });
  const timeoutMs = params.timeoutMs ?? client.options.timeoutMs;
  const call: Call = {
    client,
    route,
    body: { ...parsed, model: offer.id, seed: seed.toString() } as ChatCompletionRequest | CompletionRequest,
    maxTokens,
    seed,
    offer,
    cap: params.maxPrice,
    local: mode === 'local',
    deadline,
    stallMs: params.firstTokenTimeoutMs ?? Math.max(1_000, Math.min(10_000, Math.floor(timeoutMs / 3))),
    hedgeAfterMs: params.hedgeAfterMs,
    stream,
    chargeEach: true,
  };
  return { call, ranked };
}

/** rankProviders' price cap is per inference; the per-million cap is applied before it. */
const UNCAPPED = 2n ** 255n;

function checkCap(cap: TokenPriceCap | undefined): void {
  const ok = (v: unknown) => typeof v === 'bigint' && v >= 0n;
  if (!cap || !ok(cap.input) || !ok(cap.output))
    throw new GlassboxError(
      'USAGE',
      'maxPrice: must be {input, output}: the most paid per million tokens, as bigints >= 0',
      { field: 'maxPrice' },
    );
}

function priceTooHigh(offer: LlmOffer, cap: TokenPriceCap): GlassboxError {
  const best = cheapest(offer.candidates);
  return new GlassboxError(
    'PRICE_TOO_HIGH',
    `every provider of model ${offer.id} charges more than the cap (${cap.input} input, ${cap.output} output per million tokens)`,
    {
      field: 'maxPrice',
      metaMessages: [
        `the cheapest offer is ${best.inputPrice} per input and ${best.price} per output token (${best.address})`,
      ],
      details: {
        model: offer.id,
        cheapest: {
          input: (best.inputPrice * MILLION).toString(),
          output: (best.price * MILLION).toString(),
        },
      },
    },
  );
}

const MILLION = 1_000_000n;

function deadlineOf(client: Client, params: CallParameters): AbortSignal {
  const timeout = AbortSignal.timeout(params.timeoutMs ?? client.options.timeoutMs);
  return params.signal ? AbortSignal.any([params.signal, timeout]) : timeout;
}

async function whole(client: Client, route: LlmRoute, params: AnyParameters): Promise<GenerationResult> {
  const deadline = deadlineOf(client, params);
  const { call, ranked } = await prepare(client, route, params, false, deadline);
  const mode = params.mode ?? 'receipt';
  if (typeof mode === 'object') return quorum(call, ranked, mode.quorum);
  const run = await generate(call, ranked);
  const result = await finish(call, run);
  if (!result.report.ok) throw failedResult(call, result);
  return result;
}

/**
 * A stream: the generation starts at once and its deltas queue until read. Stopping the iteration
 * early cancels the generation; `result` settles either way (a failure rejects it and is thrown by
 * the iterator too).
 */
function streamed(client: Client, route: LlmRoute, params: AnyParameters): GenerationStream {
  const stop = new AbortController();
  const deadline = AbortSignal.any([deadlineOf(client, params), stop.signal]);
  const queue: GenerationDelta[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  let failure: unknown;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const result = (async () => {
    try {
      const { call, ranked } = await prepare(client, route, params, true, deadline);
      const run = await generate(call, ranked, (delta) => {
        queue.push(delta);
        notify();
      });
      return await finish(call, run);
    } catch (error) {
      failure = error;
      throw error;
    } finally {
      ended = true;
      notify();
    }
  })();
  result.catch(() => undefined); // read through the iterator, or `result`, or neither
  async function* iterate(): AsyncGenerator<GenerationDelta> {
    try {
      for (;;) {
        const next = queue.shift();
        if (next) {
          yield next;
          continue;
        }
        if (ended) {
          if (failure !== undefined) throw failure;
          return;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      if (!ended) stop.abort(new GlassboxError('ABORTED', 'the stream was closed by its reader'));
    }
  }
  return { [Symbol.asyncIterator]: iterate, result };
}

/** A whole answer that did not verify (local re-check): the call fails, naming why. */
function failedResult(call: Call, result: GenerationResult): GlassboxError {
  const why = result.report.recheck?.firstFailure;
  return new GlassboxError(
    'VERIFICATION_FAILED',
    `the generation of model ${call.offer.id} failed verification${why ? `: the local re-check's ${why.check} check failed at ${why.position ?? '-'} (${why.reason})` : ''}`,
    { details: { report: result.report, segments: result.segments } },
  );
}

/** The generation as it stands: what was accepted, from whom, and what did not count. */
type Run = {
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
  /** Refusals that follow from the request itself (requestFault). */
  faults: GlassboxError[];
};

const newRun = (): Run => ({
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
async function generate(
  call: Call,
  ranked: readonly ProviderCandidate[],
  emit?: (delta: GenerationDelta) => void,
): Promise<Run> {
  const run = newRun();
  while (run.finishReason === undefined) {
    const started = await startSegment(call, ranked, run);
    await consumeSegment(call, run, started, emit);
  }
  return run;
}

/** One provider's stream once it answered its first event. */
type Started = {
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
function segmentBody(call: Call, prefix: readonly number[]): SentBody {
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
function startSegment(call: Call, ranked: readonly ProviderCandidate[], run: Run): Promise<Started> {
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
async function consumeSegment(
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
    cut(call, run, s, from, ids, new GlassboxError('PROVIDER_ERROR', 'the stream ended without its receipt'));
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

/** A segment that broke off before its receipt: what it delivered stays (a stream) or goes. */
function cut(call: Call, run: Run, s: Started, from: number, ids: readonly number[], error: unknown): void {
  if (!call.deadline.aborted) recordFailure(call.client, s.provider.address, codeOf(error));
  const rejected = rejection(s.provider.address, error);
  run.rejected.push(rejected);
  if (call.deadline.aborted) throw exhausted(call, run, 'time limit reached');
  if (!call.stream || ids.length === 0) return;
  run.segments.push({
    provider: s.provider.address,
    fromToken: from,
    toToken: from + ids.length,
    cut: `${rejected.code}: ${rejected.message}`,
  });
  run.uncovered += ids.length;
  run.failovers++;
}

/**
 * The segment's receipt against what was sent and received. The prompt ids are the first segment's
 * (a later provider tokenizing the prompt otherwise has signed another input).
 */
function verifySegment(
  call: Call,
  run: Run,
  s: Started,
  end: Extract<LlmStreamEvent, { type: 'end' }>,
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
async function finish(call: Call, run: Run): Promise<GenerationResult> {
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
function inputsJson(call: Call, promptIds: readonly number[]): Record<string, JsonTensor> {
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

/**
 * Quorum k (non-stream): k distinct providers each generate the whole answer with the same seed
 * (one provider each: a failed one is replaced by the next, never continued), their receipts
 * verified; the output ids are compared, and the majority's answer is returned with Disagreement
 * evidence against the rest. Only the majority is paid (as infer's quorum, audit L-6).
 */
async function quorum(
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

function codeOf(error: unknown): string {
  return isGlassboxError(error) ? error.code : String(error);
}

function rejection(provider: Address, error: unknown): RejectedAttempt {
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

function exhausted(call: Call, run: Run, what: string): GlassboxError {
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
