import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Address, Hex } from 'viem';
import {
  REQUEST_ID_HEADER,
  SSE_TYPE,
  VOUCHER_HEADER,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type ChatLogprob,
  type Completion,
  type CompletionChunk,
  type CompletionLogprobs,
  type GlassboxChunkIds,
  type GlassboxExtra,
  type OpenAiError,
  type OpenAiModel,
  type Usage,
} from '../../api/openai.js';
import { routes } from '../../api/routes.js';
import { bytes32, parseWire, signedVoucherJsonSchema, type SignedVoucherJson } from '../../protocol/api.js';
import { GlassboxError, isGlassboxError } from '../../protocol/errors.js';
import { verifySessionKey } from '../../protocol/session.js';
import type { ChatMessage, LlmPrompt, TokenLogprob } from '../../runtime/engine.js';
import type { NodeContext } from '../context.js';
import type { GenerateRequest, GenerateResult, GeneratedToken, SamplingRequest } from '../generate.js';
import { statusOf, toGlassboxError } from '../problem.js';
import { serve } from './serve.js';

/*
 * The OpenAI-compatible routes (src/api/routes.ts, schemas in src/api/openai.ts): POST
 * /v1/chat/completions and /v1/completions, answered whole or streamed as server-sent events, and
 * GET /v1/models/:id. The generation itself is src/node/generate.ts; this file is the transport:
 * the session key, the headers, OpenAI's answer and chunk shapes, and OpenAI's error body.
 *
 * The client is proven by its session key (`Authorization: Bearer gbk.…`, src/protocol/session.ts)
 * in `preValidation`, before the rate limiter keys on it (as /v1/infer does with its signature, so
 * that forged keys count against the sender's IP, never against the victim's rate); a request that
 * fails it is refused in the handler with a 401.
 *
 * A stream opens (status 200, text/event-stream) with the first token, so that whatever is refused
 * before (a bad key, an unknown model, a prompt over the context, credit) is an ordinary error
 * answer with its status. Then one chunk per token; once the generation is over and its receipt is
 * on disk, the finish_reason chunk, the usage chunk (only with stream_options.include_usage), a
 * chunk `{choices: [], glassbox: {receipt, seed, …}}` and `data: [DONE]`. A failure after the
 * stream opened is a `data: {"error": {...}}` event, which the openai clients raise as an APIError.
 * The connection closing before the answer ended aborts the generation (src/node/generate.ts).
 */

type Outcome = { readonly client: Address } | { readonly error: unknown };
const outcomes = new WeakMap<FastifyRequest, Outcome>();

/** The client a request to the OpenAI routes proved with its session key, if it did. */
export function sessionClient(request: FastifyRequest): Address | undefined {
  const outcome = outcomes.get(request);
  return outcome && 'client' in outcome ? outcome.client : undefined;
}

export async function openAiRoutes(app: FastifyInstance, { ctx }: { ctx: NodeContext }): Promise<void> {
  app.setErrorHandler((error, request, reply) => {
    const problem = toGlassboxError(error, { bodyLimitBytes: ctx.bodyLimitBytes }, 'body');
    const status = openAiStatus(problem);
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ code: problem.code, field: problem.field }, 'request refused');
    return reply.status(status).send(openAiError(problem, status));
  });

  const preValidation = async (request: FastifyRequest) => {
    try {
      outcomes.set(request, { client: await authenticate(ctx, request) });
    } catch (error) {
      outcomes.set(request, { error });
    }
  };
  // Vouchers that came with requests answered without a receipt are written once the answer left.
  const onResponse = (request: FastifyRequest, _reply: unknown, done: () => void) => {
    try {
      ctx.payments.flush();
    } catch (error) {
      request.log.error({ err: error }, 'could not write the vouchers received with requests');
    }
    done();
  };
  const client = (request: FastifyRequest): Address => {
    const outcome = outcomes.get(request);
    if (!outcome || 'error' in outcome)
      throw outcome?.error ?? new Error('the request was not authenticated');
    return outcome.client;
  };

  serve(
    app,
    routes.chatCompletions,
    async (request, reply) => {
      const body = request.body;
      const common = commonRequest(request, client(request), body, {
        kind: 'chat',
        messages: body.messages.map(chatMessage),
      });
      const generation = {
        ...common,
        ...(body.max_completion_tokens != null ? { maxTokensField: 'max_completion_tokens' } : {}),
        sampling: {
          ...common.sampling,
          ...(body.max_completion_tokens != null ? { maxTokens: body.max_completion_tokens } : {}),
        },
        ...(body.logprobs ? { logprobs: body.top_logprobs ?? 0 } : {}),
      };
      return answer(ctx, request, reply, generation, body, chatFormat(body.model, body.logprobs === true));
    },
    { preValidation, onResponse },
  );

  serve(
    app,
    routes.completions,
    async (request, reply) => {
      const body = request.body;
      const prompt = typeof body.prompt === 'string' ? body.prompt : body.prompt[0]!;
      const common = commonRequest(request, client(request), body, { kind: 'completion', prompt });
      const generation = { ...common, ...(body.logprobs != null ? { logprobs: body.logprobs } : {}) };
      return answer(
        ctx,
        request,
        reply,
        generation,
        body,
        completionFormat(body.model, body.logprobs != null),
      );
    },
    { preValidation, onResponse },
  );

  serve(app, routes.modelById, async (request) => {
    const pkg = ctx.generator.findModel(request.params.id);
    return openAiModel(ctx, pkg.id, pkg.manifest.name);
  });
}

/** OpenAI's model object for a served model. */
export function openAiModel(ctx: NodeContext, id: string, name: string): OpenAiModel {
  return { id, object: 'model', created: Math.floor(ctx.startedAt / 1000), owned_by: ctx.provider, name };
}

/** Proves the client by its session key, for this provider, now. */
async function authenticate(ctx: NodeContext, request: FastifyRequest): Promise<Address> {
  if (ctx.state() !== 'ready')
    throw new GlassboxError('NODE_UNAVAILABLE', `the provider is ${ctx.state()}; retry later`);
  const header = request.headers.authorization;
  const key = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
  if (!key)
    throw new GlassboxError(
      'SIGNATURE_INVALID',
      'no session key: send Authorization: Bearer gbk.<client>.<expiresAt>.<signature> (glassbox key)',
      { field: 'authorization' },
    );
  try {
    return await verifySessionKey(key, {
      provider: ctx.provider,
      domain: ctx.receiptDomain,
      now: Date.now(),
    });
  } catch (error) {
    if (!isGlassboxError(error)) throw error;
    throw new GlassboxError('SIGNATURE_INVALID', `the session key is refused: ${error.shortMessage}`, {
      field: 'authorization',
      cause: error,
    });
  }
}

type Common = Pick<
  ChatCompletionRequest,
  'model' | 'max_tokens' | 'temperature' | 'top_p' | 'top_k' | 'seed' | 'stop' | 'glassbox'
>;

/** What both routes ask of the generation: the client, the headers, the model and the sampling. */
function commonRequest(
  request: FastifyRequest,
  client: Address,
  body: Common,
  prompt: LlmPrompt,
): GenerateRequest & { sampling: SamplingRequest } {
  const requestId = header(request, REQUEST_ID_HEADER);
  const voucher = header(request, VOUCHER_HEADER);
  const sampling: SamplingRequest = {
    ...(body.temperature != null ? { temperature: body.temperature } : {}),
    ...(body.top_p != null ? { topP: body.top_p } : {}),
    ...(body.top_k != null ? { topK: Math.max(0, body.top_k) } : {}),
    ...(body.seed != null ? { seed: seedOf(body.seed) } : {}),
    ...(body.max_tokens != null ? { maxTokens: body.max_tokens } : {}),
    ...(body.stop != null ? { stop: typeof body.stop === 'string' ? [body.stop] : body.stop } : {}),
  };
  const prefixIds = body.glassbox?.prefix_ids;
  return {
    client,
    model: body.model,
    prompt,
    sampling,
    ...(prefixIds == null ? {} : { prefixIds: prefixIds as number[] }),
    ...(requestId === undefined
      ? {}
      : { requestId: parseWire(bytes32, requestId, REQUEST_ID_HEADER) as Hex }),
    ...(voucher === undefined ? {} : { voucher: parseVoucher(voucher) }),
  };
}

function seedOf(seed: number | string): bigint {
  const value = BigInt(seed);
  if (value >= 2n ** 64n)
    throw new GlassboxError('REQUEST_INVALID', 'seed: must be below 2^64 (a uint64)', { field: 'seed' });
  return value;
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function parseVoucher(text: string): SignedVoucherJson {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new GlassboxError('REQUEST_INVALID', `the ${VOUCHER_HEADER} header is not JSON`, {
      field: VOUCHER_HEADER,
    });
  }
  return parseWire(signedVoucherJsonSchema, json, VOUCHER_HEADER);
}

function chatMessage(m: ChatCompletionRequest['messages'][number]): ChatMessage {
  const content =
    typeof m.content === 'string' ? m.content : (m.content ?? []).map((part) => part.text).join('');
  return { role: m.role, content };
}

/** How one route shapes its answer, its chunks and its logprobs. */
type Format<Whole, Chunk> = {
  /** The answer id's prefix (`chatcmpl`, `cmpl`). */
  readonly prefix: string;
  whole(result: GenerateResult, extra: GlassboxExtra, usage: Usage): Whole;
  /** The chunk before the first token (chat: the role), if any. */
  first(id: string, created: number): Chunk | undefined;
  token(id: string, created: number, text: string, token: GeneratedToken | undefined): Chunk | undefined;
  finish(id: string, created: number, text: string, reason: 'stop' | 'length'): Chunk;
  tail(id: string, created: number, fields: { usage?: Usage | null; glassbox?: GlassboxExtra }): Chunk;
};

const created = () => Math.floor(Date.now() / 1000);
const openAiId = (prefix: string, requestId: Hex) => `${prefix}-${requestId.slice(2)}`;

function chatFormat(model: string, logprobs: boolean): Format<ChatCompletion, ChatCompletionChunk> {
  const chunk = (
    id: string,
    at: number,
    choices: ChatCompletionChunk['choices'],
    more = {},
  ): ChatCompletionChunk => ({
    id,
    object: 'chat.completion.chunk',
    created: at,
    model,
    choices,
    ...more,
  });
  return {
    prefix: 'chatcmpl',
    whole: (r, glassbox, usage) => ({
      id: openAiId('chatcmpl', r.requestId),
      object: 'chat.completion',
      created: created(),
      model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: r.text, refusal: null },
          logprobs: logprobs ? { content: r.tokens.flatMap(chatLogprob), refusal: null } : null,
          finish_reason: finishOf(r),
        },
      ],
      usage,
      glassbox,
    }),
    first: (id, at) =>
      chunk(id, at, [
        { index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null },
      ]),
    token: (id, at, text, token) => {
      const lp = logprobs && token ? chatLogprob(token) : [];
      if (text === '' && lp.length === 0) return undefined;
      return chunk(id, at, [
        {
          index: 0,
          delta: { content: text },
          logprobs: logprobs ? { content: lp } : null,
          finish_reason: null,
        },
      ]);
    },
    finish: (id, at, text, reason) =>
      chunk(id, at, [
        { index: 0, delta: text === '' ? {} : { content: text }, logprobs: null, finish_reason: reason },
      ]),
    tail: (id, at, fields) => chunk(id, at, [], fields),
  };
}

function completionFormat(model: string, logprobs: boolean): Format<Completion, CompletionChunk> {
  const chunk = (
    id: string,
    at: number,
    choices: CompletionChunk['choices'],
    more = {},
  ): CompletionChunk => ({
    id,
    object: 'text_completion',
    created: at,
    model,
    choices,
    ...more,
  });
  return {
    prefix: 'cmpl',
    whole: (r, glassbox, usage) => ({
      id: openAiId('cmpl', r.requestId),
      object: 'text_completion',
      created: created(),
      model,
      choices: [
        {
          index: 0,
          text: r.text,
          logprobs: logprobs ? legacyLogprobs(r.tokens) : null,
          finish_reason: finishOf(r),
        },
      ],
      usage,
      glassbox,
    }),
    first: () => undefined,
    token: (id, at, text, token) => {
      const lp = logprobs && token?.logprob ? legacyLogprobs([token]) : null;
      if (text === '' && !lp) return undefined;
      return chunk(id, at, [{ index: 0, text, logprobs: lp, finish_reason: null }]);
    },
    finish: (id, at, text, reason) =>
      chunk(id, at, [{ index: 0, text, logprobs: null, finish_reason: reason }]),
    tail: (id, at, fields) => chunk(id, at, [], fields),
  };
}

/** An aborted answer reaches nobody; whatever is answered ended by stop or length. */
const finishOf = (r: GenerateResult): 'stop' | 'length' => (r.finishReason === 'length' ? 'length' : 'stop');

const bytesOf = (lp: TokenLogprob) => [...lp.bytes];

function chatLogprob(token: GeneratedToken): ChatLogprob[] {
  const lp = token.logprob;
  if (!lp) return [];
  return [
    {
      token: lp.token,
      logprob: lp.logprob,
      bytes: bytesOf(lp),
      top_logprobs: lp.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytesOf(t) })),
    },
  ];
}

function legacyLogprobs(tokens: readonly GeneratedToken[]): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let offset = 0;
  for (const { logprob: lp } of tokens) {
    if (!lp) continue;
    out.tokens.push(lp.token);
    out.token_logprobs.push(lp.logprob);
    out.top_logprobs!.push(Object.fromEntries(lp.top.map((t) => [t.token, t.logprob])));
    out.text_offset.push(offset);
    offset += lp.token.length;
  }
  return out;
}

function extraOf(r: GenerateResult): GlassboxExtra {
  return {
    receipt: r.receipt!,
    seed: r.seed.toString(),
    promptTokenIds: [...r.promptIds],
    outputTokenIds: [...r.outputIds],
    ...(r.replayed ? { replayed: true } : {}),
  };
}

/** A continuation's prefix is charged as input: prompt_tokens counts it (docs/protocol.md). */
const usageOf = (r: GenerateResult): Usage => ({
  prompt_tokens: r.promptIds.length + r.prefixIds.length,
  completion_tokens: r.outputIds.length,
  total_tokens: r.promptIds.length + r.prefixIds.length + r.outputIds.length,
});

type StreamOptions = {
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  glassbox?: { token_ids?: boolean | null } | null;
};

/** Runs the generation and answers it, whole or as a stream. */
async function answer<Whole, Chunk>(
  ctx: NodeContext,
  request: FastifyRequest,
  reply: FastifyReply,
  generation: GenerateRequest,
  body: StreamOptions,
  format: Format<Whole, Chunk>,
): Promise<FastifyReply> {
  const aborter = new AbortController();
  // The connection closing before the answer ended: the client went away.
  reply.raw.on('close', () => {
    if (!reply.raw.writableEnded) aborter.abort();
  });
  const signal = aborter.signal;
  if (!body.stream) {
    const result = await ctx.generator.generate({ ...generation, signal });
    if (!result.receipt) return reply; // aborted before anything was delivered: nobody to answer
    reply.header('x-request-id', result.requestId);
    if (result.replayed) reply.header('glassbox-replayed', 'true');
    return reply.send(format.whole(result, extraOf(result), usageOf(result)));
  }

  const includeUsage = body.stream_options?.include_usage === true;
  const stream = new EventStream(reply);
  const at = created();
  let id = '';
  let sent = '';
  const usageField = includeUsage ? { usage: null } : {};
  // glassbox.token_ids: each chunk with choices carries the ids consumed since the previous one, so
  // a gateway knows the exact prefix to continue from if this provider fails mid-stream
  const withIds = body.glassbox?.token_ids === true;
  let pending: number[] = [];
  const idsField = (): { glassbox?: GlassboxChunkIds } => {
    if (!withIds) return {};
    const token_ids = pending;
    pending = [];
    return { glassbox: { token_ids } };
  };
  const open = async (requestId: Hex) => {
    if (stream.opened) return;
    id = openAiId(format.prefix, requestId.toLowerCase() as Hex);
    stream.open({ 'x-request-id': requestId.toLowerCase() });
    const first = format.first(id, at);
    if (first) await stream.send({ ...first, ...usageField, ...idsField() });
  };
  try {
    const requestId = generation.requestId ?? randomId();
    const result = await ctx.generator.generate({
      ...generation,
      requestId,
      signal,
      onToken: async (token) => {
        await open(requestId);
        pending.push(token.id);
        const chunk = format.token(id, at, token.text, token);
        sent += token.text;
        if (chunk) await stream.send({ ...chunk, ...usageField, ...idsField() });
      },
    });
    if (!result.receipt || signal.aborted) return stream.end();
    await open(result.requestId);
    // What the last tokens held back (a possible stop string that did not come) ends the text.
    const rest = result.replayed
      ? result.text
      : result.text.startsWith(sent)
        ? result.text.slice(sent.length)
        : '';
    if (result.replayed) pending = [...result.outputIds]; // no token went out one by one
    await stream.send({ ...format.finish(id, at, rest, finishOf(result)), ...usageField, ...idsField() });
    if (includeUsage) await stream.send(format.tail(id, at, { usage: usageOf(result) }));
    await stream.send(format.tail(id, at, { ...usageField, glassbox: extraOf(result) }));
    await stream.done();
    return stream.end();
  } catch (error) {
    if (!stream.opened) throw error;
    const problem = toGlassboxError(error, { bodyLimitBytes: ctx.bodyLimitBytes });
    request.log.error({ err: error }, 'generation failed mid-stream');
    await stream.send(openAiError(problem, openAiStatus(problem))).catch(() => undefined);
    return stream.end();
  }
}

/** A request id for a client that named none: the stream names it (x-request-id) before it ends. */
const randomId = (): Hex => `0x${randomBytes(32).toString('hex')}`;

/** A server-sent event stream on the raw response, opened on demand, honouring backpressure. */
class EventStream {
  opened = false;
  private readonly res: ServerResponse;
  constructor(private readonly reply: FastifyReply) {
    this.res = reply.raw;
  }

  open(headers: Record<string, string>): void {
    // Fastify no longer sends this answer; the headers it set (glassbox-provider) go along.
    this.reply.hijack();
    this.res.writeHead(200, {
      ...(this.reply.getHeaders() as Record<string, string>),
      ...headers,
      'content-type': `${SSE_TYPE}; charset=utf-8`,
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    this.opened = true;
  }

  async send(data: unknown): Promise<void> {
    await this.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  async done(): Promise<void> {
    await this.write('data: [DONE]\n\n');
  }

  end(): FastifyReply {
    if (this.opened && !this.res.writableEnded) this.res.end();
    return this.reply;
  }

  private async write(text: string): Promise<void> {
    if (this.res.destroyed || this.res.writableEnded) return;
    if (this.res.write(text)) return;
    await new Promise<void>((resolve) => {
      const go = () => {
        this.res.off('drain', go);
        this.res.off('close', go);
        resolve();
      };
      this.res.on('drain', go);
      this.res.on('close', go);
    });
  }
}

/**
 * The status of an error on these routes. A refused session key is 401; a payment the client owes,
 * 402; an unknown model, 404 (code model_not_found); the rest as on every route (src/node/problem.ts).
 */
function openAiStatus(error: GlassboxError): number {
  if (error.field === 'authorization') return 401;
  return statusOf(error.code, error.field);
}

const OPENAI_TYPE: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'insufficient_quota',
  404: 'invalid_request_error',
  409: 'invalid_request_error',
  413: 'invalid_request_error',
  422: 'invalid_request_error',
  429: 'rate_limit_error',
};

/** OpenAI's error body: the openai clients raise it as the APIError subclass of its status. */
export function openAiError(error: GlassboxError, status: number): OpenAiError {
  const param = error.field === undefined ? null : error.field.replace(/^body\./, '');
  const code =
    error.code === 'MODEL_NOT_FOUND'
      ? 'model_not_found'
      : status === 401
        ? 'invalid_api_key'
        : error.code.toLowerCase();
  return {
    error: {
      message: error.shortMessage.replace(/^body\./, ''),
      type: OPENAI_TYPE[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error'),
      param,
      code,
    },
  };
}
