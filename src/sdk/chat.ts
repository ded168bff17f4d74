import type { Address, Hex } from 'viem';
import type { z } from 'zod';
import type { chatCompletionRequestSchema, completionRequestSchema } from '../api/openai.js';
import { GlassboxError } from '../protocol/errors.js';
import type { SignedReceipt } from '../protocol/receipt.js';
import type { Client } from './client.js';
import type { Evidence } from './evidence.js';
import type { RejectedAttempt } from './infer.js';
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
  void client;
  void params;
  throw new GlassboxError('USAGE', 'chat: not implemented yet');
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
  void client;
  void params;
  throw new GlassboxError('USAGE', 'completion: not implemented yet');
}

/** The LLM models with at least one active offer. */
export function listLlmModels(client: Client): Promise<LlmModelListing[]> {
  void client;
  return Promise.reject(new GlassboxError('USAGE', 'listLlmModels: not implemented yet'));
}
