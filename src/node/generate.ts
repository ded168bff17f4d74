import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { keccak256, toHex, type Address, type Hex, type LocalAccount } from 'viem';
import type { SignedVoucherJson } from '../protocol/api.js';
import { GlassboxError, isGlassboxError } from '../protocol/errors.js';
import {
  canonicalLlmRequest,
  completeLlmRequest,
  decodeLlmInput,
  decodeLlmOutput,
  llmInputData,
  llmOutputData,
  llmParamsHash,
  llmTokenCounts,
  parseLlmRequest,
  tokenPrice,
  type LlmRequest,
  type LlmRequestDraft,
  type TokenPrices,
} from '../protocol/llm.js';
import { dataHash } from '../protocol/data.js';
import { modelDigest, type ModelPackage } from '../protocol/manifest.js';
import {
  receiptHash,
  signReceipt,
  signedReceiptToJson,
  ZERO_HASH,
  type Receipt,
  type ReceiptDomain,
  type SignedReceiptJson,
} from '../protocol/receipt.js';
import type { FinishReason, LlmPrompt, TokenEngine, TokenLogprob } from '../runtime/engine.js';
import type { Engines } from '../runtime/registry.js';
import type { NodeDb, ReceiptRow } from './db.js';
import type { GroupCommit } from './group-commit.js';
import type { NodeMetrics } from './metrics.js';
import type { Payments } from './payments.js';
import { tokenPricesOf, type PriceBook } from './prices.js';

/*
 * One LLM generation, transport aside (the OpenAI routes, src/node/routes/openai.ts, end here, as
 * /v1/infer ends in ./infer.ts). The client is already proven by its session key. In order: find
 * the model (by id, or by name when one served model has it); template and tokenize the prompt;
 * normalize the request (defaults filled in, the seed the client's or one picked here and
 * disclosed); a retried request id is answered again from the stored receipt, not charged again;
 * the voucher; reserve credit for the worst case (the prompt plus max_tokens at the offer's
 * per-token prices); generate, handing each token to the transport as it comes; sign the receipt
 * over what was delivered (docs/protocol.md, LLM generations: input data = the prompt ids and the
 * canonical request, output data = the output ids, paramsHash over the sampling parameters, price =
 * tokens x per-token prices) and record it, with its data, through the group commit before this
 * returns: the transport sends its last bytes (the body; a stream's final chunks) only after that,
 * so an answer a client saw is never lost by a crash. The reservation is released either way.
 *
 * A client that goes away mid-generation aborts it (`signal`): the receipt then covers only the
 * tokens handed to the transport before the abort, and that is what the client is charged. A
 * client that never received a token (a non-stream request aborted) gets no receipt and no charge.
 */

/** A token as the transport shows it: its id, its new visible text, and its logprobs when asked. */
export type GeneratedToken = {
  readonly id: number;
  readonly text: string;
  readonly logprob?: TokenLogprob & { readonly top: readonly TokenLogprob[] };
};

/** The sampling a request asked for, before defaults: what the client sent, checked by the route's schema. */
export type SamplingRequest = {
  readonly temperature?: number;
  readonly topP?: number;
  readonly topK?: number;
  readonly seed?: bigint;
  readonly maxTokens?: number;
  readonly stop?: readonly string[];
};

export type GenerateRequest = {
  /** Proven by its session key. */
  readonly client: Address;
  /** The client's (glassbox-request-id), or undefined for one picked here. */
  readonly requestId?: Hex;
  readonly voucher?: SignedVoucherJson;
  /** A model id (CID) or a served model's name. */
  readonly model: string;
  readonly prompt: LlmPrompt;
  readonly sampling: SamplingRequest;
  /** The request field that set the most tokens (`max_tokens` or `max_completion_tokens`), for errors. */
  readonly maxTokensField?: string;
  /** Each token's logprob and this many alternatives (0-20); undefined: no logprobs. */
  readonly logprobs?: number;
  /**
   * `glassbox.prefix_ids`: output ids an earlier provider produced for this same request, to
   * continue after (docs/protocol.md, Continuing a generation). Charged as input tokens.
   */
  readonly prefixIds?: readonly number[];
  /** Aborted when the client goes away. */
  readonly signal?: AbortSignal;
  /**
   * Hands each output token to the transport, in order, as it is generated (a stream writes it);
   * awaited, so a slow client slows the generation instead of filling memory. A token whose call
   * returned counts as delivered.
   */
  readonly onToken?: (token: GeneratedToken) => void | Promise<void>;
};

export type GenerateResult = {
  readonly pkg: ModelPackage;
  readonly requestId: Hex;
  readonly seed: bigint;
  readonly promptIds: readonly number[];
  /** A continuation's prefix (empty otherwise): in the request the receipt covers, charged as input. */
  readonly prefixIds: readonly number[];
  /** What the receipt covers: every output id delivered, the EOS or stop-completing token included. */
  readonly outputIds: readonly number[];
  /** The visible text (without EOS, cut before a stop string). */
  readonly text: string;
  /** `abort`: the client went away; the receipt covers what was delivered. */
  readonly finishReason: FinishReason | 'abort';
  /** Each delivered token as generated (empty for a replayed answer). */
  readonly tokens: readonly GeneratedToken[];
  /** Undefined only when nothing was delivered (an aborted non-stream request): nothing is charged. */
  readonly receipt: SignedReceiptJson | undefined;
  /** The request id was answered before: this is that answer, not charged again. */
  readonly replayed: boolean;
};

export type GenerateService = {
  /** The served LLM model `name` (an id, or a name only one served model has); MODEL_NOT_FOUND otherwise. */
  findModel(name: string): ModelPackage;
  generate(request: GenerateRequest): Promise<GenerateResult>;
};

export type GenerateServiceParameters = {
  readonly db: NodeDb;
  readonly receipts: GroupCommit;
  readonly engines: Engines;
  readonly models: ReadonlyMap<string, ModelPackage>;
  readonly prices: PriceBook;
  readonly payments: Payments;
  readonly signer: LocalAccount;
  readonly provider: Address;
  readonly domain: ReceiptDomain;
  readonly metrics: NodeMetrics;
  readonly log: Logger;
  /** The most inputs plus outputs (canonical encodings, bytes) a receipt may carry (src/protocol/limits.ts). */
  readonly dataCap: () => number;
  readonly onReceipt?: () => void;
};

export function createGenerateService(p: GenerateServiceParameters): GenerateService {
  function findModel(name: string): ModelPackage {
    const byId = p.models.get(name);
    const named = byId ? [byId] : [...p.models.values()].filter((pkg) => pkg.manifest.name === name);
    const llms = named.filter((pkg) => pkg.manifest.format === 'llm');
    if (llms.length === 1) return llms[0]!;
    if (llms.length > 1)
      throw new GlassboxError(
        'REQUEST_INVALID',
        `${llms.length} served models are named "${name}": ask for one by its id (${llms.map((m) => m.id).join(', ')})`,
        { field: 'model', details: { ids: llms.map((m) => m.id) } },
      );
    if (named.length > 0) p.engines.tokens(named[0]!); // REQUEST_INVALID: not an LLM, run it on /v1/infer
    throw new GlassboxError('MODEL_NOT_FOUND', `model ${name} is not served by this provider`, {
      field: 'model',
      details: { served: llmNames(p.models) },
    });
  }

  async function generate(request: GenerateRequest): Promise<GenerateResult> {
    const pkg = findModel(request.model);
    const engine = p.engines.tokens(pkg);
    const draft = draftOf(pkg, request);
    const prompt = await engine.prompt(pkg, request.prompt);
    const promptIds = prompt.ids;
    const normalized = normalize(pkg, request, draft, promptIds.length);
    const requestId = (request.requestId ?? randomRequestId()).toLowerCase() as Hex;
    if (request.voucher) await p.payments.acceptVoucher(request.voucher, request.client);

    const previous = p.db.getReceipt(requestId);
    if (previous) return replay(previous, request, pkg, engine, normalized);

    // A receipt over more data than the chain's cap would make this provider slashable for data it
    // could not publish (audit C-1): the worst case (max_tokens of output) must fit before it runs.
    const most =
      llmInputData(normalized, promptIds).byteLength +
      // the output encoding's header is fixed (one int32 tensor, its dim a u64): 4 bytes per token
      llmOutputData([]).byteLength +
      4 * normalized.params.maxTokens;
    if (most > p.dataCap())
      throw new GlassboxError(
        'REQUEST_INVALID',
        `the prompt and up to ${normalized.params.maxTokens} output tokens take up to ${most} bytes in canonical encoding; a receipt may carry at most ${p.dataCap()} (the chain's data cap): ask for fewer tokens`,
        { field: request.maxTokensField ?? 'max_tokens', details: { limitBytes: p.dataCap() } },
      );
    const prices = await perTokenPrices(pkg);
    const prefixIds = normalized.prefixIds ?? [];
    const worst = tokenPrice(
      llmTokenCounts(normalized, promptIds.length, normalized.params.maxTokens),
      prices,
    );
    const release = await p.payments.reserve(request.client, worst);
    try {
      const run = await run_(engine, pkg, promptIds, normalized, request);
      if (run.outputIds.length === 0 && run.finishReason === 'abort')
        return {
          ...run,
          pkg,
          requestId,
          seed: normalized.params.seed,
          promptIds,
          prefixIds,
          receipt: undefined,
          replayed: false,
        };
      // A generation the client cut short is recorded as what it became: a request for exactly the
      // tokens delivered (max_tokens = their count). So its receipt passes the re-check's termination
      // rule (count == max_tokens) and no verifier takes an honest provider's cut-off answer for a
      // truncation; the sampling of each delivered token does not depend on max_tokens.
      const recorded =
        run.finishReason === 'abort'
          ? { ...normalized, params: { ...normalized.params, maxTokens: run.outputIds.length } }
          : normalized;
      const inputs = llmInputData(recorded, promptIds);
      const inputHash = dataHash(inputs);
      const outputs = llmOutputData(run.outputIds);
      const cap = p.dataCap();
      if (inputs.byteLength + outputs.byteLength > cap)
        throw new GlassboxError(
          'OUTPUT_TOO_LARGE',
          `the prompt and output take ${inputs.byteLength + outputs.byteLength} bytes in canonical encoding; a receipt may carry at most ${cap} (the chain's data cap)`,
          { field: request.maxTokensField ?? 'max_tokens', details: { limitBytes: cap } },
        );
      const price = tokenPrice(llmTokenCounts(recorded, promptIds.length, run.outputIds.length), prices);
      const receipt: Receipt = {
        requestId,
        provider: p.provider,
        client: request.client,
        model: modelDigest(pkg.id),
        inputHash,
        outputHash: dataHash(outputs),
        paramsHash: llmParamsHash(recorded.params),
        runtime: engine.runtimeHash,
        traceRoot: ZERO_HASH,
        price,
        timestamp: BigInt(Date.now()),
      };
      const signed = signedReceiptToJson(await signReceipt(p.signer, receipt, p.domain));
      try {
        await p.receipts.record({
          requestId,
          client: request.client,
          model: pkg.id,
          inputHash,
          leaf: receiptHash(receipt),
          receipt: signed,
          price,
          createdAt: Date.now(),
          inputs,
          outputs,
        });
      } catch (error) {
        // Two requests with one id raced: the other was stored first.
        if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
          const stored = p.db.getReceipt(requestId);
          if (stored) return replay(stored, request, pkg, engine, normalized);
        }
        throw error;
      }
      p.metrics.receipts.inc({ model: pkg.id });
      p.onReceipt?.();
      return {
        ...run,
        pkg,
        requestId,
        seed: normalized.params.seed,
        promptIds,
        prefixIds,
        receipt: signed,
        replayed: false,
      };
    } finally {
      release();
    }
  }

  /** The offer's per-token prices in force: `inputPrice` per prompt token, `price` per output token. */
  async function perTokenPrices(pkg: ModelPackage): Promise<TokenPrices> {
    return tokenPricesOf(await p.prices.price(pkg.id));
  }

  /**
   * A retried request id: the same client asking the same model the same request (the seed aside
   * when the retry names none: the provider picked it) gets the stored answer again, uncharged;
   * anything else is REQUEST_CONFLICT.
   */
  async function replay(
    stored: ReceiptRow,
    request: GenerateRequest,
    pkg: ModelPackage,
    engine: TokenEngine,
    normalized: LlmRequest,
  ): Promise<GenerateResult> {
    const conflict = (why: string) =>
      new GlassboxError('REQUEST_CONFLICT', why, { field: 'glassbox-request-id' });
    if (stored.client !== request.client || stored.model !== pkg.id || !stored.inputs || !stored.outputs)
      throw conflict(
        stored.client === request.client && stored.model === pkg.id
          ? `request ${stored.requestId} was answered and its data pruned; use a new request id`
          : `request id ${stored.requestId} was already used for another request; use a new one`,
      );
    const before = decodeLlmInput(stored.inputs);
    const seedGiven = request.sampling.seed !== undefined;
    const same =
      canonicalLlmRequest(
        seedGiven
          ? normalized
          : { ...normalized, params: { ...normalized.params, seed: before.request.params.seed } },
      ) === canonicalLlmRequest(before.request);
    if (!same)
      throw conflict(`request id ${stored.requestId} was already used for another request; use a new one`);
    const outputIds = decodeLlmOutput(stored.outputs);
    const prefixIds = before.request.prefixIds ?? [];
    const stop = before.request.params.stop;
    const whole = visible(await engine.decode(pkg, [...prefixIds, ...outputIds]), stop);
    // a continuation delivered only what came after the prefix's shown text
    const shown = prefixIds.length === 0 ? 0 : shownLength(await engine.decode(pkg, prefixIds), stop);
    const finished = { text: whole.text.slice(shown), cut: whole.cut };
    const eos = new Set(pkg.manifest.format === 'llm' ? pkg.manifest.llm.eosTokenIds : []);
    const last = outputIds[outputIds.length - 1];
    const finishReason: FinishReason =
      (last !== undefined && eos.has(last)) || finished.cut ? 'stop' : 'length';
    return {
      pkg,
      requestId: stored.requestId,
      seed: before.request.params.seed,
      promptIds: before.promptIds,
      prefixIds,
      outputIds,
      text: finished.text,
      finishReason,
      tokens: [],
      receipt: stored.receipt,
      replayed: true,
    };
  }

  return { findModel, generate };
}

/** Runs the engine, handing each token to the transport; an abort ends it with what was delivered. */
async function run_(
  engine: TokenEngine,
  pkg: ModelPackage,
  promptIds: readonly number[],
  normalized: LlmRequest,
  request: GenerateRequest,
): Promise<{
  outputIds: readonly number[];
  text: string;
  finishReason: FinishReason | 'abort';
  tokens: GeneratedToken[];
}> {
  const tokens: GeneratedToken[] = [];
  const options = {
    params: normalized.params,
    ...(normalized.prefixIds ? { prefixIds: normalized.prefixIds } : {}),
    ...(request.signal ? { signal: request.signal } : {}),
    ...(request.logprobs === undefined ? {} : { logprobs: request.logprobs }),
  };
  try {
    for await (const event of engine.generate(pkg, promptIds, options)) {
      if (event.type === 'done')
        return { outputIds: event.outputIds, text: event.text, finishReason: event.finishReason, tokens };
      const token: GeneratedToken = {
        id: event.id,
        text: event.text,
        ...(event.logprob ? { logprob: event.logprob } : {}),
      };
      if (request.signal?.aborted) break;
      await request.onToken?.(token);
      tokens.push(token);
    }
  } catch (error) {
    if (!request.signal?.aborted) throw error;
  }
  if (!request.signal?.aborted) throw new Error('the generation ended without its done event');
  // Only what the transport took was delivered: for a non-stream answer, nothing.
  const delivered = request.onToken ? tokens : [];
  return {
    outputIds: delivered.map((t) => t.id),
    text: delivered.map((t) => t.text).join(''),
    finishReason: 'abort',
    tokens: delivered,
  };
}

/**
 * The request's sampling and prompt as the protocol's draft (src/protocol/llm.ts, OpenAI's field
 * names), validated before anything is tokenized: REQUEST_INVALID naming the field otherwise.
 */
function draftOf(pkg: ModelPackage, request: GenerateRequest): LlmRequestDraft {
  const s = request.sampling;
  return renamed(request, () =>
    parseLlmRequest({
      ...(request.prompt.kind === 'chat'
        ? { kind: 'chat', messages: request.prompt.messages }
        : { kind: 'completion', prompt: request.prompt.prompt }),
      model: pkg.id,
      ...(s.temperature === undefined ? {} : { temperature: s.temperature }),
      ...(s.topP === undefined ? {} : { top_p: s.topP }),
      ...(s.topK === undefined ? {} : { top_k: s.topK }),
      ...(s.seed === undefined ? {} : { seed: s.seed.toString() }),
      ...(s.maxTokens === undefined ? {} : { max_tokens: s.maxTokens }),
      ...(s.stop === undefined ? {} : { stop: [...s.stop] }),
      ...(request.logprobs === undefined ? {} : { logprobs: true, top_logprobs: request.logprobs }),
      ...(request.prefixIds === undefined ? {} : { glassbox: { prefix_ids: [...request.prefixIds] } }),
    }),
  );
}

/**
 * The normalized request (docs/protocol.md, LLM generations): defaults filled in, max tokens within
 * the context, the seed the client's or a random uint64 the answer discloses.
 */
function normalize(
  pkg: ModelPackage,
  request: GenerateRequest,
  draft: LlmRequestDraft,
  promptTokens: number,
): LlmRequest {
  if (pkg.manifest.format !== 'llm') throw new Error(`model ${pkg.id} is not an LLM`);
  const { contextLength, vocabSize, eosTokenIds } = pkg.manifest.llm;
  return renamed(request, () =>
    completeLlmRequest(draft, { promptTokens, contextLength, vocabulary: { vocabSize, eosTokenIds } }),
  );
}

/** Runs `f`, its errors naming `max_completion_tokens` where the client used that name. */
function renamed<T>(request: GenerateRequest, f: () => T): T {
  try {
    return f();
  } catch (error) {
    const field = request.maxTokensField;
    if (!isGlassboxError(error) || error.field !== 'max_tokens' || !field || field === 'max_tokens')
      throw error;
    throw new GlassboxError(error.code, error.shortMessage.replace(/^max_tokens/, field), {
      field,
      details: error.details,
      cause: error,
    });
  }
}

function randomRequestId(): Hex {
  return keccak256(toHex(randomBytes(32)));
}

/** The text a client saw: cut before the first stop string (the decoded ids hold it). */
function visible(decoded: string, stop: readonly string[]): { text: string; cut: boolean } {
  let at = -1;
  for (const s of stop) {
    const i = decoded.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at < 0 ? { text: decoded, cut: false } : { text: decoded.slice(0, at), cut: true };
}

/**
 * How much of a prefix's decoded text a continuation's stream counts as already shown: all of it
 * but an incomplete character and a suffix that could begin a stop string, which the text stream
 * holds back (src/runtime/llm/text.ts) and the continuation then delivers.
 */
function shownLength(decoded: string, stop: readonly string[]): number {
  let end = decoded.length;
  while (end > 0 && decoded[end - 1] === '\uFFFD') end--;
  let hold = 0;
  for (const s of stop)
    for (let k = Math.min(s.length - 1, end); k > hold; k--)
      if (decoded.slice(0, end).endsWith(s.slice(0, k))) {
        hold = k;
        break;
      }
  return end - hold;
}

function llmNames(models: ReadonlyMap<string, ModelPackage>): string[] {
  return [...models.values()]
    .filter((m) => m.manifest.format === 'llm')
    .map((m) => `${m.manifest.name} (${m.id})`);
}
