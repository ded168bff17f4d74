import { parseEvidenceResponse, readBatchPages, type BatchListing } from '../../protocol/api.js';
import { DEFAULT_MAX_RESPONSE_BYTES, readJsonBody } from '../../protocol/body.js';

/*
 * What the roles fetch over HTTP from the nodes they audit or judge for, in one place: the verifier
 * reads a provider's batch listings, a committee member reads a challenger's evidence. Every
 * answer is bounded (a timeout, a byte cap, no redirects) and validated before a role sees it; a
 * failure throws, and the role decides what it means (not served yet, or too late).
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

const TIMEOUT_MS = 5_000;

async function getJson(url: string, from: string): Promise<unknown> {
  const response = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS), redirect: 'error' });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return readJsonBody(response, { maxBytes: DEFAULT_MAX_RESPONSE_BYTES, from });
}

export function createProviderFetches(): ProviderFetches {
  return {
    batchListing: (endpoint, batch) =>
      readBatchPages(batch, (offset) =>
        getJson(
          `${endpoint.replace(/\/+$/, '')}/v1/batches/${batch.root}?offset=${offset}`,
          `provider ${endpoint}`,
        ),
      ),
    evidence: async (uri) => parseEvidenceResponse(await getJson(uri, 'the challenger')),
  };
}
