import type { Address, Hex } from 'viem';
import type { ChatCompletionRequest, CompletionRequest } from '../api/openai.js';
import {
  completeLlmRequest,
  llmInputHash,
  llmOutputHash,
  llmParamsHash,
  llmTokenCounts,
  parseLlmRequest,
  tokenPrice,
  type LlmRequest,
} from '../protocol/llm.js';
import type { LlmManifest } from '../protocol/manifest.js';
import type { SignedReceipt } from '../protocol/receipt.js';
import type { RecheckReport } from '../runtime/index.js';
import type { Client } from './client.js';
import type { ProviderCandidate } from './discovery.js';
import { identityChecks, profileChecks, type ReceiptReport } from './verify.js';

/*
 * The checks of an LLM generation's receipt (issue 14, D3): the ones every receipt goes through
 * (src/sdk/verify.ts: signature, signer, provider, model, request id, client, runtime, timestamp)
 * and those of a token receipt (docs/protocol.md, LLM generations): paramsHash over the sampling
 * parameters, inputHash over the normalized request (its prefix included) and the prompt ids,
 * outputHash over the ids this client received, price = token counts x the offer's per-token
 * prices and within the client's cap, and the counts the ones the provider reported.
 */

/** The most the client pays per million tokens (chat.ts TokenPriceCap). */
export type PerMillionCap = { readonly input: bigint; readonly output: bigint };

const MILLION = 1_000_000n;

/** The body a chat or completion request is, as the protocol's draft reads it (OpenAI names). */
export type SentBody =
  | { readonly route: 'chat'; readonly body: ChatCompletionRequest }
  | { readonly route: 'completion'; readonly body: CompletionRequest };

/**
 * The fields of a sent body that decide the output, as the provider reads them
 * (src/node/routes/openai.ts): text parts joined, `max_completion_tokens` before `max_tokens`, a
 * top_k of -1 as 0, one stop string as a list, logprobs as the number of alternatives.
 */
export function llmDraftBody(sent: SentBody): Record<string, unknown> {
  const b = sent.body;
  const maxTokens = sent.route === 'chat' ? (sent.body.max_completion_tokens ?? b.max_tokens) : b.max_tokens;
  const common = {
    model: b.model,
    ...(b.temperature != null ? { temperature: b.temperature } : {}),
    ...(b.top_p != null ? { top_p: b.top_p } : {}),
    ...(b.top_k != null ? { top_k: Math.max(0, b.top_k) } : {}),
    ...(b.seed != null ? { seed: String(b.seed) } : {}),
    ...(maxTokens != null ? { max_tokens: maxTokens } : {}),
    ...(b.stop != null ? { stop: typeof b.stop === 'string' ? [b.stop] : b.stop } : {}),
    ...prefixOf(b as { readonly glassbox?: unknown }),
  };
  if (sent.route === 'chat') {
    const body = sent.body;
    return {
      kind: 'chat',
      messages: body.messages.map((m) => ({
        role: m.role,
        content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join(''),
      })),
      ...common,
      ...(body.logprobs ? { logprobs: true, top_logprobs: body.top_logprobs ?? 0 } : {}),
    };
  }
  const body = sent.body;
  return {
    kind: 'completion',
    prompt: typeof body.prompt === 'string' ? body.prompt : body.prompt[0]!,
    ...common,
    ...(body.logprobs != null ? { logprobs: true, top_logprobs: body.logprobs } : {}),
  };
}

function prefixOf(body: { readonly glassbox?: unknown }): Record<string, unknown> {
  const prefix = (body.glassbox as { prefix_ids?: unknown } | null | undefined)?.prefix_ids;
  return Array.isArray(prefix) && prefix.length > 0 ? { glassbox: { prefix_ids: prefix } } : {};
}

/**
 * The normalized request a provider hashes for `sent` (model: the id asked for), given the number
 * of prompt tokens it reports: what the receipt's inputHash and paramsHash must cover.
 */
export function expectedLlmRequest(sent: SentBody, promptTokens: number, manifest: LlmManifest): LlmRequest {
  const draft = parseLlmRequest(llmDraftBody(sent));
  return completeLlmRequest(draft, {
    promptTokens,
    contextLength: manifest.llm.contextLength,
    vocabulary: manifest.llm,
  });
}

/** Whether a provider's per-token prices are within a per-million cap. */
export function withinCap(prices: { price: bigint; inputPrice: bigint }, cap: PerMillionCap): boolean {
  return prices.price * MILLION <= cap.output && prices.inputPrice * MILLION <= cap.input;
}

export type VerifyLlmReceiptParameters = {
  readonly receipt: SignedReceipt;
  /** The model id (CID) asked for. */
  readonly model: string;
  readonly requestId: Hex;
  readonly provider: Address;
  /** The provider as discovered (its effective prices); read from the chain if absent. */
  readonly quote?: ProviderCandidate;
  /**
   * The normalized request (expectedLlmRequest), its prefix included; or why there is none (the
   * provider's prompt length leaves the request impossible): then no hash can be right.
   */
  readonly request: LlmRequest | { readonly problem: string };
  readonly promptIds: readonly number[];
  /** The output ids this client received from this provider (not the prefix). */
  readonly outputIds: readonly number[];
  /** The counts the provider's answer reported (usage), when it reported them. */
  readonly usage?: { readonly promptTokens: number; readonly completionTokens: number };
  readonly cap: PerMillionCap;
  /** When the request was sent (ms), for the timestamp check. */
  readonly sentAtMs?: number;
};

const short = (h: string) => (h.length > 14 ? `${h.slice(0, 10)}…${h.slice(-4)}` : h);

/** Every check of an LLM receipt; never throws for a bad receipt (each failure is a check). */
export async function verifyLlmReceipt(
  client: Client,
  params: VerifyLlmReceiptParameters,
): Promise<ReceiptReport> {
  const r = params.receipt.receipt;
  const { checks, push, quote, expectedProvider } = await identityChecks(client, params);
  const hashCheck = (check: 'params' | 'inputHash' | 'outputHash', field: Hex, want: Hex, what: string) =>
    push(
      check,
      field === want,
      field === want
        ? `${check === 'params' ? 'paramsHash' : check} ${short(want)} recomputed from the ${what}`
        : `receipt ${check === 'params' ? 'paramsHash' : check} ${short(field)} is not the hash of the ${what} (${short(want)})`,
    );
  const request = 'problem' in params.request ? undefined : params.request;
  if (!request) {
    const why = `no request to hash: ${(params.request as { problem: string }).problem}`;
    push('params', false, why);
    push('inputHash', false, why);
  } else {
    hashCheck('params', r.paramsHash, llmParamsHash(request.params), 'sampling parameters sent');
    hashCheck(
      'inputHash',
      r.inputHash,
      llmInputHash(request, params.promptIds),
      `request sent (its ${request.prefixIds?.length ?? 0} prefix ids included) and ${params.promptIds.length} prompt ids`,
    );
  }
  hashCheck(
    'outputHash',
    r.outputHash,
    llmOutputHash(params.outputIds),
    `${params.outputIds.length} output ids received`,
  );

  // A continuation's prefix is charged as input: the provider prefills it like the prompt (D2).
  const counts = llmTokenCounts(request ?? {}, params.promptIds.length, params.outputIds.length);
  push(...priceCheck(r.price, counts, quote, params.cap));
  if (params.usage) {
    const u = params.usage;
    const same = u.promptTokens === counts.promptTokens && u.completionTokens === counts.completionTokens;
    push(
      'usage',
      same,
      same
        ? `usage ${u.promptTokens} prompt + ${u.completionTokens} completion tokens, as received`
        : `usage says ${u.promptTokens} prompt + ${u.completionTokens} completion tokens, but ${counts.promptTokens} + ${counts.completionTokens} were sent and received`,
    );
  }
  await profileChecks(client, {
    receipt: params.receipt,
    expectedProvider,
    quote,
    push,
    ...(params.sentAtMs === undefined ? {} : { sentAtMs: params.sentAtMs }),
  });
  return {
    provider: expectedProvider,
    requestId: r.requestId,
    ok: checks.every((c) => c.ok),
    checks,
    receipt: params.receipt,
  };
}

/**
 * The price must be the counts at the offer's per-token prices in force (a provider charging an old
 * or made-up price is refused) and within the cap: price x 1e6 <= counts x the cap per million.
 */
function priceCheck(
  price: bigint,
  counts: { promptTokens: number; completionTokens: number },
  quote: ProviderCandidate | undefined,
  cap: PerMillionCap,
): ['price', boolean, string, boolean] {
  if (!quote) return ['price', false, 'no quote to compare the price with', true];
  const want = tokenPrice(counts, { inputPrice: quote.inputPrice, outputPrice: quote.price });
  const most = BigInt(counts.promptTokens) * cap.input + BigInt(counts.completionTokens) * cap.output;
  const problems: string[] = [];
  if (price !== want)
    problems.push(
      `price ${price} is not ${counts.promptTokens} input x ${quote.inputPrice} + ${counts.completionTokens} output x ${quote.price} = ${want} (the offer in force)`,
    );
  if (price * MILLION > most)
    problems.push(
      `price ${price} is above the cap (${cap.input} input, ${cap.output} output per million tokens)`,
    );
  return problems.length === 0
    ? [
        'price',
        true,
        `price ${price} = ${counts.promptTokens} x ${quote.inputPrice} + ${counts.completionTokens} x ${quote.price}, within the cap`,
        false,
      ]
    : ['price', false, problems.join('; '), false];
}

/** The local re-check, summarized for a report. */
export function recheckSummary(report: RecheckReport): {
  ok: boolean;
  firstFailure?: { check: string; position: number | null; reason: string };
  margins: { positions: number; maxMargin: number; suspicious: number; allowed: number };
  durationMs: number;
} {
  return {
    ok: report.ok,
    ...(report.failure ? { firstFailure: { ...report.failure } } : {}),
    margins: {
      positions: report.verdict.positions,
      maxMargin: report.verdict.maxMargin,
      suspicious: report.verdict.suspicious,
      allowed: report.verdict.allowed,
    },
    durationMs: report.durationMs,
  };
}
