import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
} from 'fastify';
import { validatorCompiler } from 'fastify-type-provider-zod';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { Address } from 'viem';
import {
  abortOnClose,
  AnswerStream,
  chatFormat,
  completionFormat,
  openAiError,
  openAiErrorHandler,
  restOf,
  usageOf,
  type AnswerFormat,
} from '../api/openai-answer.js';
import type {
  ChatCompletionRequest,
  ChatLogprob,
  CompletionLogprobs,
  CompletionRequest,
} from '../api/openai.js';
import { toGlassboxError } from '../api/problem.js';
import { serve, wireSerializerCompiler } from '../api/serve.js';
import { GlassboxError } from '../protocol/errors.js';
import {
  chat,
  completion,
  listLlmModels,
  type Client,
  type GenerationDelta,
  type GenerationResult,
  type GenerationStream,
  type LlmMode,
  type TokenPriceCap,
} from '../sdk/index.js';
import { explainFailure, gatewayStatus, modelNotFound } from './errors.js';
import { extraOf, modelJson, modeName } from './extra.js';
import { gatewayRoutes, type GatewayExtra } from './routes.js';

/*
 * The gateway (issue 14, D4): a local OpenAI-compatible endpoint in front of the network. Each
 * request is one SDK call (src/sdk/chat.ts: discovery, the price cap, hedging, failover mid-stream,
 * verification, vouchers); this file is only the transport, and answers in exactly the provider's
 * shapes (src/api/openai-answer.ts) with the gateway's own `glassbox` field (./routes.ts) and the
 * x-glassbox-* headers. A client that goes away aborts its SDK call.
 */

export type GatewayOptions = {
  readonly client: Client;
  readonly mode?: LlmMode;
  readonly maxPrice: TokenPriceCap;
  readonly hedgeAfterMs?: number | false;
  readonly timeoutMs?: number;
  readonly firstTokenTimeoutMs?: number;
  /** Providers this gateway never routes to (the SDK's `exclude` on every call). */
  readonly exclude?: readonly Address[];
  /** When set, requests must carry `Authorization: Bearer <apiKey>` (a gateway on loopback needs none). */
  readonly apiKey?: string;
  readonly logger: Logger;
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  readonly bodyLimitBytes?: number;
};

export type Gateway = {
  readonly app: FastifyInstance;
  /** `http://host:port`, without /v1. */
  readonly url: string;
  close(): Promise<void>;
};

export const GATEWAY_HEADERS = {
  providers: 'x-glassbox-providers',
  receipts: 'x-glassbox-receipts',
  verified: 'x-glassbox-verified',
  mode: 'x-glassbox-mode',
} as const;

const DEFAULT_BODY_LIMIT = 8 * 1024 * 1024;

/** Builds the gateway, listens on host:port, and answers until `close`. */
export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const app = await buildGatewayApp(options);
  const url = await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 8787 });
  return { app, url, close: () => app.close() };
}

/** The gateway's fastify app, not listening (tests inject into it). */
export async function buildGatewayApp(options: GatewayOptions): Promise<FastifyInstance> {
  const bodyLimitBytes = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit: bodyLimitBytes,
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: 'idle',
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(wireSerializerCompiler);
  app.setErrorHandler(openAiErrorHandler({ bodyLimitBytes }, gatewayStatus));
  app.setNotFoundHandler((request, reply) => {
    const error = new GlassboxError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`);
    return reply.status(404).send(openAiError(error, 404));
  });
  if (options.apiKey !== undefined) {
    const expected = Buffer.from(options.apiKey);
    app.addHook('onRequest', async (request) => {
      const given = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];
      const buffer = Buffer.from(given ?? '');
      if (buffer.length !== expected.length || !timingSafeEqual(buffer, expected))
        throw new GlassboxError(
          'SIGNATURE_INVALID',
          "no or a wrong API key: send the gateway's --api-key as the bearer token",
          {
            field: 'authorization',
          },
        );
    });
  }
  await app.register(async (v1) => gatewayRoutesPlugin(v1, options), { prefix: '/v1' });
  return app;
}

async function gatewayRoutesPlugin(app: FastifyInstance, options: GatewayOptions): Promise<void> {
  const started = Math.floor(Date.now() / 1000);
  const call = (reply: FastifyReply, stream: boolean) => ({
    maxPrice: options.maxPrice,
    ...(options.mode === undefined ? {} : { mode: options.mode }),
    ...(options.hedgeAfterMs === undefined ? {} : { hedgeAfterMs: options.hedgeAfterMs }),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    ...(options.firstTokenTimeoutMs === undefined
      ? {}
      : { firstTokenTimeoutMs: options.firstTokenTimeoutMs }),
    ...(options.exclude === undefined ? {} : { exclude: options.exclude }),
    signal: abortOnClose(reply),
    stream,
  });

  serve(app, gatewayRoutes.chatCompletions, async (request, reply) => {
    const body = request.body;
    refuseQuorumStream(options.mode, body);
    const format = chatFormat<GatewayExtra>(body.model, body.logprobs === true);
    const params = { ...call(reply, body.stream === true), body: sdkBody(body) };
    return answer(reply, body, modeName(options.mode), format, chatLogprobs, () =>
      params.stream
        ? chat(options.client, { ...params, stream: true })
        : chat(options.client, { ...params, stream: false }),
    );
  });

  serve(app, gatewayRoutes.completions, async (request, reply) => {
    const body = request.body;
    refuseQuorumStream(options.mode, body);
    const format = completionFormat<GatewayExtra>(body.model, body.logprobs != null);
    const params = { ...call(reply, body.stream === true), body: sdkBody(body) };
    return answer(reply, body, modeName(options.mode), format, legacyLogprobs, () =>
      params.stream
        ? completion(options.client, { ...params, stream: true })
        : completion(options.client, { ...params, stream: false }),
    );
  });

  serve(app, gatewayRoutes.models, async () => ({
    object: 'list' as const,
    data: (await listLlmModels(options.client)).map((m) => modelJson(m, started)),
  }));

  serve(app, gatewayRoutes.modelById, async (request) => {
    const { id } = request.params;
    const models = await listLlmModels(options.client);
    const found = models.find((m) => m.id === id) ?? models.find((m) => m.name === id);
    if (!found) throw modelNotFound(id, 'id');
    return modelJson(found, started);
  });
}

/** A quorum compares whole answers, so it can't stream: refused before any provider is asked. */
function refuseQuorumStream(mode: LlmMode | undefined, body: { stream?: boolean | null }): void {
  if (body.stream === true && typeof mode === 'object')
    throw new GlassboxError(
      'REQUEST_INVALID',
      `stream: this gateway runs a quorum of ${mode.quorum}, which answers whole answers only; send stream: false`,
      { field: 'stream' },
    );
}

/** The body the SDK gets: the client's, less how the gateway answers it (streaming is the SDK call's). */
function sdkBody<B extends { stream?: unknown; stream_options?: unknown }>(
  body: B,
): Omit<B, 'stream' | 'stream_options'> {
  const { stream: _stream, stream_options: _options, ...rest } = body;
  return rest;
}

/** A delta's logprobs (the provider chunk's, in the route's shape) as the format's piece. */
const chatLogprobs = (logprobs: unknown): readonly ChatLogprob[] =>
  (logprobs as { content?: ChatLogprob[] | null } | undefined)?.content ?? [];
const legacyLogprobs = (logprobs: unknown): CompletionLogprobs | null =>
  (logprobs as CompletionLogprobs | undefined) ?? null;

type Body = Pick<ChatCompletionRequest | CompletionRequest, 'stream' | 'stream_options'>;

/** Calls the SDK and answers what it returns, whole or as a stream. */
async function answer<Whole, Chunk, L>(
  reply: FastifyReply,
  body: Body,
  mode: string,
  format: AnswerFormat<Whole, Chunk, L, GatewayExtra>,
  piece: (logprobs: unknown) => L,
  run: () => GenerationStream | Promise<GenerationResult>,
): Promise<FastifyReply> {
  const answerId = randomBytes(16).toString('hex');
  if (body.stream !== true) {
    const result = await (run() as Promise<GenerationResult>).catch((error: unknown) => {
      throw explainFailure(error);
    });
    const extra = extraOf(result);
    reply.headers({
      [GATEWAY_HEADERS.providers]: [...new Set(result.segments.map((s) => s.provider))].join(','),
      [GATEWAY_HEADERS.receipts]: String(result.receipts.length),
      [GATEWAY_HEADERS.verified]: String(result.report.ok),
      [GATEWAY_HEADERS.mode]: result.report.mode,
    });
    return reply.send(
      format.whole({
        id: `${format.prefix}-${answerId}`,
        text: result.text,
        finishReason: result.finishReason,
        logprobs: piece(result.logprobs),
        usage: usageOf(result.usage.promptTokens, result.usage.completionTokens),
        glassbox: extra,
      }),
    );
  }

  const generation = run() as GenerationStream;
  // Whatever the iteration throws, the result rejects with too: it is read once the deltas ended.
  generation.result.catch(() => undefined);
  const stream = new AnswerStream(reply, format, body.stream_options?.include_usage === true);
  const open = () => stream.open(answerId, { [GATEWAY_HEADERS.mode]: mode });
  let sent = '';
  try {
    for await (const delta of generation as AsyncIterable<GenerationDelta>) {
      await open();
      sent += delta.text;
      await stream.token(delta.text, piece(delta.logprobs));
    }
    const result = await generation.result;
    await open();
    const usage = usageOf(result.usage.promptTokens, result.usage.completionTokens);
    await stream.finish(restOf(result.text, sent), result.finishReason, usage, extraOf(result));
    return stream.end();
  } catch (failure) {
    const error = explainFailure(failure);
    if (!stream.opened) throw error;
    const problem = toGlassboxError(error, { bodyLimitBytes: 0 });
    reply.log.error({ err: error }, 'generation failed mid-stream');
    await stream.fail(openAiError(problem, gatewayStatus(problem)));
    return stream.end();
  }
}
