import type { Address, Hex } from 'viem';
import type { NodeRole } from './config.js';
import type { RoleViews } from './roles/index.js';
import type { ModelPackage } from '../protocol/manifest.js';
import type { AnyEngine } from '../runtime/engine.js';
import type { BlobStore } from '../store/index.js';
import type { NodeDb } from './db.js';
import type { ReceiptDomain } from '../protocol/receipt.js';
import type { GenerateService } from './generate.js';
import type { InferService } from './infer.js';
import type { NodeMetrics } from './metrics.js';
import type { OfferBook } from './offers.js';
import type { Payments } from './payments.js';
import type { PriceBook } from './prices.js';

/** What the HTTP routes need of the node: plain data and the services, no HTTP in it. */
export type NodeContext = {
  readonly provider: Address;
  readonly signer: Address;
  readonly chainId: number;
  /**
   * The engine whose runtime profile this node declares (GET /v1/models, and on chain: the
   * ProviderRegistry keeps one runtime per provider): the tensor engine. LLM models name their
   * token engine's runtime in their own receipts (and per model in GET /v1/models).
   */
  readonly engine: AnyEngine;
  /** The runtime hash a model's receipts name: its own engine's. */
  runtimeOf(pkg: ModelPackage): Hex;
  readonly models: ReadonlyMap<string, ModelPackage>;
  readonly store: BlobStore;
  readonly db: NodeDb;
  readonly prices: PriceBook;
  readonly payments: Payments;
  readonly service: InferService;
  /** LLM generations (the OpenAI routes). */
  readonly generator: GenerateService;
  /** The domain of receipts, and of the session keys clients sign for the OpenAI routes. */
  readonly receiptDomain: ReceiptDomain;
  /** The node's body limit (named in 413 answers). */
  readonly bodyLimitBytes: number;
  /** Model offers added and removed at run time (the admin API). */
  readonly offers: OfferBook;
  /** The admin API's bearer token (src/node/admin-token.ts). */
  readonly adminToken: string;
  readonly metrics: NodeMetrics;
  /** 'starting' until the chain setup is done, 'stopping' once stop() began. */
  state(): 'starting' | 'ready' | 'stopping';
  readonly startedAt: number;
  /** The role services' status and the verifier's evidence, once the node started. */
  roleViews(): RoleViews | undefined;
  readonly roles: readonly NodeRole[];
};
