import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { GlassboxError } from '../protocol/errors.js';
import {
  SSE_TYPE,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatLogprob,
  type Completion,
  type CompletionChunk,
  type CompletionLogprobs,
  type GlassboxExtra,
  type OpenAiError,
  type Usage,
} from './openai.js';
import { statusOf, toGlassboxError, type ProblemLimits } from './problem.js';

/*
 * How an OpenAI-compatible answer is written, whole or as server-sent events, and how its errors
 * look: shared by the provider's routes (src/node/routes/openai.ts), which answer from their own
 * generation, and the gateway's (src/gateway), which answer from the SDK's. Both build the same
 * chunks in the same order, so a client cannot tell them apart but by the `glassbox` field:
 *
 *   the role chunk (chat only), one chunk per token text, the finish_reason chunk, the usage chunk
 *   (only with stream_options.include_usage), `{choices: [], glassbox}` and `data: [DONE]`.
 *
 * A stream opens (status 200) with its first token, so whatever is refused before is an ordinary
 * error answer with its status; a failure after that is a `data: {"error": {...}}` event, which
 * the openai clients raise as an APIError.
 */

export type FinishReason = 'stop' | 'length';

/** One token's log-probability as a generation reports it (with its most likely alternatives). */
export type TokenLogprobs = {
  readonly token: string;
  readonly logprob: number;
  readonly bytes: readonly number[];
  readonly top: readonly {
    readonly token: string;
    readonly logprob: number;
    readonly bytes: readonly number[];
  }[];
};

/** What a whole answer is made of; `logprobs` in the format's own shape (see the formats). */
export type AnswerParts<L, X> = {
  readonly id: string;
  readonly text: string;
  readonly finishReason: FinishReason;
  readonly logprobs: L;
  readonly usage: Usage;
  readonly glassbox: X;
};

/**
 * How one route shapes its answer and its chunks. `L` is a piece of logprobs in the route's shape:
 * the chat format's list of token entries, the completions format's legacy object (or null).
 */
export type AnswerFormat<Whole, Chunk, L, X> = {
  /** The answer id's prefix (`chatcmpl`, `cmpl`). */
  readonly prefix: string;
  /** What a token carries when logprobs were not asked for, or it has none. */
  readonly noLogprobs: L;
  whole(parts: AnswerParts<L, X>): Whole;
  /** The chunk before the first token (chat: the role), if any. */
  first(id: string, created: number): Chunk | undefined;
  /** A token's chunk; none when it carries neither text nor logprobs. */
  token(id: string, created: number, text: string, logprobs: L): Chunk | undefined;
  finish(id: string, created: number, text: string, reason: FinishReason): Chunk;
  tail(id: string, created: number, fields: { usage?: Usage | null; glassbox?: X }): Chunk;
};

/** The provider's chat answer, or the gateway's with its own `glassbox` field. */
export type ChatAnswer<X> = Omit<ChatCompletion, 'glassbox'> & { glassbox: X };
export type CompletionAnswer<X> = Omit<Completion, 'glassbox'> & { glassbox: X };

/**
 * What of a generation's text the streamed chunks have not carried: the text the last tokens held
 * back (a possible stop string that did not come). Nothing when the text is not a continuation of
 * what was sent (a replayed answer's text is sent whole by its caller).
 */
export const restOf = (text: string, sent: string): string =>
  text.startsWith(sent) ? text.slice(sent.length) : '';

export const createdNow = (): number => Math.floor(Date.now() / 1000);

export const usageOf = (promptTokens: number, completionTokens: number): Usage => ({
  prompt_tokens: promptTokens,
  completion_tokens: completionTokens,
  total_tokens: promptTokens + completionTokens,
});

export function chatFormat<X = GlassboxExtra>(
  model: string,
  logprobs: boolean,
): AnswerFormat<ChatAnswer<X>, ChatCompletionChunk<X>, readonly ChatLogprob[], X> {
  const chunk = (
    id: string,
    at: number,
    choices: ChatCompletionChunk['choices'],
    more = {},
  ): ChatCompletionChunk<X> => ({
    id,
    object: 'chat.completion.chunk',
    created: at,
    model,
    choices,
    ...more,
  });
  return {
    prefix: 'chatcmpl',
    noLogprobs: [],
    whole: (a) => ({
      id: a.id,
      object: 'chat.completion',
      created: createdNow(),
      model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: a.text, refusal: null },
          logprobs: logprobs ? { content: [...a.logprobs], refusal: null } : null,
          finish_reason: a.finishReason,
        },
      ],
      usage: a.usage,
      glassbox: a.glassbox,
    }),
    first: (id, at) =>
      chunk(id, at, [
        { index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null },
      ]),
    token: (id, at, text, lp) => {
      if (text === '' && (!logprobs || lp.length === 0)) return undefined;
      return chunk(id, at, [
        {
          index: 0,
          delta: { content: text },
          logprobs: logprobs ? { content: [...lp] } : null,
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

export function completionFormat<X = GlassboxExtra>(
  model: string,
  logprobs: boolean,
): AnswerFormat<CompletionAnswer<X>, CompletionChunk<X>, CompletionLogprobs | null, X> {
  const chunk = (
    id: string,
    at: number,
    choices: CompletionChunk['choices'],
    more = {},
  ): CompletionChunk<X> => ({ id, object: 'text_completion', created: at, model, choices, ...more });
  return {
    prefix: 'cmpl',
    noLogprobs: null,
    whole: (a) => ({
      id: a.id,
      object: 'text_completion',
      created: createdNow(),
      model,
      choices: [
        {
          index: 0,
          text: a.text,
          logprobs: logprobs ? (a.logprobs ?? emptyLegacyLogprobs()) : null,
          finish_reason: a.finishReason,
        },
      ],
      usage: a.usage,
      glassbox: a.glassbox,
    }),
    first: () => undefined,
    token: (id, at, text, lp) => {
      const sent = logprobs ? lp : null;
      if (text === '' && !sent) return undefined;
      return chunk(id, at, [{ index: 0, text, logprobs: sent, finish_reason: null }]);
    },
    finish: (id, at, text, reason) =>
      chunk(id, at, [{ index: 0, text, logprobs: null, finish_reason: reason }]),
    tail: (id, at, fields) => chunk(id, at, [], fields),
  };
}

/** One token in the chat format's logprobs. */
export const chatLogprob = (lp: TokenLogprobs): ChatLogprob => ({
  token: lp.token,
  logprob: lp.logprob,
  bytes: [...lp.bytes],
  top_logprobs: lp.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: [...t.bytes] })),
});

const emptyLegacyLogprobs = (): CompletionLogprobs => ({
  tokens: [],
  token_logprobs: [],
  top_logprobs: [],
  text_offset: [],
});

/** The legacy completions' logprobs of these tokens, text offsets counted from `offset`. */
export function legacyLogprobs(tokens: readonly TokenLogprobs[], offset = 0): CompletionLogprobs {
  const out = emptyLegacyLogprobs();
  let at = offset;
  for (const lp of tokens) {
    out.tokens.push(lp.token);
    out.token_logprobs.push(lp.logprob);
    out.top_logprobs!.push(Object.fromEntries(lp.top.map((t) => [t.token, t.logprob])));
    out.text_offset.push(at);
    at += lp.token.length;
  }
  return out;
}

/**
 * An abort signal that fires when the connection closes before the answer ended: the client went
 * away, so whatever generates for it should stop.
 */
export function abortOnClose(reply: FastifyReply): AbortSignal {
  const aborter = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableEnded) aborter.abort();
  });
  return aborter.signal;
}

/** Extra members of a chunk, computed when it is sent. */
type More = () => Record<string, unknown>;
const none: More = () => ({});

/**
 * One streamed answer: opened on demand (with the headers known by then), then the chunks of
 * `format` in the order above. Every write honours backpressure; a closed connection swallows them.
 */
export class AnswerStream<Chunk, L, X> {
  private readonly events: EventStream;
  private id = '';
  private readonly created = createdNow();
  private readonly usageField: { usage?: null };

  constructor(
    reply: FastifyReply,
    private readonly format: AnswerFormat<unknown, Chunk, L, X>,
    private readonly includeUsage: boolean,
  ) {
    this.events = new EventStream(reply);
    this.usageField = includeUsage ? { usage: null } : {};
  }

  get opened(): boolean {
    return this.events.opened;
  }

  /**
   * Opens the stream (once) and sends the chunk before the first token. `more` (here, in `token`
   * and in `finish`): members a chunk with choices also carries, asked for lazily and only when that
   * chunk is sent (a provider's `glassbox.token_ids`).
   */
  async open(answerId: string, headers: Record<string, string>, more: More = none): Promise<void> {
    if (this.events.opened) return;
    this.id = `${this.format.prefix}-${answerId}`;
    this.events.open(headers);
    const first = this.format.first(this.id, this.created);
    if (first) await this.events.send({ ...first, ...this.usageField, ...more() });
  }

  async token(text: string, logprobs: L, more: More = none): Promise<void> {
    const chunk = this.format.token(this.id, this.created, text, logprobs);
    if (chunk) await this.events.send({ ...chunk, ...this.usageField, ...more() });
  }

  /** The finish_reason chunk (with what text was still held back), usage, `glassbox`, [DONE]. */
  async finish(
    rest: string,
    reason: FinishReason,
    usage: Usage,
    glassbox: X,
    more: More = none,
  ): Promise<void> {
    const { id, created, format } = this;
    await this.events.send({ ...format.finish(id, created, rest, reason), ...this.usageField, ...more() });
    if (this.includeUsage) await this.events.send(format.tail(id, created, { usage }));
    await this.events.send(format.tail(id, created, { ...this.usageField, glassbox }));
    await this.events.done();
  }

  /** A failure after the stream opened: an error event, and no [DONE]. */
  async fail(error: OpenAiError): Promise<void> {
    await this.events.send(error).catch(() => undefined);
  }

  end(): FastifyReply {
    return this.events.end();
  }
}

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
 * The status of an error on the OpenAI routes. A refused key (session key or gateway API key:
 * field `authorization`) is 401; a payment the client owes, 402; an unknown model, 404 (code
 * model_not_found); the rest as on every route (./problem.ts).
 */
export function openAiStatus(error: GlassboxError): number {
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

/**
 * The error handler of a server whose routes are all OpenAI's: every error, including the schema's
 * and the body limit's, answered in OpenAI's shape with its status (`status` may refine it).
 */
export function openAiErrorHandler(
  limits: ProblemLimits,
  status: (error: GlassboxError) => number = openAiStatus,
) {
  return (error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const problem = toGlassboxError(error, limits, 'body');
    const code = status(problem);
    if (code >= 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ code: problem.code, field: problem.field }, 'request refused');
    return reply.status(code).send(openAiError(problem, code));
  };
}
