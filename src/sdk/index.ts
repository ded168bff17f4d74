/**
 * The Glassbox client library (docs/architecture.md): discovery from the chain, routing with price
 * caps, health, hedging and failover, quorum under the model's comparison policy, verification of
 * every receipt, evidence for disputes, and payment by cumulative vouchers. viem-style: a plain
 * client object, and actions that take it first. It speaks src/protocol/api.ts to any provider.
 */
export { createClient, closeClient, type Client, type CreateClientParameters } from './client.js';
export {
  discoverProviders,
  invalidateDiscovery,
  type DiscoverProvidersParameters,
  type ProviderCandidate,
} from './discovery.js';
export { providerHealth, latencyP95, type ProviderHealth, type ProviderHealthReport } from './health.js';
export { rankProviders, type RankProvidersParameters } from './select.js';
export {
  verifyReceipt,
  getProviderModels,
  type Check,
  type CheckName,
  type ReceiptReport,
  type VerifyReceiptParameters,
} from './verify.js';
export {
  infer,
  type InferErrorType,
  type InferMode,
  type InferParameters,
  type InferReturnType,
  type RejectedAttempt,
  type VerificationReport,
} from './infer.js';
export {
  submitEvidence,
  type Disagreement,
  type Equivocation,
  type Evidence,
  type SubmitEvidenceParameters,
  type SubmitEvidenceReturnType,
} from './evidence.js';
export {
  charged,
  chargeable,
  settle,
  currentVoucher,
  type ChargedReturnType,
  type SettleParameters,
  type SettleResult,
} from './payments.js';
export { getManifest } from './manifests.js';
export { offerModel, withdrawModel, type AdminParameters, type OfferModelParameters } from './admin.js';
export {
  getModels,
  postInfer,
  postVoucher,
  BINARY_TRANSPORT_MIN_BYTES,
  type BinaryInferRequest,
  type InferAnswer,
  type PostInferOptions,
  getBlob,
  type ProviderModels,
  type ProviderRef,
} from './transport.js';
export {
  createSessionKey,
  type CreateSessionKeyParameters,
  type CreateSessionKeyReturnType,
  type SessionSigner,
} from './session.js';
export {
  chat,
  completion,
  listLlmModels,
  type ChatParameters,
  type ChatRequestBody,
  type CompletionParameters,
  type CompletionRequestBody,
  type GenerationDelta,
  type GenerationResult,
  type GenerationStream,
  type LlmMode,
  type LlmModelListing,
  type LlmRecheckSummary,
  type LlmVerificationReport,
  type Segment,
  type TokenPriceCap,
} from './chat.js';
