import { getEvidence, providerApi } from '../../api/provider.js';
import { readBatchPages, type BatchListing, type parseEvidenceResponse } from '../../protocol/api.js';

/*
 * What the roles fetch over HTTP from the nodes they audit or judge for, in one place: the verifier
 * reads a provider's batch listings, a committee member reads a challenger's evidence. Both go
 * through the API's typed client (src/api/provider.ts): every answer is bounded (a timeout, a byte
 * cap, no redirects) and parsed with its route's schema before a role sees it; a failure throws
 * (PROVIDER_ERROR naming the field for garbage), and the role decides what it means (not served
 * yet, or too late).
 */

export type ProviderFetches = {
  /**
   * The listing of a committed batch as the provider at `endpoint` serves it, page by page, each
   * page validated against the committed root and count (src/protocol/api.ts `readBatchPages`).
   */
  batchListing(
    endpoint: string,
    batch: { readonly root: `0x${string}`; readonly count: number },
  ): Promise<BatchListing>;
  /** A challenger's evidence at `uri` (GET /v1/evidence/:hash of its node, or a data: URI). */
  evidence(uri: string): Promise<ParsedEvidence>;
};

/** A challenger's evidence as validated (src/protocol/api.ts): inputs and outputs still base64. */
export type ParsedEvidence = ReturnType<typeof parseEvidenceResponse>;

export function createProviderFetches(): ProviderFetches {
  return {
    batchListing: (endpoint, batch) => {
      const provider = providerApi(endpoint);
      return readBatchPages(batch, (offset) => provider.getBatchPage(batch.root, offset));
    },
    evidence: (uri) => getEvidence(uri),
  };
}
