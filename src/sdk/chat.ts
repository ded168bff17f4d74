import { getAddress, type Address, type Hex } from 'viem';
import type { z } from 'zod';
import {
  chatCompletionRequestSchema,
  completionRequestSchema,
  type ChatCompletionRequest,
  type CompletionRequest,
} from '../api/openai.js';
import { GlassboxError } from '../protocol/errors.js';
import { randomSeed } from '../protocol/llm.js';
import type { SignedReceipt } from '../protocol/receipt.js';
import { parseWith } from '../protocol/validate.js';
import type { Client } from './client.js';
import type { ProviderCandidate } from './discovery.js';
import type { Evidence } from './evidence.js';
import type { RejectedAttempt } from './infer.js';
import { generate, type Call } from './llm-generation.js';
import { cheapest, llmOffers, resolveLlmModel, type LlmOffer } from './llm-models.js';
import { quorum } from './llm-quorum.js';
import { finish } from './llm-result.js';
import type { LlmRoute } from './llm-transport.js';
import { withinCap } from './llm-verify.js';
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
  /**
   * The OpenAI body (src/api/openai.ts chatCompletionRequestSchema's input); `model` is an id or a
   * name. Its `stream` and `stream_options` are ignored: the `stream` parameter decides, and the
   * SDK always streams from providers (to continue a generation that breaks off).
   */
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
