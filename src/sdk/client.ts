import { getAddress, type Address, type Hex, type LocalAccount } from 'viem';
import { assertChainId, connect, withAccount } from '../chain/client.js';
import { readDeployment, type Deployment } from '../chain/deployment.js';
import type { GlassboxClient } from '../chain/client.js';
import type { ProviderInfo } from '../chain/providers.js';
import { DEFAULT_MAX_RESPONSE_BYTES } from '../protocol/body.js';
import { GlassboxError } from '../protocol/errors.js';
import { privateKeyToSigner } from '../protocol/secp256k1.js';
import type { ModelManifest } from '../protocol/manifest.js';
import type { BlobStore } from '../store/blob-store.js';
import type { Engines } from '../runtime/registry.js';
import type { ProviderCandidate } from './discovery.js';
import { createNodeFetch } from './http.js';
import type { ProviderHealth } from './health.js';
import type { PaymentAccount } from './payments.js';
import { BINARY_TRANSPORT_MIN_BYTES, type ProviderModels } from './transport.js';
import type { RememberedAnswer } from './evidence.js';

/**
 * The SDK client (viem-style): plain data plus the state the actions keep between calls
 * (discovery cache, per-provider health, payment totals, recent receipts). Every action is a plain
 * function taking the client first: `infer(client, params)`, `settle(client)`, `charged(client)`.
 */
export type CreateClientParameters = {
  readonly rpcUrl: string;
  readonly chainId: number;
  /** The deployed contracts; or `deploymentFile`, a file written by `writeDeployment`. */
  readonly deployment?: Deployment;
  readonly deploymentFile?: string;
  /** The client's key (0x private key) or a viem local account: signs vouchers, binds receipts. */
  readonly account: Hex | LocalAccount;
  /** Where manifests and model files are looked up first (mode 'local' re-executes from it). */
  readonly store?: BlobStore;
  /**
   * Runtime profile hashes the client accepts. Without a list, a receipt's runtime must be the
   * hash of the profile its provider publishes at /v1/models (which must parse as a profile).
   */
  readonly runtimes?: readonly Hex[];
  /** How long discovery results (providers, offers) are reused. Default 5000 ms. */
  readonly discoveryTtlMs?: number;
  /** Hedge after this many ms instead of the provider's measured p95 (`false`: never hedge). */
  readonly hedgeAfterMs?: number | false;
  /** The hedge budget before any latency is measured, and its floor. Default 1000 / 25 ms. */
  readonly defaultHedgeAfterMs?: number;
  readonly minHedgeAfterMs?: number;
  /** A provider that failed is tried last for this long (doubling per failure in a row, capped at 16x). */
  readonly cooldownMs?: number;
  /** Default per-request time limit for `infer`. Default 30000 ms. */
  readonly timeoutMs?: number;
  /** The fetch to use (default: node:http with kept-alive connections on Node, else globalThis.fetch). */
  readonly fetch?: typeof fetch;
  /** Extra headers for every provider request. */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * The most bytes of one provider answer read (JSON: inference answers, /v1/models, problems);
   * past it the answer is refused with RESPONSE_TOO_LARGE and the next provider is asked, so a
   * provider can't exhaust the client's memory. Default DEFAULT_MAX_RESPONSE_BYTES (about 14 MiB:
   * a full batch page, the largest answer a provider sends); an inference answer's outputs are
   * within the chain's data cap, far below it even in JSON. Model files are capped by the sizes
   * their manifest names instead.
   */
  readonly maxResponseBytes?: number;
  /**
   * Inputs of at least this many bytes of canonical encoding travel binary, and outputs expected
   * to reach it are asked for binary (src/sdk/transport.ts). Default BINARY_TRANSPORT_MIN_BYTES
   * (64 KiB); `Infinity`: always JSON.
   */
  readonly binaryTransportMinBytes?: number;
  /** Chain receipt polling interval (ms); ~5 on anvil. */
  readonly pollingIntervalMs?: number;
  /** Skip the eth_chainId check at creation. */
  readonly skipChainIdCheck?: boolean;
};

export type ClientOptions = {
  readonly runtimes: readonly Hex[] | undefined;
  readonly discoveryTtlMs: number;
  readonly hedgeAfterMs: number | false | undefined;
  readonly defaultHedgeAfterMs: number;
  readonly minHedgeAfterMs: number;
  readonly cooldownMs: number;
  readonly timeoutMs: number;
  readonly fetch: typeof fetch;
  readonly headers: Readonly<Record<string, string>>;
  readonly maxResponseBytes: number;
  readonly binaryTransportMinBytes: number;
};

/** Mutable state shared by the actions; not part of the public contract. */
export type ClientState = {
  providers?: { at: number; list: Promise<ProviderInfo[]> };
  offers: Map<string, { at: number; list: Promise<ProviderCandidate[]> }>;
  manifests: Map<string, Promise<ModelManifest>>;
  models: Map<Address, { at: number; value: Promise<ProviderModels> }>;
  signers: Set<string>;
  /** Runtime profile hashes found admitted on chain (lower case; admissions are final). */
  admittedRuntimes: Set<string>;
  health: Map<Address, ProviderHealth>;
  payments: Map<Address, PaymentAccount>;
  answers: Map<string, RememberedAnswer>;
  /** Hedged requests still running after their call returned: charged if they verify (infer.ts). */
  background: Set<BackgroundRequest>;
  /** The engines of mode 'local', loaded on its first use. */
  engines?: Promise<Engines>;
  /** Session keys for providers' OpenAI routes (src/sdk/llm-transport.ts), reused until near expiry. */
  sessionKeys: Map<Address, { readonly key: string; readonly expiresAt: number }>;
};

/** A request left running in the background: cancel it, or wait until it settled (never rejects). */
export type BackgroundRequest = { readonly controller: AbortController; readonly settled: Promise<void> };

export type Client = {
  readonly chainId: number;
  readonly deployment: Deployment;
  /** The client's address: the `client` of its receipts and vouchers. */
  readonly address: Address;
  readonly account: LocalAccount;
  /** The chain connection acting as the client's account (src/chain actions take it). */
  readonly chain: GlassboxClient;
  readonly store: BlobStore | undefined;
  readonly options: ClientOptions;
  readonly state: ClientState;
};

export async function createClient(params: CreateClientParameters): Promise<Client> {
  const deployment =
    params.deployment ??
    (params.deploymentFile === undefined ? undefined : await readDeployment(params.deploymentFile));
  if (!deployment)
    throw new GlassboxError('USAGE', 'createClient needs a deployment or a deploymentFile', {
      field: 'deployment',
    });
  if (deployment.chainId !== params.chainId)
    throw new GlassboxError(
      'CHAIN_ID_MISMATCH',
      `the deployment is for chain ${deployment.chainId}, not ${params.chainId}`,
      { details: { expected: params.chainId, actual: deployment.chainId } },
    );
  // Vouchers are signed with the native curve where it loads (src/protocol/secp256k1.ts).
  const account = typeof params.account === 'string' ? privateKeyToSigner(params.account) : params.account;
  const connection = connect({
    rpcUrl: params.rpcUrl,
    chainId: params.chainId,
    ...(params.pollingIntervalMs === undefined ? {} : { pollingIntervalMs: params.pollingIntervalMs }),
  });
  if (!params.skipChainIdCheck) await assertChainId(connection, params.chainId);
  const chain = withAccount({ ...connection, deployment }, account);
  return {
    chainId: params.chainId,
    deployment,
    address: getAddress(account.address),
    account,
    chain,
    store: params.store,
    options: {
      runtimes: params.runtimes,
      discoveryTtlMs: params.discoveryTtlMs ?? 5000,
      hedgeAfterMs: params.hedgeAfterMs,
      defaultHedgeAfterMs: params.defaultHedgeAfterMs ?? 1000,
      minHedgeAfterMs: params.minHedgeAfterMs ?? 25,
      cooldownMs: params.cooldownMs ?? 10_000,
      timeoutMs: params.timeoutMs ?? 30_000,
      fetch: params.fetch ?? createNodeFetch() ?? globalThis.fetch,
      headers: params.headers ?? {},
      maxResponseBytes: positive(params.maxResponseBytes, 'maxResponseBytes') ?? DEFAULT_MAX_RESPONSE_BYTES,
      binaryTransportMinBytes: binaryThreshold(params.binaryTransportMinBytes),
    },
    state: {
      offers: new Map(),
      manifests: new Map(),
      models: new Map(),
      signers: new Set(),
      admittedRuntimes: new Set(),
      health: new Map(),
      payments: new Map(),
      answers: new Map(),
      background: new Set(),
      sessionKeys: new Map(),
    },
  };
}

function positive(value: number | undefined, field: string): number | undefined {
  if (value === undefined || (Number.isSafeInteger(value) && value > 0)) return value;
  throw new GlassboxError('USAGE', `${field} must be a positive whole number of bytes, not ${value}`, {
    field,
  });
}

function binaryThreshold(value: number | undefined): number {
  if (value === undefined) return BINARY_TRANSPORT_MIN_BYTES;
  if (value === Infinity || (Number.isSafeInteger(value) && value >= 0)) return value;
  throw new GlassboxError(
    'USAGE',
    `binaryTransportMinBytes must be a whole number of bytes or Infinity, not ${value}`,
    { field: 'binaryTransportMinBytes' },
  );
}

/**
 * Releases what the client holds: cancels the hedged requests still running in the background (so
 * nothing runs after this returns; an answer they would have brought is not paid for) and closes
 * the local re-execution engines. Call `settle` first to pay for those answers.
 */
export async function closeClient(client: Client): Promise<void> {
  const background = [...client.state.background];
  for (const request of background) request.controller.abort();
  await Promise.all(background.map((request) => request.settled));
  const engines = client.state.engines;
  client.state.engines = undefined;
  if (engines) await (await engines).close();
}
