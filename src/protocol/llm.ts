import { keccak256, type Hex } from 'viem';
import { z } from 'zod';
import { canonicalJson, canonicalJsonBytes } from './canonical-json.js';
import { dataHash } from './data.js';
import { decodeTensors, encodeTensors } from './encoding.js';
import { GlassboxError } from './errors.js';
import { isModelId } from './manifest.js';
import { parseWith } from './validate.js';

/*
 * The data of a token receipt (docs/protocol.md, LLM generations): an LLM generation gets the same
 * EIP-712 Receipt as an ONNX inference, with inputs and outputs held in the canonical tensor encoding
 * so that stored data, batch commitments and availability challenges work unchanged. The input data
 * carries the normalized request itself next to the prompt ids, so a re-checker or the explorer
 * starts from the stored bytes alone.
 */

export const CHAT_ROLES = ['system', 'developer', 'user', 'assistant', 'tool'] as const;
export type LlmChatMessage = { readonly role: (typeof CHAT_ROLES)[number]; readonly content: string };

/**
 * Sampling parameters with every default filled in: what paramsHash covers. The same shape as
 * src/runtime/engine.ts's SamplingParams (the protocol doesn't import the runtime).
 */
export type LlmParams = {
  readonly temperature: number;
  readonly topP: number;
  readonly topK: number;
  /** uint64: the client's, or one the provider picked and discloses. */
  readonly seed: bigint;
  readonly maxTokens: number;
  readonly stop: readonly string[];
};

/** A request reduced to what determines its output (and its logprobs), defaults filled in. */
export type LlmRequest = (
  | { readonly kind: 'chat'; readonly messages: readonly LlmChatMessage[] }
  | { readonly kind: 'completion'; readonly prompt: string }
) & {
  /** The model id (CID). */
  readonly model: string;
  readonly params: LlmParams;
  /** Present (0-20) when the client asked for logprobs: how many alternatives per token. */
  readonly topLogprobs?: number;
  /**
   * Output ids an earlier provider already produced for this same request (docs/protocol.md,
   * Continuing a generation): generation goes on after them, and `params.maxTokens` counts only
   * the tokens still to come. Absent when empty, so a request without one hashes as before.
   */
  readonly prefixIds?: readonly number[];
};

export const MAX_STOP_STRINGS = 4;
export const MAX_STOP_CHARS = 256;
export const MAX_TOP_LOGPROBS = 20;
const UINT64_MAX = (1n << 64n) - 1n;

// Checks shared by the wire form (snake_case, what clients send) and the stored form, so both give
// the same errors for the same value.
const temperature = z
  .number({ error: 'must be a number' })
  .min(0, 'must be in [0, 2]')
  .max(2, 'must be in [0, 2]');
const topP = z.number({ error: 'must be a number' }).gt(0, 'must be in (0, 1]').max(1, 'must be in (0, 1]');
const topK = z
  .number({ error: 'must be a number' })
  .int('must be an integer ≥ 0')
  .min(0, 'must be an integer ≥ 0');
const maxTokens = z
  .number({ error: 'must be a number' })
  .int('must be an integer ≥ 1')
  .min(1, 'must be an integer ≥ 1');
const stopString = z
  .string({ error: 'must be a string' })
  .min(1, 'must not be empty')
  .max(MAX_STOP_CHARS, `must be at most ${MAX_STOP_CHARS} characters`);
const stopList = z.array(stopString).max(MAX_STOP_STRINGS, `may hold at most ${MAX_STOP_STRINGS} strings`);
const seedDecimal = z
  .string()
  .regex(/^(0|[1-9]\d{0,19})$/, 'must be a uint64 (a decimal string)')
  .refine((v) => BigInt(v) <= UINT64_MAX, 'must be a uint64 (a decimal string)');
const seedWire = z.union([z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), seedDecimal], {
  error: 'must be a uint64 (an integer, or a decimal string beyond 2^53)',
});
const model = z.string({ error: 'must be a model id' }).refine(isModelId, 'is not a model id (a CID)');
const message = z.strictObject({
  role: z.enum(CHAT_ROLES, { error: `must be one of ${CHAT_ROLES.join(', ')}` }),
  content: z.string({ error: 'must be a string' }),
});
const topLogprobs = z
  .number({ error: 'must be a number' })
  .int(`must be an integer in [0, ${MAX_TOP_LOGPROBS}]`)
  .min(0, `must be an integer in [0, ${MAX_TOP_LOGPROBS}]`)
  .max(MAX_TOP_LOGPROBS, `must be an integer in [0, ${MAX_TOP_LOGPROBS}]`);

/** The wire field of a continuation's prefix, as every refusal of it names it. */
export const PREFIX_FIELD = 'glassbox.prefix_ids';
const INT32_MAX = 0x7fffffff;

/**
 * The prefix ids of a continuation as sent: an array of token ids (int32 ≥ 0). Elements are checked
 * here rather than by an element schema so that every refusal names `glassbox.prefix_ids` itself
 * (the index is in the message), whichever way it is wrong.
 */
export const prefixIdsSchema = z
  .array(z.unknown(), { error: 'must be an array of token ids' })
  .superRefine((ids, ctx) => {
    const bad = ids.findIndex(
      (id) => !(Number.isInteger(id) && (id as number) >= 0 && (id as number) <= INT32_MAX),
    );
    if (bad >= 0)
      ctx.addIssue({
        code: 'custom',
        message: `item ${bad} (${JSON.stringify(ids[bad])}) is not a token id (an integer ≥ 0)`,
      });
  });

/** The prompt and sampling fields of a chat or completion body as clients send them (OpenAI names). */
const wireFields = {
  model,
  temperature: temperature.optional(),
  top_p: topP.optional(),
  top_k: topK.optional(),
  seed: seedWire.optional(),
  max_tokens: maxTokens.optional(),
  stop: z.union([stopString, stopList], { error: 'must be a string or an array of strings' }).optional(),
  logprobs: z.boolean({ error: 'must be true or false' }).optional(),
  top_logprobs: topLogprobs.optional(),
  // The rest of `glassbox` (token_ids) is the route's business: it changes no output.
  glassbox: z.object({ prefix_ids: prefixIdsSchema.optional() }, { error: 'must be an object' }).optional(),
};
const wireSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('chat'),
    messages: z.array(message).min(1, 'must hold at least one message'),
    ...wireFields,
  }),
  z.object({ kind: z.literal('completion'), prompt: z.string({ error: 'must be a string' }), ...wireFields }),
]);

/** A request as parsed from a client's body, before its prompt is tokenized (defaults not yet filled in). */
export type LlmRequestDraft = z.output<typeof wireSchema>;

/**
 * Validates the fields of a chat or completion body that determine the output (`kind` says which
 * route it came in on; other fields of the body are the route's business and are not looked at).
 * REQUEST_INVALID naming the field (`top_p`, `stop.2`, `messages.0.role`) otherwise.
 */
export function parseLlmRequest(body: unknown): LlmRequestDraft {
  const draft = parseWith(wireSchema, body, { code: 'REQUEST_INVALID' });
  if (draft.top_logprobs !== undefined && draft.logprobs !== true)
    throw new GlassboxError('REQUEST_INVALID', 'top_logprobs: is only allowed with logprobs: true', {
      field: 'top_logprobs',
    });
  return draft;
}

/** A fresh uniformly random uint64, for a request without a seed (the provider discloses it). */
export function randomSeed(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (BigInt(words[1]!) << 32n) | BigInt(words[0]!);
}

/** What a prefix is checked against: the model's vocabulary and its EOS ids (its llm manifest). */
export type LlmVocabulary = { readonly vocabSize: number; readonly eosTokenIds: readonly number[] };

export type CompleteLlmRequestContext = {
  readonly promptTokens: number;
  readonly contextLength: number;
  readonly seed?: () => bigint;
  /** Needed when the draft carries a prefix: its ids must be in the vocabulary and hold no EOS. */
  readonly vocabulary?: LlmVocabulary;
};

/**
 * The normalized request of a draft once its prompt is tokenized: defaults filled in (temperature
 * 1, top_p 1, top_k 0, max_tokens = contextLength − promptTokens − prefix length, stop [], a random
 * seed). A prompt (and prefix) that leaves no room for one token, max_tokens beyond the context, a
 * prefix id outside the vocabulary or an EOS in the prefix is REQUEST_INVALID naming the field.
 * (A prefix whose text already completes a stop string is the engine's to refuse: it needs the
 * tokenizer.)
 */
export function completeLlmRequest(draft: LlmRequestDraft, context: CompleteLlmRequestContext): LlmRequest {
  const prefixIds = draft.glassbox?.prefix_ids as number[] | undefined;
  const prefix = prefixIds?.length ?? 0;
  if (prefixIds && prefix > 0) {
    if (!context.vocabulary) throw new Error('bug: a prefix is checked against the model vocabulary');
    checkPrefix(prefixIds, context.vocabulary);
  }
  const room = context.contextLength - context.promptTokens - prefix;
  const promptField = draft.kind === 'chat' ? 'messages' : 'prompt';
  if (room < 1) {
    const field = prefix > 0 && context.promptTokens < context.contextLength ? PREFIX_FIELD : promptField;
    const what =
      prefix > 0
        ? `the prompt is ${context.promptTokens} tokens and the prefix ${prefix}`
        : `the prompt is ${context.promptTokens} tokens`;
    throw new GlassboxError(
      'REQUEST_INVALID',
      `${field}: ${what}, the model's context holds ${context.contextLength}: no room for output`,
      {
        field,
        details: {
          promptTokens: context.promptTokens,
          prefixTokens: prefix,
          contextLength: context.contextLength,
        },
      },
    );
  }
  if (draft.max_tokens !== undefined && draft.max_tokens > room) {
    // The prefix is named when it is what pushed max_tokens over: without it, the request fits.
    const field = prefix > 0 && draft.max_tokens <= room + prefix ? PREFIX_FIELD : 'max_tokens';
    const what =
      prefix > 0
        ? `the prompt is ${context.promptTokens} tokens and the prefix ${prefix}`
        : `the prompt is ${context.promptTokens} tokens`;
    throw new GlassboxError(
      'REQUEST_INVALID',
      `${field === PREFIX_FIELD ? `${field}: with max_tokens ${draft.max_tokens}, it` : `max_tokens: ${draft.max_tokens}`} does not fit: ${what} of a ${context.contextLength}-token context (at most ${room} tokens to generate)`,
      {
        field,
        details: {
          promptTokens: context.promptTokens,
          prefixTokens: prefix,
          contextLength: context.contextLength,
        },
      },
    );
  }
  const params: LlmParams = {
    temperature: draft.temperature ?? 1,
    topP: draft.top_p ?? 1,
    topK: draft.top_k ?? 0,
    seed: draft.seed === undefined ? (context.seed ?? randomSeed)() : BigInt(draft.seed),
    maxTokens: draft.max_tokens ?? room,
    stop: draft.stop === undefined ? [] : typeof draft.stop === 'string' ? [draft.stop] : draft.stop,
  };
  const head =
    draft.kind === 'chat'
      ? { kind: 'chat' as const, messages: draft.messages }
      : { kind: 'completion' as const, prompt: draft.prompt };
  return {
    ...head,
    model: draft.model,
    params,
    ...(draft.logprobs === true ? { topLogprobs: draft.top_logprobs ?? 0 } : {}),
    ...(prefixIds && prefix > 0 ? { prefixIds: [...prefixIds] } : {}),
  };
}

/**
 * A prefix fits the model: every id in the vocabulary, and no EOS (an EOS ends a generation, so a
 * prefix holding one was no unfinished generation). REQUEST_INVALID naming `glassbox.prefix_ids`.
 */
export function checkPrefix(prefixIds: readonly number[], vocabulary: LlmVocabulary): void {
  const eos = new Set(vocabulary.eosTokenIds);
  prefixIds.forEach((id, i) => {
    if (!(Number.isInteger(id) && id >= 0 && id < vocabulary.vocabSize))
      throw new GlassboxError(
        'REQUEST_INVALID',
        `${PREFIX_FIELD}: item ${i} (${id}) is not a token id of the model (0..${vocabulary.vocabSize - 1})`,
        { field: PREFIX_FIELD, details: { index: i, id } },
      );
    if (eos.has(id))
      throw new GlassboxError(
        'REQUEST_INVALID',
        `${PREFIX_FIELD}: item ${i} is the EOS id ${id}: a generation that ended cannot be continued`,
        { field: PREFIX_FIELD, details: { index: i, id } },
      );
  });
}

/**
 * The token counts a generation is charged for: a continuation's prefix is charged as input (the
 * provider prefills it like the prompt), so promptTokens = prompt ids + prefix ids.
 */
export function llmTokenCounts(
  request: Pick<LlmRequest, 'prefixIds'>,
  promptTokens: number,
  outputTokens: number,
): TokenCounts {
  return { promptTokens: promptTokens + (request.prefixIds?.length ?? 0), completionTokens: outputTokens };
}

/** The stored form (canonical JSON) of a normalized request; see `canonicalLlmRequest`. */
const storedParams = z.strictObject({
  temperature,
  topP,
  topK,
  seed: seedDecimal,
  maxTokens,
  stop: stopList,
});
const storedFields = {
  model,
  params: storedParams,
  logprobs: z.literal(true).optional(),
  top_logprobs: topLogprobs.optional(),
  prefix_ids: prefixIdsSchema.min(1, 'is stored only when not empty').optional(),
};
const storedSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('chat'), messages: z.array(message).min(1), ...storedFields }),
  z.strictObject({ kind: z.literal('completion'), prompt: z.string(), ...storedFields }),
]);

/** The JSON value of a normalized request (seed as a decimal string), before canonicalization. */
function requestJson(request: LlmRequest): Record<string, unknown> {
  const { params } = request;
  return {
    kind: request.kind,
    ...(request.kind === 'chat'
      ? { messages: request.messages.map(({ role, content }) => ({ role, content })) }
      : { prompt: request.prompt }),
    model: request.model,
    params: {
      temperature: params.temperature,
      topP: params.topP,
      topK: params.topK,
      seed: params.seed.toString(),
      maxTokens: params.maxTokens,
      stop: [...params.stop],
    },
    ...(request.topLogprobs === undefined ? {} : { logprobs: true, top_logprobs: request.topLogprobs }),
    // only when not empty: a request without a prefix keeps the hash it had before prefixes existed
    ...(request.prefixIds === undefined || request.prefixIds.length === 0
      ? {}
      : { prefix_ids: [...request.prefixIds] }),
  };
}

/**
 * RFC 8785 canonical JSON of the normalized request: `{kind, messages | prompt, model, params:
 * {temperature, topP, topK, seed (decimal string), maxTokens, stop}, logprobs?, top_logprobs?,
 * prefix_ids?}` (`prefix_ids` only when not empty).
 * Validated first, so that no request that could not be decoded back is ever stored.
 */
export function canonicalLlmRequest(request: LlmRequest): string {
  const json = requestJson(request);
  parseWith(storedSchema, json, { code: 'REQUEST_INVALID', root: 'request' });
  return canonicalJson(json);
}

/** The request back from its stored JSON; REQUEST_INVALID naming the field (`request.params.topP`). */
export function parseCanonicalLlmRequest(text: string): LlmRequest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new GlassboxError('REQUEST_INVALID', 'request: the stored request is not JSON', {
      field: 'request',
      cause,
    });
  }
  const stored = parseWith(storedSchema, json, { code: 'REQUEST_INVALID', root: 'request' });
  const head =
    stored.kind === 'chat'
      ? { kind: 'chat' as const, messages: stored.messages }
      : { kind: 'completion' as const, prompt: stored.prompt };
  if (stored.top_logprobs !== undefined && stored.logprobs !== true)
    throw new GlassboxError('REQUEST_INVALID', 'request.top_logprobs: is only allowed with logprobs: true', {
      field: 'request.top_logprobs',
    });
  const request: LlmRequest = {
    ...head,
    model: stored.model,
    params: { ...stored.params, seed: BigInt(stored.params.seed) },
    ...(stored.logprobs === true ? { topLogprobs: stored.top_logprobs ?? 0 } : {}),
    ...(stored.prefix_ids === undefined ? {} : { prefixIds: stored.prefix_ids as number[] }),
  };
  // One request has one stored form: anything else would give one generation two input hashes.
  if (canonicalLlmRequest(request) !== text)
    throw new GlassboxError(
      'REQUEST_INVALID',
      'request: the stored request is not in canonical JSON (RFC 8785)',
      {
        field: 'request',
      },
    );
  return request;
}

function tokenIds(ids: readonly number[], field: string): Int32Array {
  ids.forEach((id, i) => {
    if (!(Number.isInteger(id) && id >= 0 && id <= 0x7fffffff))
      throw new GlassboxError('REQUEST_INVALID', `${field}.${i}: ${id} is not a token id (an int32 ≥ 0)`, {
        field: `${field}.${i}`,
      });
  });
  return Int32Array.from(ids);
}

/** The input data of a token receipt: encodeTensors({prompt_ids: int32 [n], request: string [1]}). */
export function llmInputData(request: LlmRequest, promptIds: readonly number[]): Uint8Array {
  const ids = tokenIds(promptIds, 'prompt_ids');
  return encodeTensors({
    prompt_ids: { dtype: 'int32', shape: [ids.length], data: ids },
    request: { dtype: 'string', shape: [1], data: [canonicalLlmRequest(request)] },
  });
}

/** The receipt's inputHash: dataHash of the input data. */
export function llmInputHash(request: LlmRequest, promptIds: readonly number[]): Hex {
  return dataHash(llmInputData(request, promptIds));
}

/** The output data of a token receipt: encodeTensors({output_ids: int32 [m]}), EOS included. */
export function llmOutputData(outputIds: readonly number[]): Uint8Array {
  const ids = tokenIds(outputIds, 'output_ids');
  return encodeTensors({ output_ids: { dtype: 'int32', shape: [ids.length], data: ids } });
}

/** The receipt's outputHash: dataHash of the output data. */
export function llmOutputHash(outputIds: readonly number[]): Hex {
  return dataHash(llmOutputData(outputIds));
}

/**
 * The receipt's paramsHash: keccak256 of the canonical JSON of {temperature, top_p, top_k, seed
 * (decimal string), max_tokens, stop}. It discloses the seed a provider picked.
 */
export function llmParamsHash(params: LlmParams): Hex {
  return keccak256(
    canonicalJsonBytes({
      temperature: params.temperature,
      top_p: params.topP,
      top_k: params.topK,
      seed: params.seed.toString(),
      max_tokens: params.maxTokens,
      stop: [...params.stop],
    }),
  );
}

/** Per-token prices of an llm offer, in base units. */
export type TokenPrices = { readonly inputPrice: bigint; readonly outputPrice: bigint };
/** completionTokens counts the output ids, the EOS (or the token that completed a stop string) included. */
export type TokenCounts = { readonly promptTokens: number; readonly completionTokens: number };

/** A generation's price: promptTokens × inputPrice + completionTokens × outputPrice. */
export function tokenPrice(counts: TokenCounts, prices: TokenPrices): bigint {
  for (const [field, n] of Object.entries(counts))
    if (!(Number.isSafeInteger(n) && n >= 0))
      throw new GlassboxError('RECEIPT_INVALID', `${field}: ${n} is not a token count`, { field });
  return (
    BigInt(counts.promptTokens) * prices.inputPrice + BigInt(counts.completionTokens) * prices.outputPrice
  );
}

function decodeOnly(bytes: Uint8Array, what: string) {
  try {
    return decodeTensors(bytes);
  } catch (cause) {
    throw new GlassboxError('TENSOR_DECODE', `the ${what} data is not a canonical tensor encoding`, {
      cause,
    });
  }
}

function intVector(tensors: ReturnType<typeof decodeTensors>, name: string, what: string): number[] {
  const t = tensors[name];
  if (!t || t.dtype !== 'int32' || t.shape.length !== 1)
    throw new GlassboxError('TENSOR_DECODE', `the ${what} data has no int32 vector ${name}`, { field: name });
  return Array.from(t.data);
}

/**
 * The request and prompt ids back from a token receipt's input data: where a re-checker and the
 * explorer start. TENSOR_DECODE if the tensors are not exactly {prompt_ids, request}; REQUEST_INVALID
 * if the request is not a valid normalized request in canonical JSON.
 */
export function decodeLlmInput(bytes: Uint8Array): { request: LlmRequest; promptIds: number[] } {
  const tensors = decodeOnly(bytes, 'input');
  const names = Object.keys(tensors).sort();
  if (names.join() !== 'prompt_ids,request')
    throw new GlassboxError(
      'TENSOR_DECODE',
      `the input data holds ${names.join(', ')}, not prompt_ids and request`,
      {
        field: 'inputs',
      },
    );
  const promptIds = intVector(tensors, 'prompt_ids', 'input');
  const request = tensors.request!;
  if (request.dtype !== 'string' || request.shape.length !== 1 || request.shape[0] !== 1)
    throw new GlassboxError('TENSOR_DECODE', 'the input data request is not one string', {
      field: 'request',
    });
  return { request: parseCanonicalLlmRequest(request.data[0]!), promptIds };
}

/** The output ids back from a token receipt's output data. */
export function decodeLlmOutput(bytes: Uint8Array): number[] {
  const tensors = decodeOnly(bytes, 'output');
  const names = Object.keys(tensors);
  if (names.join() !== 'output_ids')
    throw new GlassboxError('TENSOR_DECODE', `the output data holds ${names.join(', ')}, not output_ids`, {
      field: 'outputs',
    });
  return intVector(tensors, 'output_ids', 'output');
}
