import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { randomBytes } from 'node:crypto';
import type { Address, Hex } from 'viem';
import {
  abortOnClose,
  AnswerStream,
  chatFormat,
  chatLogprob,
  completionFormat,
  legacyLogprobs,
  openAiError,
  openAiErrorHandler,
  openAiStatus,
  restOf,
  usageOf,
  type AnswerFormat,
} from '../../api/openai-answer.js';
import {
  REQUEST_ID_HEADER,
  VOUCHER_HEADER,
  type ChatCompletionRequest,
  type GlassboxChunkIds,
  type GlassboxExtra,
  type OpenAiModel,
} from '../../api/openai.js';
import { toGlassboxError } from '../../api/problem.js';
import { routes } from '../../api/routes.js';
import { serve } from '../../api/serve.js';
import { bytes32, parseWire, signedVoucherJsonSchema, type SignedVoucherJson } from '../../protocol/api.js';
import { GlassboxError, isGlassboxError } from '../../protocol/errors.js';
import { verifySessionKey } from '../../protocol/session.js';
import type { ChatMessage, LlmPrompt } from '../../runtime/engine.js';
import type { NodeContext } from '../context.js';
import type { GenerateRequest, GenerateResult, GeneratedToken, SamplingRequest } from '../generate.js';

/*
 * The OpenAI-compatible routes (src/api/routes.ts, schemas in src/api/openai.ts): POST
 * /v1/chat/completions and /v1/completions, answered whole or streamed as server-sent events, and
 * GET /v1/models/:id. The generation itself is src/node/generate.ts; this file is the transport:
 * the session key, the headers, and the generation's tokens handed to OpenAI's answer and chunk
 * shapes (src/api/openai-answer.ts, shared with the gateway).
 *
 * The client is proven by its session key (`Authorization: Bearer gbk.…`, src/protocol/session.ts)
 * in `preValidation`, before the rate limiter keys on it (as /v1/infer does with its signature, so
 * that forged keys count against the sender's IP, never against the victim's rate); a request that
 * fails it is refused in the handler with a 401.
 *
 * A stream opens (status 200, text/event-stream) with the first token, so that whatever is refused
 * before (a bad key, an unknown model, a prompt over the context, credit) is an ordinary error
 * answer with its status. Then one chunk per token; the finish_reason chunk and the receipt chunk
 * `{choices: [], glassbox: {receipt, seed, …}}` once the generation is over and its receipt is on
 * disk. The connection closing before the answer ended aborts the generation (src/node/generate.ts).
 */

type Outcome = { readonly client: Address } | { readonly error: unknown };
const outcomes = new WeakMap<FastifyRequest, Outcome>();

/** The client a request to the OpenAI routes proved with its session key, if it did. */
export function sessionClient(request: FastifyRequest): Address | undefined {
  const outcome = outcomes.get(request);
  return outcome && 'client' in outcome ? outcome.client : undefined;
}

export async function openAiRoutes(app: FastifyInstance, { ctx }: { ctx: NodeContext }): Promise<void> {
  app.setErrorHandler(openAiErrorHandler({ bodyLimitBytes: ctx.bodyLimitBytes }));

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
      const format = chatFormat(body.model, body.logprobs === true);
      return answer(ctx, request, reply, generation, body, format, chatPiece, (r) =>
        logprobsOf(r).map(chatLogprob),
      );
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
      const format = completionFormat(body.model, body.logprobs != null);
      return answer(ctx, request, reply, generation, body, format, legacyPiece, (r) =>
        legacyLogprobs(logprobsOf(r)),
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

const openAiId = (requestId: Hex) => requestId.slice(2).toLowerCase();

/** An aborted answer reaches nobody; whatever is answered ended by stop or length. */
const finishOf = (r: GenerateResult): 'stop' | 'length' => (r.finishReason === 'length' ? 'length' : 'stop');

/** A token's logprobs in each route's shape. */
const chatPiece = (token: GeneratedToken) => (token.logprob ? [chatLogprob(token.logprob)] : []);
const legacyPiece = (token: GeneratedToken) => (token.logprob ? legacyLogprobs([token.logprob]) : null);
const logprobsOf = (r: GenerateResult) => r.tokens.flatMap((t) => (t.logprob ? [t.logprob] : []));

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
const usage = (r: GenerateResult) => usageOf(r.promptIds.length + r.prefixIds.length, r.outputIds.length);

type StreamOptions = {
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  glassbox?: { token_ids?: boolean | null } | null;
};

/** Runs the generation and answers it, whole or as a stream. */
async function answer<Whole, Chunk, L>(
  ctx: NodeContext,
  request: FastifyRequest,
  reply: FastifyReply,
  generation: GenerateRequest,
  body: StreamOptions,
  format: AnswerFormat<Whole, Chunk, L, GlassboxExtra>,
  piece: (token: GeneratedToken) => L,
  whole: (result: GenerateResult) => L,
): Promise<FastifyReply> {
  const signal = abortOnClose(reply);
  if (!body.stream) {
    const result = await ctx.generator.generate({ ...generation, signal });
    if (!result.receipt) return reply; // aborted before anything was delivered: nobody to answer
    reply.header('x-request-id', result.requestId);
    if (result.replayed) reply.header('glassbox-replayed', 'true');
    return reply.send(
      format.whole({
        id: openAiId(result.requestId),
        text: result.text,
        finishReason: finishOf(result),
        logprobs: whole(result),
        usage: usage(result),
        glassbox: extraOf(result),
      }),
    );
  }

  const stream = new AnswerStream(reply, format, body.stream_options?.include_usage === true);
  let sent = '';
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
  const open = (requestId: Hex) =>
    stream.open(openAiId(requestId), { 'x-request-id': requestId.toLowerCase() }, idsField);
  try {
    const requestId = generation.requestId ?? randomId();
    const result = await ctx.generator.generate({
      ...generation,
      requestId,
      signal,
      onToken: async (token) => {
        await open(requestId);
        pending.push(token.id);
        sent += token.text;
        await stream.token(token.text, piece(token), idsField);
      },
    });
    if (!result.receipt || signal.aborted) return stream.end();
    await open(result.requestId);
    // What the last tokens held back (a possible stop string that did not come) ends the text.
    const rest = result.replayed ? result.text : restOf(result.text, sent);
    if (result.replayed) pending = [...result.outputIds]; // no token went out one by one
    await stream.finish(rest, finishOf(result), usage(result), extraOf(result), idsField);
    return stream.end();
  } catch (error) {
    if (!stream.opened) throw error;
    const problem = toGlassboxError(error, { bodyLimitBytes: ctx.bodyLimitBytes });
    request.log.error({ err: error }, 'generation failed mid-stream');
    await stream.fail(openAiError(problem, openAiStatus(problem)));
    return stream.end();
  }
}

/** A request id for a client that named none: the stream names it (x-request-id) before it ends. */
const randomId = (): Hex => `0x${randomBytes(32).toString('hex')}`;
