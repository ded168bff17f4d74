import type { Address, Hex } from 'viem';
import { call, routeUrl, type ApiTarget } from '../api/client.js';
import {
  REQUEST_ID_HEADER,
  SSE_TYPE,
  VOUCHER_HEADER,
  glassboxExtraSchema,
  openAiErrorSchema,
} from '../api/openai.js';
import { routes } from '../api/routes.js';
import { PROVIDER_HEADER, parseProviderJson, voucherToJson } from '../protocol/api.js';
import { ErrorCodes, GlassboxError, isGlassboxError, type ErrorCode } from '../protocol/errors.js';
import { decodeLlmInput, decodeLlmOutput } from '../protocol/llm.js';
import type { SignedReceipt } from '../protocol/receipt.js';
import type { Client } from './client.js';
import { currentVoucher } from './payments.js';
import { createSessionKey } from './session.js';
import { target, type ProviderRef } from './transport.js';

/*
 * The SDK's side of a provider's OpenAI routes (src/node/routes/openai.ts) for chat.ts: always a
 * stream, with `glassbox.token_ids: true` so every chunk names the token ids behind its text (a
 * generation that breaks off is continued elsewhere from exactly those ids), and `include_usage`
 * so the counts the receipt charges can be compared with what the provider says it counted.
 * Authenticated by a session key per provider, kept in the client's state until shortly before it
 * expires; the voucher for what is owed so far rides along (pay-after: src/sdk/payments.ts).
 */

export type LlmRoute = 'chat' | 'completion';

/** How long a session key the SDK makes lives, and how long before its end it is replaced. */
export const SESSION_KEY_TTL_MS = 3_600_000;
const SESSION_KEY_RENEW_MS = 300_000;

/** What a provider's stream says, in order: deltas, then (once the receipt is on its disk) the end. */
export type LlmStreamEvent =
  | {
      readonly type: 'delta';
      readonly text: string;
      readonly tokenIds: readonly number[];
      readonly logprobs?: unknown;
      readonly finishReason?: 'stop' | 'length';
    }
  | {
      readonly type: 'end';
      readonly receipt: SignedReceipt;
      readonly seed: bigint;
      readonly promptIds: readonly number[] | undefined;
      readonly outputIds: readonly number[] | undefined;
      readonly usage: { readonly promptTokens: number; readonly completionTokens: number } | undefined;
      readonly replayed: boolean;
    };

export type PostGenerationParameters = {
  readonly route: LlmRoute;
  /** The OpenAI body as sent (the caller sets model, seed, max tokens and `glassbox.prefix_ids`). */
  readonly body: Readonly<Record<string, unknown>>;
  readonly requestId: Hex;
  readonly signal: AbortSignal;
  /** No bytes for this long (before the first chunk, or between two): the provider has stalled. */
  readonly stallMs: number;
};

/**
 * What a provider stored for a request (GET /v1/receipts/:id): its receipt and the output ids it
 * signed, for a stream that broke off (a provider that recorded the tokens it delivered before the
 * client went away). Undefined when it has none.
 */
export async function getGenerationReceipt(
  client: Client,
  provider: ProviderRef,
  requestId: Hex,
  timeoutMs: number,
): Promise<
  | {
      readonly receipt: SignedReceipt;
      readonly promptIds: readonly number[];
      readonly outputIds: readonly number[];
    }
  | undefined
> {
  try {
    const stored = await call(
      target(client, provider),
      routes.receipt,
      { params: { id: requestId } },
      { timeoutMs },
    );
    if (stored.outputs === undefined || stored.inputs === undefined) return undefined;
    const bytes = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return {
      receipt: stored.receipt,
      promptIds: decodeLlmInput(bytes(stored.inputs)).promptIds,
      outputIds: decodeLlmOutput(bytes(stored.outputs)),
    };
  } catch (error) {
    if (isGlassboxError(error, 'NOT_FOUND')) return undefined;
    throw error;
  }
}

/** A session key for `provider`, made once and reused until shortly before it expires. */
export async function sessionKeyFor(client: Client, provider: Address): Promise<string> {
  const cached = client.state.sessionKeys.get(provider);
  if (cached && cached.expiresAt - Date.now() > SESSION_KEY_RENEW_MS) return cached.key;
  const made = await createSessionKey(client, { provider, ttlMs: SESSION_KEY_TTL_MS });
  client.state.sessionKeys.set(provider, { key: made.key, expiresAt: made.expiresAt });
  return made.key;
}

/**
 * POSTs one generation and yields what its stream says. A refusal (any non-2xx) is a GlassboxError
 * with the provider's OpenAI error message, the code it names when it is one of ours, and
 * `details.status`; so is an error event mid-stream. A connection that breaks, a stall (`stallMs`)
 * or a stream that ends without its receipt is PROVIDER_UNAVAILABLE, PROVIDER_TIMEOUT or
 * PROVIDER_ERROR naming the provider. Cancelling `signal` ends the request (and the provider's
 * generation with it).
 */
export async function* postGeneration(
  client: Client,
  provider: ProviderRef,
  params: PostGenerationParameters,
): AsyncGenerator<LlmStreamEvent> {
  const to = target(client, provider);
  const route = params.route === 'chat' ? routes.chatCompletions : routes.completions;
  const url = routeUrl(to.endpoint, route, {});
  const [key, voucher] = await Promise.all([
    sessionKeyFor(client, provider.address),
    currentVoucher(client, provider),
  ]);
  const stall = new AbortController();
  const signal = AbortSignal.any([params.signal, stall.signal]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => stall.abort(), params.stallMs);
  };
  const fail = (cause: unknown): GlassboxError => {
    if (isGlassboxError(cause)) return cause;
    if (stall.signal.aborted && !params.signal.aborted)
      return new GlassboxError(
        'PROVIDER_TIMEOUT',
        `${to.name} sent nothing for ${params.stallMs} ms (stalled)`,
        { details: { provider: provider.address, stallMs: params.stallMs, stalled: true }, cause },
      );
    if (params.signal.aborted)
      return new GlassboxError('ABORTED', `the request to ${to.name} was cancelled`, {
        details: { provider: provider.address, aborted: true },
        cause,
      });
    return new GlassboxError('PROVIDER_UNAVAILABLE', `${to.name} broke off: ${describe(cause)}`, {
      details: { provider: provider.address },
      cause,
    });
  };
  arm();
  try {
    let response: Response;
    try {
      response = await client.options.fetch(url, {
        method: 'POST',
        headers: {
          ...client.options.headers,
          'content-type': 'application/json',
          accept: SSE_TYPE,
          authorization: `Bearer ${key}`,
          [REQUEST_ID_HEADER]: params.requestId,
          ...(voucher ? { [VOUCHER_HEADER]: JSON.stringify(voucherToJson(voucher)) } : {}),
        },
        body: JSON.stringify({ ...params.body, stream: true, stream_options: { include_usage: true } }),
        redirect: 'error',
        signal,
      });
    } catch (cause) {
      throw fail(cause);
    }
    const answeredAs = response.headers.get(PROVIDER_HEADER);
    if (answeredAs !== null && answeredAs.toLowerCase() !== provider.address.toLowerCase()) {
      await response.body?.cancel().catch(() => undefined);
      throw new GlassboxError(
        'PROVIDER_UNAVAILABLE',
        `${to.name} is not at its endpoint: ${provider.endpoint} answers as ${answeredAs}`,
        { details: { provider: provider.address, answeredAs, staleEndpoint: true } },
      );
    }
    if (!response.ok) throw await refusal(to, response);
    const type = response.headers.get('content-type') ?? '';
    if (!response.body || !type.startsWith(SSE_TYPE)) {
      await response.body?.cancel().catch(() => undefined);
      throw new GlassboxError(
        'PROVIDER_ERROR',
        `${to.name} answered a stream request with ${type || 'no content type'}, not ${SSE_TYPE}`,
        { details: { provider: provider.address } },
      );
    }
    let ended = false;
    const seen: StreamState = {};
    try {
      for await (const data of sseData(response.body, client.options.maxResponseBytes, to.name)) {
        arm();
        if (data === '[DONE]') break;
        const event = chunkEvent(to, data, seen);
        if (event === undefined) continue;
        if (event.type === 'end') ended = true;
        yield event;
      }
    } catch (cause) {
      throw fail(cause);
    }
    if (!ended)
      throw new GlassboxError('PROVIDER_ERROR', `${to.name} ended its stream without a receipt`, {
        details: { provider: provider.address },
      });
  } finally {
    clearTimeout(timer);
    // The consumer stopped reading (or something failed): close the connection, which ends the
    // provider's generation.
    stall.abort();
  }
}

function describe(cause: unknown): string {
  const outer = cause as { code?: unknown; cause?: { code?: string; message?: string } } | undefined;
  if (typeof outer?.code === 'string') return outer.code;
  return outer?.cause?.code ?? (cause instanceof Error ? cause.message : String(cause));
}

/** The status codes that say what went wrong when the OpenAI error's code is not one of ours. */
const STATUS_CODES: Readonly<Record<number, ErrorCode>> = {
  400: 'REQUEST_INVALID',
  401: 'SIGNATURE_INVALID',
  402: 'PAYMENT_REQUIRED',
  404: 'MODEL_NOT_FOUND',
  409: 'REQUEST_CONFLICT',
  413: 'REQUEST_TOO_LARGE',
  429: 'RATE_LIMITED',
  503: 'NODE_UNAVAILABLE',
};

/** A non-2xx answer as the GlassboxError its OpenAI error body names (read with a small cap). */
async function refusal(to: ApiTarget, response: Response): Promise<GlassboxError> {
  const status = response.status;
  let body: unknown;
  try {
    const text = await readCapped(response, 64 * 1024);
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return errorOf(to, status, body);
}

function errorOf(to: ApiTarget, status: number, body: unknown): GlassboxError {
  const parsed = openAiErrorSchema.safeParse(body);
  const error = parsed.success ? parsed.data.error : undefined;
  const named = error?.code?.toUpperCase();
  const code: ErrorCode =
    named !== undefined && named in ErrorCodes
      ? (named as ErrorCode)
      : (STATUS_CODES[status] ?? 'PROVIDER_ERROR');
  const message = error?.message.slice(0, 500) ?? `HTTP ${status} without an OpenAI error body`;
  return new GlassboxError(code, `${to.name} answered ${status}: ${message}`, {
    ...(error?.param ? { field: error.param } : {}),
    details: { provider: to.provider, status },
  });
}

async function readCapped(response: Response, maxBytes: number): Promise<string> {
  if (!response.body) return '';
  const decoder = new TextDecoder();
  let text = '';
  let bytes = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    bytes += chunk.byteLength;
    if (bytes > maxBytes) break;
    text += decoder.decode(chunk, { stream: true });
  }
  return text;
}

/**
 * The `data` of each event of a server-sent event stream (WHATWG HTML, 9.2.6): lines end in CRLF,
 * LF or CR; `data:` lines (one leading space dropped) accumulate, joined by LF, until a blank line
 * dispatches them; comments and other fields are skipped. At most `maxBytes` of stream are read.
 */
export async function* sseData(
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
  from: string,
): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  let bytes = 0;
  // A CR at the end of a chunk may be the first half of a CRLF: held until the next chunk says.
  const lines = function* (final: boolean): Generator<string> {
    for (;;) {
      const at = buffer.search(/[\r\n]/);
      if (at < 0 || (!final && at === buffer.length - 1 && buffer[at] === '\r')) return;
      const line = buffer.slice(0, at);
      buffer = buffer.slice(buffer[at] === '\r' && buffer[at + 1] === '\n' ? at + 2 : at + 1);
      yield line;
    }
  };
  const take = function* (line: string): Generator<string> {
    if (line === '') {
      if (data.length > 0) yield data.join('\n');
      data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
  };
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      if (bytes > maxBytes)
        throw new GlassboxError('RESPONSE_TOO_LARGE', `${from} streamed more than ${maxBytes} bytes`, {
          details: { maxBytes },
        });
      buffer += decoder.decode(value, { stream: true });
      for (const line of lines(false)) yield* take(line);
    }
    buffer += decoder.decode();
    for (const line of lines(true)) yield* take(line);
    // An event not followed by a blank line at the end of the stream is not dispatched (the spec).
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

type ChunkJson = {
  readonly error?: unknown;
  readonly choices?: readonly {
    readonly delta?: { readonly content?: unknown };
    readonly text?: unknown;
    readonly logprobs?: unknown;
    readonly finish_reason?: unknown;
  }[];
  readonly usage?: { readonly prompt_tokens?: unknown; readonly completion_tokens?: unknown } | null;
  readonly glassbox?: { readonly token_ids?: unknown; readonly receipt?: unknown };
};

/** What one stream said before its end: the usage chunk comes just before the receipt's. */
type StreamState = { usage?: { promptTokens: number; completionTokens: number } };

/**
 * One chunk as an event: a delta (content, its token ids, its logprobs, the finish reason), the end
 * (the receipt chunk), or nothing (the role chunk, a usage chunk). An error event is thrown.
 */
function chunkEvent(to: ApiTarget, data: string, seen: StreamState): LlmStreamEvent | undefined {
  let json: ChunkJson;
  try {
    json = JSON.parse(data) as ChunkJson;
  } catch {
    throw new GlassboxError('PROVIDER_ERROR', `${to.name} streamed an event that is not JSON`, {
      details: { provider: to.provider, data: data.slice(0, 200) },
    });
  }
  if (typeof json !== 'object' || json === null)
    throw new GlassboxError('PROVIDER_ERROR', `${to.name} streamed an event that is not an object`);
  if (json.error !== undefined) throw errorOf(to, 502, json);
  if (json.usage && typeof json.usage === 'object') {
    const { prompt_tokens: p, completion_tokens: c } = json.usage;
    if (Number.isSafeInteger(p) && Number.isSafeInteger(c))
      seen.usage = { promptTokens: p as number, completionTokens: c as number };
  }
  if (json.glassbox && 'receipt' in json.glassbox) {
    const extra = parseProviderJson(glassboxExtraSchema, json.glassbox);
    return {
      type: 'end',
      receipt: extra.receipt,
      seed: BigInt(extra.seed),
      promptIds: extra.promptTokenIds,
      outputIds: extra.outputTokenIds,
      usage: seen.usage,
      replayed: extra.replayed === true,
    };
  }
  const choice = json.choices?.[0];
  if (!choice) return undefined;
  const text = typeof choice.delta?.content === 'string' ? choice.delta.content : choice.text;
  const ids = json.glassbox?.token_ids;
  if (ids !== undefined && !(Array.isArray(ids) && ids.every((id) => Number.isSafeInteger(id) && id >= 0)))
    throw new GlassboxError('PROVIDER_ERROR', `${to.name} streamed token_ids that are not token ids`, {
      field: 'glassbox.token_ids',
      details: { provider: to.provider },
    });
  const finish = choice.finish_reason;
  if (finish !== null && finish !== undefined && finish !== 'stop' && finish !== 'length')
    throw new GlassboxError('PROVIDER_ERROR', `${to.name} streamed finish_reason ${String(finish)}`, {
      field: 'finish_reason',
    });
  const tokenIds = (ids as number[] | undefined) ?? [];
  const content = typeof text === 'string' ? text : '';
  if (content === '' && tokenIds.length === 0 && finish == null && choice.logprobs == null) return undefined;
  return {
    type: 'delta',
    text: content,
    tokenIds,
    ...(choice.logprobs == null ? {} : { logprobs: choice.logprobs }),
    ...(finish == null ? {} : { finishReason: finish }),
  };
}
