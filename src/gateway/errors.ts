import { openAiStatus } from '../api/openai-answer.js';
import { GlassboxError, isGlassboxError, type ErrorCode } from '../protocol/errors.js';

/*
 * What the gateway answers when the SDK call fails. A refusal every provider gave alike (a prompt
 * over the context, a bad field) is the client's: its status as a provider answers it. A network
 * that could not answer is the gateway's upstream failing: 502 when providers answered wrongly
 * (errors, receipts that did not verify, a quorum without majority), 503 when none could be used
 * (none offers the model under the price cap, all failed or were cooling down), 504 on time.
 */

const UPSTREAM: Partial<Record<ErrorCode, number>> = {
  PROVIDER_ERROR: 502,
  VERIFICATION_FAILED: 502,
  QUORUM_NO_MAJORITY: 502,
  CHAIN_RPC: 502,
  PROVIDER_UNAVAILABLE: 503,
  // Every offer is above the gateway's cap: no provider it may use, not a conflict of the client's.
  PRICE_TOO_HIGH: 503,
  PROVIDER_TIMEOUT: 504,
  RUN_TIMEOUT: 504,
  // The SDK refuses a call it can't make (a quorum stream): the request's fault.
  USAGE: 400,
};

export function gatewayStatus(error: GlassboxError): number {
  return UPSTREAM[error.code] ?? openAiStatus(error);
}

/** Fields of the SDK call the gateway makes, not of the client's body: no `param` to name to it. */
const CALL_FIELDS = /^(maxPrice|mode|exclude|timeoutMs|hedgeAfterMs)(\.|$)/;

/**
 * The SDK's failure with who failed and why in its message (the OpenAI error body has no other
 * place for it: the SDK lists each provider's refusal in its meta messages), a model the network
 * does not know named as the `model` field, and no `param` for what was the gateway's own setting
 * (its price cap, its quorum).
 */
export function explainFailure(error: unknown): unknown {
  if (!isGlassboxError(error)) return error;
  const field =
    error.field === undefined
      ? error.code === 'MODEL_NOT_FOUND'
        ? 'model'
        : undefined
      : CALL_FIELDS.test(error.field)
        ? undefined
        : error.field;
  if (field === error.field && error.metaMessages.length === 0) return error;
  const why = error.metaMessages.length === 0 ? '' : ` [${error.metaMessages.join('; ')}]`;
  return new GlassboxError(error.code, `${error.shortMessage}${why}`, {
    ...(field === undefined ? {} : { field }),
    details: error.details,
    cause: error,
  });
}

export function modelNotFound(model: string, field: string): GlassboxError {
  return new GlassboxError(
    'MODEL_NOT_FOUND',
    `${field}: no LLM model ${model} with an active offer on chain (GET /v1/models lists them)`,
    { field },
  );
}
