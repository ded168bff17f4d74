/**
 * Typed errors with stable codes. Every failure a user can cause or meet has a code here; the
 * code is the contract (HTTP problem+json, CLI exit lines, SDK `catch`), the message is for people.
 */
export const ErrorCodes = {
  // tensors and their encodings
  TENSOR_INVALID: 'a tensor is malformed (dtype, shape or data disagree)',
  TENSOR_DECODE: 'bytes or JSON could not be decoded into tensors',
  // inputs checked against a model schema
  INPUT_UNKNOWN: 'an input name the model does not declare',
  INPUT_MISSING: 'an input the model declares was not given',
  INPUT_DTYPE: 'an input has the wrong dtype',
  INPUT_RANK: 'an input has the wrong rank',
  INPUT_DIM: 'an input dimension does not match the schema',
  INPUT_VALUE: 'an input value is not of the declared type (non-numeric, out of range)',
  INPUT_TOO_LARGE: 'the inputs exceed the size limit',
  OUTPUT_TOO_LARGE:
    "the model's outputs for these inputs exceed what a challengeable receipt may carry (the chain's data cap)",
  // models, manifests and blobs
  MANIFEST_INVALID: 'a model manifest does not match the manifest schema',
  MODEL_INVALID: 'a model file could not be parsed or loaded',
  MODEL_TOO_LARGE: 'a model file exceeds the size limit',
  MODEL_NOT_FOUND: 'no model with this id or path',
  MODEL_REFUSED:
    "the chain's record of a model forbids serving it (deprecated, or registered with another exact flag than its manifest's policy)",
  BLOB_NOT_FOUND: 'no blob with this CID in the store',
  BLOB_CORRUPT: 'a stored blob does not hash to its CID',
  CID_INVALID: 'a string is not a valid CID of the expected kind',
  // execution
  RUN_TIMEOUT: 'a model run exceeded its time limit',
  RUN_FAILED: 'the runtime failed while executing the model',
  ABORTED: 'the caller stopped a generation before it ended (a client went away)',
  PROFILE_MISMATCH: 'the runtime profile differs from the one required',
  // comparison, receipts, batches
  POLICY_INVALID: 'a comparison policy is malformed or does not fit the outputs',
  SIGNATURE_INVALID: 'a signature is malformed or does not recover to the expected signer',
  RECEIPT_INVALID: 'a receipt or voucher is malformed',
  MERKLE_INVALID: 'a Merkle tree or proof is malformed',
  DATA_INVALID: 'chunks of published data are missing, repeated, or do not rebuild its commitment',
  // the chain
  CHAIN_REVERTED: 'a contract call reverted; details.error names the custom error',
  CHAIN_RPC: 'the chain RPC could not be reached or answered with an error',
  CHAIN_ID_MISMATCH: 'the RPC serves a different chain id than the one expected',
  CHAIN_DEPLOYMENT: 'a deployment (addresses file or contract code) is missing or invalid',
  CHAIN_PARAMS_INVALID: 'deployment parameters are inconsistent or out of range',
  CHAIN_ANVIL: 'the local anvil chain could not be found, started or stopped',
  // the provider API
  REQUEST_INVALID: 'a request to a provider is malformed',
  PAYMENT_REQUIRED: 'the provider needs a voucher covering what it is owed before it serves more',
  PRICE_TOO_HIGH: "the provider's price for the model exceeds the client's maxPrice",
  RATE_LIMITED: 'too many requests from this client; retry later',
  REQUEST_TOO_LARGE: "the request body exceeds the provider's size limit",
  VOUCHER_INVALID: 'a voucher is for another client, provider or contract, or is not backed by a deposit',
  REQUEST_CONFLICT: 'a request id was already used for a different request',
  NOT_FOUND: 'no such resource on this provider',
  PROVIDER_UNAVAILABLE: 'no provider could answer (all failed, timed out or were excluded)',
  PROVIDER_TIMEOUT: 'a provider did not answer within the time limit',
  PROVIDER_ERROR: 'a provider answered with an error status or a body that does not follow the API',
  RESPONSE_TOO_LARGE: "an answer is larger than its reader accepts (the SDK's maxResponseBytes)",
  QUORUM_NO_MAJORITY: 'the providers of a quorum disagreed and no answer has a majority',
  VERIFICATION_FAILED: 'an answer failed verification (signature, signer, hashes, price or runtime)',
  // the provider node
  CONFIG_INVALID: 'a node configuration does not match the config schema; field names the offender',
  NODE_UNAVAILABLE: 'the provider is starting up or shutting down; retry later or elsewhere',
  ADMIN_UNAUTHORIZED: "an admin request carries no bearer token or not the node's admin token",
  INTERNAL:
    "the provider failed on its side (a bug, or an answer that broke its own schema): not the request's fault",
  // the command line
  USAGE: 'a command was called with missing or invalid arguments',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export type GlassboxErrorOptions = {
  /** The offending field, as a path (`inputs.x.shape[1]`), when the error is about one. */
  field?: string;
  /** Extra lines of context for people: what was expected, what was seen. */
  metaMessages?: readonly string[];
  /** Machine-readable facts about the failure. */
  details?: Record<string, unknown>;
  cause?: unknown;
};

/** The one error class of Glassbox; `code` says what happened, `field` where. */
export class GlassboxError extends Error {
  override name = 'GlassboxError';
  readonly code: ErrorCode;
  readonly shortMessage: string;
  readonly field: string | undefined;
  readonly metaMessages: readonly string[];
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, shortMessage: string, options: GlassboxErrorOptions = {}) {
    const lines = [shortMessage, ...(options.metaMessages ?? [])];
    super(lines.join('\n'), options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.shortMessage = shortMessage;
    this.field = options.field;
    this.metaMessages = options.metaMessages ?? [];
    this.details = options.details ?? {};
  }

  /** The problem+json body (RFC 9457) that daemons answer with. */
  toProblem(): { code: ErrorCode; message: string; field?: string; details?: Record<string, unknown> } {
    return {
      code: this.code,
      message: this.shortMessage,
      ...(this.field === undefined ? {} : { field: this.field }),
      ...(Object.keys(this.details).length === 0 ? {} : { details: this.details }),
    };
  }
}

export function isGlassboxError(error: unknown, code?: ErrorCode): error is GlassboxError {
  return error instanceof GlassboxError && (code === undefined || error.code === code);
}
