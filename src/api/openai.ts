import { z } from 'zod';
import { prefixIdsSchema } from '../protocol/llm.js';
import { signedReceiptJsonSchema } from '../protocol/receipt.js';

/*
 * The OpenAI-compatible routes' wire shapes (issue 13 point 7; ../shared/research/llm-verification.md
 * section 4): POST /v1/chat/completions and /v1/completions, their answers, stream chunks and
 * OpenAI's error body, so that the official `openai` clients work against a provider unchanged.
 *
 * What a request may ask is what the protocol can replay (docs/protocol.md, LLM generations): text
 * messages, max tokens, stop strings, the seed and the sampler's temperature, top_p and top_k. What
 * it can't serve is refused with a 400 naming the field, never silently dropped: n > 1, tools,
 * a response_format other than text, penalties and logit biases (the sampler is fixed by the
 * protocol, so they would make an answer that no re-check reproduces). Fields it does not know are
 * ignored, as vLLM does, so that newer clients keep working.
 */

/** The body of an OpenAI error answer: what the openai clients read into their APIError. */
export const openAiErrorSchema = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    /** The offending request field (`messages.0.content`, `max_tokens`), or null. */
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
});
export type OpenAiError = z.infer<typeof openAiErrorSchema>;

/** The request id a client may choose (bytes32), so that a retry is answered once and charged once. */
export const REQUEST_ID_HEADER = 'glassbox-request-id';
/** A cumulative voucher (JSON) paying this provider, carried beside an OpenAI request. */
export const VOUCHER_HEADER = 'glassbox-voucher';
export const SSE_TYPE = 'text/event-stream';

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool'] as const;

/** Text content parts only: an image or audio part is refused naming its type. */
const contentPart = z.object({
  type: z.literal('text', { error: 'only text content parts ({"type": "text"}) are served' }),
  text: z.string({ error: 'is not a string' }),
});

const messageSchema = z
  .object({
    role: z.enum(ROLES, { error: `is not one of ${ROLES.join(', ')}` }),
    content: z
      .union([z.string(), z.array(contentPart).min(1, 'is empty')], {
        error: 'is not a string or an array of text content parts',
      })
      .nullable()
      .optional(),
    name: z.string().optional(),
    tool_calls: z.unknown().optional(),
  })
  .superRefine((m, ctx) => {
    if (m.tool_calls !== undefined && m.tool_calls !== null)
      ctx.addIssue({
        code: 'custom',
        path: ['tool_calls'],
        message: 'tool calls are not served by this provider',
      });
    if ((m.content === undefined || m.content === null) && m.role !== 'assistant')
      ctx.addIssue({ code: 'custom', path: ['content'], message: 'is required' });
  });
export type ChatMessageWire = z.infer<typeof messageSchema>;

const nullable = <S extends z.ZodType>(schema: S) => schema.nullable().optional();

/** A whole number in bounds; `what` says what the bound means. */
const integer = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .number({ error: 'is not a number' })
    .int('is not a whole number')
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);

/**
 * The seed: a uint64. JSON numbers are exact only to 2^53, so a larger seed may come as a decimal
 * string (the answer's `glassbox.seed` discloses it as one).
 */
const seedSchema = z.union([integer(0), z.string().regex(/^\d{1,20}$/, 'is not a decimal uint64')], {
  error: 'is not a non-negative whole number (or a decimal string) below 2^64',
});

/** What both routes share: the model, the sampler, the stop rule, streaming, and what is refused. */
const commonFields = {
  model: z
    .string({ error: 'is required: a model id (CID) or a name GET /v1/models lists' })
    .min(1, 'is empty'),
  stream: nullable(z.boolean({ error: 'is not a boolean' })),
  stream_options: nullable(z.object({ include_usage: nullable(z.boolean({ error: 'is not a boolean' })) })),
  max_tokens: nullable(integer(1)),
  temperature: nullable(
    z.number({ error: 'is not a number' }).min(0, 'must be at least 0').max(2, 'must be at most 2'),
  ),
  top_p: nullable(
    z.number({ error: 'is not a number' }).gt(0, 'must be above 0').max(1, 'must be at most 1'),
  ),
  /** An extra (vLLM's): 0 (or vLLM's -1) keeps every token. */
  top_k: nullable(integer(-1)),
  seed: nullable(seedSchema),
  stop: nullable(
    z.union([z.string(), z.array(z.string()).max(4, 'holds more than 4 stop strings')], {
      error: 'is not a string or an array of up to 4 strings',
    }),
  ),
  n: nullable(z.number({ error: 'is not a number' }).refine((n) => n === 1, 'only n = 1 is served')),
  frequency_penalty: nullable(
    z
      .number()
      .refine((v) => v === 0, 'is not served (the sampler is fixed by the protocol): send 0 or omit it'),
  ),
  presence_penalty: nullable(
    z
      .number()
      .refine((v) => v === 0, 'is not served (the sampler is fixed by the protocol): send 0 or omit it'),
  ),
  logit_bias: nullable(
    z
      .record(z.string(), z.unknown())
      .refine((v) => Object.keys(v).length === 0, 'is not served (the sampler is fixed by the protocol)'),
  ),
  user: nullable(z.string()),
  /**
   * Glassbox's own request fields (docs/protocol.md, Continuing a generation): `prefix_ids`, the
   * output ids an earlier provider already produced for this request, to continue after them;
   * `token_ids: true`, each streamed chunk also carries the ids it consumed. Unknown keys are ignored.
   */
  glassbox: nullable(
    z.object(
      {
        prefix_ids: nullable(prefixIdsSchema),
        token_ids: nullable(z.boolean({ error: 'is not a boolean' })),
      },
      { error: 'is not an object' },
    ),
  ),
};

/** tools: refused, naming the field; a tool of an unknown type is named by its type. */
const toolsSchema = z
  .array(z.object({ type: z.string({ error: 'is required' }) }).loose())
  .superRefine((tools, ctx) => {
    const unknown = tools.findIndex((t) => t.type !== 'function' && t.type !== 'custom');
    if (unknown >= 0)
      ctx.addIssue({
        code: 'custom',
        path: [unknown, 'type'],
        message: `is an unknown tool type "${tools[unknown]!.type}" (and tool calling is not served by this provider)`,
      });
    else if (tools.length > 0)
      ctx.addIssue({ code: 'custom', message: 'tool calling is not served by this provider' });
  });

export const chatCompletionRequestSchema = z
  .object({
    ...commonFields,
    messages: z
      .array(messageSchema, { error: 'is required: an array of messages ({role, content})' })
      .min(1, 'is empty'),
    max_completion_tokens: nullable(integer(1)),
    logprobs: nullable(z.boolean({ error: 'is not a boolean' })),
    top_logprobs: nullable(integer(0, 20)),
    tools: nullable(toolsSchema),
    tool_choice: nullable(
      z
        .unknown()
        .refine(
          (v) => v === 'none',
          'is not served by this provider (tool calling is not): omit it or send "none"',
        ),
    ),
    parallel_tool_calls: nullable(z.boolean()),
    response_format: nullable(
      z.object({
        type: z
          .string({ error: 'is required' })
          .refine((t) => t === 'text', 'only "text" is served (structured output is not)'),
      }),
    ),
  })
  .superRefine((r, ctx) => {
    if (r.top_logprobs !== undefined && r.top_logprobs !== null && r.top_logprobs > 0 && r.logprobs !== true)
      ctx.addIssue({ code: 'custom', path: ['top_logprobs'], message: 'needs logprobs: true' });
  });
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;

export const completionRequestSchema = z.object({
  ...commonFields,
  prompt: z.union(
    [z.string(), z.array(z.string()).length(1, 'holds more than one prompt (only one is served)')],
    {
      error: 'is required: a string (arrays of token ids are not served)',
    },
  ),
  /** The legacy API's: this many alternatives per token (0-5). */
  logprobs: nullable(integer(0, 5)),
  echo: nullable(z.boolean().refine((v) => !v, 'is not served: the prompt is not echoed')),
  suffix: nullable(z.string().refine((v) => v === '', 'is not served')),
  best_of: nullable(z.number().refine((v) => v === 1, 'only best_of = 1 is served')),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

const usageSchema = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  total_tokens: z.number().int().nonnegative(),
});
export type Usage = z.infer<typeof usageSchema>;

const finishReason = z.enum(['stop', 'length']);

/** One token of the chat format's logprobs (what openai-node's types name ChatCompletionTokenLogprob). */
const tokenLogprob = z.object({
  token: z.string(),
  logprob: z.number(),
  bytes: z.array(z.number().int()).nullable(),
});
const chatLogprob = tokenLogprob.extend({ top_logprobs: z.array(tokenLogprob) });
const chatLogprobs = z.object({
  content: z.array(chatLogprob).nullable(),
  refusal: z.array(chatLogprob).nullable().optional(),
});
export type ChatLogprob = z.infer<typeof chatLogprob>;

/** The legacy completions' logprobs. */
const completionLogprobs = z.object({
  tokens: z.array(z.string()),
  token_logprobs: z.array(z.number()),
  top_logprobs: z.array(z.record(z.string(), z.number())).nullable(),
  text_offset: z.array(z.number().int()),
});
export type CompletionLogprobs = z.infer<typeof completionLogprobs>;

/**
 * What Glassbox adds to an answer: the signed receipt, the seed the sampler used (the client's, or
 * one the provider picked: disclosed, so anyone can replay the sampling), and the token ids the
 * receipt's hashes cover, so a client checks them without a tokenizer.
 */
export const glassboxExtraSchema = z.object({
  receipt: signedReceiptJsonSchema,
  seed: z.string().regex(/^\d{1,20}$/),
  promptTokenIds: z.array(z.number().int().nonnegative()).optional(),
  outputTokenIds: z.array(z.number().int().nonnegative()).optional(),
  /** Set when the request id was answered before: this is that answer again, not charged again. */
  replayed: z.boolean().optional(),
});
export type GlassboxExtra = z.input<typeof glassboxExtraSchema>;

const answerHead = {
  id: z.string(),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string().nullable().optional(),
};

export const chatCompletionSchema = z.object({
  ...answerHead,
  object: z.literal('chat.completion'),
  choices: z.array(
    z.object({
      index: z.number().int(),
      message: z.object({
        role: z.literal('assistant'),
        content: z.string().nullable(),
        refusal: z.null().optional(),
      }),
      logprobs: chatLogprobs.nullable(),
      finish_reason: finishReason,
    }),
  ),
  usage: usageSchema,
  glassbox: glassboxExtraSchema,
});
export type ChatCompletion = z.input<typeof chatCompletionSchema>;

export const completionSchema = z.object({
  ...answerHead,
  object: z.literal('text_completion'),
  choices: z.array(
    z.object({
      index: z.number().int(),
      text: z.string(),
      logprobs: completionLogprobs.nullable(),
      finish_reason: finishReason,
    }),
  ),
  usage: usageSchema,
  glassbox: glassboxExtraSchema,
});
export type Completion = z.input<typeof completionSchema>;

/**
 * What a streamed chunk carries when the request asked `glassbox.token_ids: true`: the output ids
 * consumed since the previous chunk (a token whose text is held back goes with the next chunk sent).
 */
export type GlassboxChunkIds = { readonly token_ids: readonly number[] };

/**
 * A chat stream chunk (`data: {...}` of the SSE stream). `glassbox` is the receipt's (the last
 * chunk before [DONE]) or the chunk's token ids; the gateway's last chunk carries its own `X`.
 */
export type ChatCompletionChunk<X = GlassboxExtra | GlassboxChunkIds> = {
  readonly id: string;
  readonly object: 'chat.completion.chunk';
  readonly created: number;
  readonly model: string;
  readonly choices: readonly {
    readonly index: number;
    readonly delta: { readonly role?: 'assistant'; readonly content?: string };
    readonly logprobs: { readonly content: ChatLogprob[] } | null;
    readonly finish_reason: 'stop' | 'length' | null;
  }[];
  readonly usage?: Usage | null;
  readonly glassbox?: X;
};

/** A completions stream chunk. */
export type CompletionChunk<X = GlassboxExtra | GlassboxChunkIds> = {
  readonly id: string;
  readonly object: 'text_completion';
  readonly created: number;
  readonly model: string;
  readonly choices: readonly {
    readonly index: number;
    readonly text: string;
    readonly logprobs: CompletionLogprobs | null;
    readonly finish_reason: 'stop' | 'length' | null;
  }[];
  readonly usage?: Usage | null;
  readonly glassbox?: X;
};

/** OpenAI's model object, as GET /v1/models lists it and GET /v1/models/:id answers it. */
export const openAiModelSchema = z.object({
  id: z.string(),
  object: z.literal('model'),
  /** Unix seconds: when this node began serving it. */
  created: z.number().int().nonnegative(),
  /** The provider's address. */
  owned_by: z.string(),
  /** The manifest's name, by which it may also be asked for when no other served model has it. */
  name: z.string().optional(),
});
export type OpenAiModel = z.infer<typeof openAiModelSchema>;
