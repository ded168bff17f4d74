import { z } from 'zod';
import {
  chatCompletionRequestSchema,
  chatCompletionSchema,
  completionRequestSchema,
  completionSchema,
  openAiErrorSchema,
  openAiModelSchema,
  SSE_TYPE,
} from '../api/openai.js';
import type { ApiRoute, RawContent } from '../api/routes.js';
import { signedReceiptJsonSchema } from '../protocol/receipt.js';

/*
 * The gateway's HTTP API, declared as the provider's is (src/api/routes.ts), so that src/api/serve.ts
 * validates its requests and checks its answers. The requests are the provider's OpenAI bodies; the
 * answers are the provider's OpenAI shapes with the gateway's own `glassbox` field: every receipt
 * behind the tokens, the SDK's verification report, and which provider produced which tokens.
 */

const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/);
const hex32 = z.string().regex(/^0x[0-9a-fA-F]{64}$/);

const checkSchema = z.object({ check: z.string(), ok: z.boolean(), detail: z.string() }).loose();

/** One receipt's checks, without the receipt itself (the answer lists the receipts beside). */
export const receiptReportJsonSchema = z.object({
  provider: address,
  requestId: hex32,
  ok: z.boolean(),
  checks: z.array(checkSchema),
});

/** The SDK's LlmVerificationReport as JSON (bigints as decimal strings, receipts by request id). */
export const reportJsonSchema = z
  .object({
    ok: z.boolean(),
    mode: z.enum(['receipt', 'local', 'quorum']),
    receipts: z.array(receiptReportJsonSchema),
    rejected: z.array(
      z
        .object({
          provider: address,
          code: z.string(),
          message: z.string(),
          status: z.number().int().optional(),
          report: receiptReportJsonSchema.optional(),
        })
        .loose(),
    ),
    hedged: z.boolean(),
    failovers: z.number().int().nonnegative(),
  })
  .loose();

/** What the gateway adds to an answer (the last chunk of a stream): see the module comment. */
export const gatewayExtraSchema = z.object({
  receipts: z.array(signedReceiptJsonSchema),
  report: reportJsonSchema,
  segments: z.array(
    z.object({
      provider: address,
      fromToken: z.number().int().nonnegative(),
      toToken: z.number().int().nonnegative(),
      requestId: hex32.optional(),
      cut: z.string().optional(),
    }),
  ),
  seed: z.string().regex(/^\d{1,20}$/),
  promptTokenIds: z.array(z.number().int().nonnegative()),
  outputTokenIds: z.array(z.number().int().nonnegative()),
});
export type GatewayExtra = z.input<typeof gatewayExtraSchema>;

/** A model on the network: OpenAI's model object, and what the gateway knows of its offers. */
export const gatewayModelSchema = openAiModelSchema.extend({
  glassbox: z.object({
    /** Active providers offering it. */
    providers: z.number().int().positive(),
    /** The cheapest active offer, per million tokens in base units (decimal strings). */
    pricePerMillion: z.object({ input: z.string(), output: z.string() }),
    contextLength: z.number().int().positive(),
  }),
});
export type GatewayModel = z.input<typeof gatewayModelSchema>;

export const modelListSchema = z.object({ object: z.literal('list'), data: z.array(gatewayModelSchema) });

const errors = {
  schema: openAiErrorSchema,
  description: "an error in OpenAI's shape: {error: {message, type, param, code}}",
} as const;

const sse = (what: string): RawContent => ({
  type: SSE_TYPE,
  description: `with stream: true, server-sent events: ${what} chunks as a provider sends them, the last before data: [DONE] being {choices: [], glassbox: {receipts, report, segments, seed, promptTokenIds, outputTokenIds}}`,
});

export const gatewayRoutes = {
  chatCompletions: {
    method: 'POST',
    path: '/v1/chat/completions',
    summary: "OpenAI's chat completions, answered by the network's providers and verified",
    body: chatCompletionRequestSchema,
    response: chatCompletionSchema.extend({ glassbox: gatewayExtraSchema }),
    rawResponse: sse('chat.completion.chunk'),
    errors,
  },
  completions: {
    method: 'POST',
    path: '/v1/completions',
    summary: "OpenAI's (legacy) completions, answered by the network's providers and verified",
    body: completionRequestSchema,
    response: completionSchema.extend({ glassbox: gatewayExtraSchema }),
    rawResponse: sse('text_completion'),
    errors,
  },
  models: {
    method: 'GET',
    path: '/v1/models',
    summary: 'The LLM models with at least one active offer on chain',
    response: modelListSchema,
    errors,
  },
  modelById: {
    method: 'GET',
    path: '/v1/models/:id',
    summary: 'One LLM model on the network, by id (CID) or by name',
    params: z.strictObject({ id: z.string().min(1).max(256) }),
    response: gatewayModelSchema,
    errors,
  },
} as const satisfies Record<string, ApiRoute>;
