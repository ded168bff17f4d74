import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { getAddress, type Address, type Hex } from 'viem';
import {
  connect,
  createEventReader,
  deploymentFromJson,
  isRuntimeAdmitted,
  type ChainParams,
  readChainParams,
  readDeployment,
  verifyDeployment,
  type Deployment,
  type GlassboxClient,
} from '../chain/index.js';
import { GlassboxError } from '../protocol/errors.js';
import { modelIdFromDigest, type ModelPackage } from '../protocol/manifest.js';
import { batchCap, dataCap } from '../protocol/limits.js';
import { runtimeProfileJson } from '../protocol/runtime-profile.js';
import { privateKeyToSigner } from '../protocol/secp256k1.js';
import { defaultEngines, type Engines } from '../runtime/index.js';
import { createFsStore } from '../store/index.js';
import { buildApp } from './app.js';
import { createBatcher, type Batcher } from './batcher.js';
import { parseNodeConfig, type NodeConfig, type NodeConfigInput } from './config.js';
import type { NodeContext } from './context.js';
import { openNodeDb, type NodeDb } from './db.js';
import { createGroupCommit } from './group-commit.js';
import { createInferService } from './infer.js';
import { loadAdminToken } from './admin-token.js';
import { createNodeMetrics } from './metrics.js';
import { createOfferBook, modelRefusal } from './offers.js';
import { engineOf, resolveModel } from './models.js';
import { createGenerateService } from './generate.js';
import { ensureModelRegistered, ensureOffer, ensureProvider, type ChainAction } from './onchain.js';
import { createPayments } from './payments.js';
import { answerPriceBound, createPriceBook, offerPrices, type OfferPrices } from './prices.js';
import { createRedeemer, type Redeemer } from './redeemer.js';
import { createSerial } from './serial.js';
import { createWorker, type Worker } from './worker.js';
import {
  availabilityAnswerer,
  availabilityDataOf,
  committeeMember,
  createProviderFetches,
  defaultSampleRate,
  openRoleStore,
  roleViews,
  sampler,
  tickRoles,
  type AvailabilityData,
  type RoleServices,
  type RoleStore,
  type RoleViews,
} from './roles/index.js';
import { modelByDigest } from './roles/check.js';

/*
 * The provider node (docs/architecture.md): `createNode` opens the database and store, loads the
 * models and builds the HTTP app; `start` listens, makes the chain agree (registration, stake,
 * models, offers), then serves and runs the batch committer, the voucher redeemer and the pruner.
 * `stop` stops accepting, lets requests in flight finish, commits the open batch, redeems
 * vouchers and closes the database.
 */

export type GlassboxNode = {
  /** The staking (provider) address: the `provider` of every receipt. */
  readonly address: Address;
  /** The address of the key that signs receipts. */
  readonly signer: Address;
  readonly config: NodeConfig;
  readonly chain: GlassboxClient;
  readonly models: ReadonlyMap<string, ModelPackage>;
  readonly db: NodeDb;
  readonly app: FastifyInstance;
  readonly log: Logger;
  /** The URL it serves at (after start). */
  readonly url: string;
  /** The chain transactions start sent (empty on a restart with nothing to change). */
  readonly actions: readonly ChainAction[];
  start(): Promise<GlassboxNode>;
  /** Commits every open receipt now. */
  flushBatches(): Promise<void>;
  /** Runs one pass of the verifier, committee and availability work now. */
  tickRoles(): Promise<void>;
  /** Redeems every voucher with something left to pay; returns what was paid now. */
  redeemVouchers(): Promise<bigint>;
  /** Deletes committed receipts older than the challenge window; returns how many. */
  prune(now?: number): number;
  stop(): Promise<void>;
};

export type CreateNodeOptions = {
  /** A logger to use instead of pino JSON on stderr at `config.logLevel`. */
  readonly log?: Logger;
  /**
   * The engines the node runs models with, by format; it closes them when it stops. Default: every
   * engine of this build (src/runtime/engines.ts) with the config's `runTimeoutMs`. The node
   * declares the profile of the first one (the ProviderRegistry keeps one runtime per provider).
   */
  readonly engines?: Engines;
  /**
   * Adds hooks or routes to the node's HTTP app before it listens (a test decorator that changes
   * what the node serves is installed here, test/support/faults.ts).
   */
  readonly extendApp?: (app: FastifyInstance) => void | Promise<void>;
  /**
   * Wraps what the availability answerer publishes when challenged, the node's own receipts (a
   * test wraps it to withhold them, and checks that the node is slashed).
   */
  readonly availabilityData?: (own: AvailabilityData) => AvailabilityData;
};

export async function createNode(
  input: NodeConfigInput | NodeConfig,
  options: CreateNodeOptions = {},
): Promise<GlassboxNode> {
  const config = parseNodeConfig(input);
  const log =
    options.log ??
    pino(
      { level: config.logLevel, base: { service: 'glassbox-node' } },
      pino.destination({ fd: 2, sync: false }),
    );
  const deployment = await loadDeployment(config);
  const chain: GlassboxClient = {
    ...connect({
      rpcUrl: config.chain.rpcUrl,
      chainId: config.chain.chainId,
      account: config.keys.stakingKey as Hex,
      ...(config.chain.pollingIntervalMs === undefined
        ? {}
        : { pollingIntervalMs: config.chain.pollingIntervalMs }),
    }),
    deployment,
  };
  await verifyDeployment(chain, deployment);
  const address = getAddress(chain.walletClient!.account.address);
  // The native curve where it loads: the same signatures as viem's account, ~5x faster per receipt.
  const signer = privateKeyToSigner((config.keys.signingKey ?? config.keys.stakingKey) as Hex);

  const store = createFsStore(config.store ?? join(config.dataDir, 'store'));
  const db = openNodeDb(join(config.dataDir, 'node.sqlite'), address);
  const models = new Map<string, ModelPackage>();
  const offers = new Map<string, { pkg: ModelPackage } & OfferPrices>();
  let adminToken: string;
  try {
    for (const [i, entry] of config.models.entries()) {
      const pkg = await resolveModel(entry.model, { store, peers: config.peers });
      const priced = offerPrices(pkg.manifest.format, entry, {});
      if (!priced.ok)
        throw new GlassboxError('CONFIG_INVALID', `models.${i}.${priced.field}: ${priced.message}`, {
          field: `models.${i}.${priced.field}`,
        });
      models.set(pkg.id, pkg);
      offers.set(pkg.id, { pkg, ...priced.prices });
    }
    // Offers added through the admin API, at their latest price; start checks them like the rest.
    for (const added of db.addedOffers()) {
      try {
        const pkg = await resolveModel(added.model, { store, peers: config.peers });
        models.set(pkg.id, pkg);
        offers.set(pkg.id, { pkg, price: added.price, inputPrice: added.inputPrice });
      } catch (error) {
        log.error({ err: error, model: added.model }, 'an offer added at run time is not served: no package');
      }
    }
    adminToken = await loadAdminToken(config.dataDir, config.adminToken);
  } catch (error) {
    db.close();
    throw error;
  }
  const limits = { timeoutMs: config.runTimeoutMs };
  const engines = options.engines ?? defaultEngines({ onnx: { limits }, llm: { limits } });
  // The declared profile is the tensor engine's: LLM models name their token engine's in their
  // receipts, and that one is checked per model at start.
  const engine = engines.list.find((e) => e.kind === 'tensors') ?? engines.list[0];
  if (!engine) {
    db.close();
    throw new GlassboxError('CONFIG_INVALID', 'the node was given no engine to run models with', {
      field: 'engines',
    });
  }
  const metrics = createNodeMetrics();
  const prices = createPriceBook(chain, address, config.priceCacheMs);
  const payments = createPayments({
    db,
    chain,
    provider: address,
    domain: { chainId: chain.chainId, verifyingContract: deployment.contracts.paymentEscrow },
    creditLimit: config.creditLimit,
    escrowTtlMs: config.escrowCacheMs,
  });
  const serial = createSerial();
  let url = '';
  let state: 'created' | 'starting' | 'ready' | 'stopping' = 'created';
  let batcher: Batcher | undefined;
  let redeemer: Redeemer | undefined;
  let pruner: Worker<void> | undefined;
  let roles: RoleServices = {};
  let views: RoleViews | undefined;
  const actions: ChainAction[] = [];
  const has = (role: (typeof config.roles)[number]) => config.roles.includes(role);
  /** What a receipt may carry (src/protocol/limits.ts), from the chain at start; nothing before. */
  let dataCapBytes = 0;

  const receipts = createGroupCommit({ db, vouchers: payments.takeVouchers });
  const receiptDomain = { chainId: chain.chainId, verifyingContract: deployment.contracts.receiptLedger };
  // What both answering services (tensor inference, LLM generation) sign, store and charge with.
  const answering = {
    db,
    receipts,
    engines,
    models,
    prices,
    payments,
    signer,
    provider: address,
    domain: receiptDomain,
    metrics,
    log,
    dataCap: () => dataCapBytes,
    onReceipt: () => batcher?.notify(),
  };
  const generator = createGenerateService(answering);
  const service = createInferService({ ...answering, runTimeoutMs: config.runTimeoutMs });
  const offerBook = createOfferBook({
    chain,
    engines,
    store,
    peers: config.peers,
    models,
    db,
    prices,
    serial,
    defaultPrice: config.defaultPrice,
    defaultInputPrice: config.defaultInputPrice,
    log,
  });
  const ctx: NodeContext = {
    provider: address,
    signer: signer.address,
    chainId: chain.chainId,
    engine,
    models,
    store,
    db,
    prices,
    payments,
    service,
    generator,
    receiptDomain,
    bodyLimitBytes: config.bodyLimitBytes,
    runtimeOf: (pkg) => engineOf(engines, pkg).runtimeHash,
    offers: offerBook,
    adminToken,
    metrics,
    state: () => (state === 'created' ? 'starting' : state),
    startedAt: Date.now(),
    roles: config.roles,
    roleViews: () => views,
  };
  const app = await buildApp(ctx, {
    log,
    bodyLimitBytes: config.bodyLimitBytes,
    rateLimitPerMinute: config.rateLimit.perMinute,
  });
  await options.extendApp?.(app);

  /**
   * Deletes receipts whose batch was committed (on chain time) longer than the retention ago: the
   * chain's window is counted from the commit block, so local clocks and delayed commits don't
   * shorten it (audit L-1).
   */
  const prune = (now = Date.now()): number => {
    const n = db.prune(now - config.challengeWindowMs);
    if (n > 0) log.info({ pruned: n }, 'pruned receipts past the challenge window');
    return n;
  };
  const pruneByChainTime = async (): Promise<void> => {
    try {
      const { timestamp } = await chain.publicClient.getBlock({ blockTag: 'latest' });
      prune(Number(timestamp) * 1000);
    } catch (error) {
      log.warn({ err: error }, 'could not read chain time; not pruning this time');
    }
  };

  /** A model for the verifier and committee: ours, else fetched from peers and kept (re-hashed). */
  const fetched = new Map<Hex, Promise<ModelPackage | undefined>>();
  const modelOf = (digest: Hex, peers: readonly string[]): Promise<ModelPackage | undefined> => {
    const ours = modelByDigest(models, digest);
    if (ours) return Promise.resolve(ours);
    let pending = fetched.get(digest);
    if (!pending) {
      pending = resolveModel(modelIdFromDigest(digest), { store, peers: [...peers, ...config.peers] }).catch(
        (error: unknown) => {
          fetched.delete(digest); // another peer may serve it later
          log.warn({ err: error, model: digest }, 'could not fetch a model to check');
          return undefined;
        },
      );
      fetched.set(digest, pending);
    }
    return pending;
  };

  /**
   * The role services the config names, each given only the components it uses: a provider answers
   * availability challenges against it, a verifier samples, a committee member judges.
   */
  let roleStore: RoleStore | undefined;
  const composeRoles = (chainParams: ChainParams): RoleServices => {
    const store = (roleStore = openRoleStore(join(config.dataDir, 'roles.sqlite')));
    const events = createEventReader({
      client: chain,
      cursors: { get: store.cursor, set: store.setCursor },
      confirmations: BigInt(config.chain.confirmations),
      maxBlockRange: BigInt(config.chain.maxLogBlockRange),
    });
    const base = { chain, serial, log, events, store };
    const judging = { ...base, engines, models: modelOf, providers: createProviderFetches() };
    const { pollIntervalMs } = config.verifier;
    return {
      ...(has('provider')
        ? { availability: availabilityAnswerer({ pollIntervalMs })({ ...base, data: availabilityData }) }
        : {}),
      ...(has('verifier')
        ? {
            sampler: sampler({
              sampleRate:
                config.verifier.sampleRate ??
                defaultSampleRate(
                  chainParams,
                  [...offers.values()].map((o) => answerPriceBound(o.pkg, o)),
                ),
              dataDeadlineMs: config.verifier.dataDeadlineMs,
              pollIntervalMs,
              url,
            })(judging),
          }
        : {}),
      ...(has('committee') ? { committee: committeeMember({ pollIntervalMs })(judging) } : {}),
    };
  };
  const availabilityData = (options.availabilityData ?? ((own) => own))(availabilityDataOf(db));

  const node: GlassboxNode = {
    address,
    signer: signer.address,
    config,
    chain,
    models,
    db,
    app,
    log,
    get url() {
      return url;
    },
    actions,
    async start() {
      if (state !== 'created') throw new Error('the node was already started');
      state = 'starting';
      try {
        await app.listen({ host: config.listen.host, port: config.listen.port });
        const { port } = app.server.address() as { port: number };
        const host = ['0.0.0.0', '::'].includes(config.listen.host) ? '127.0.0.1' : config.listen.host;
        url = (
          config.listen.publicUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`
        ).replace(/\/+$/, '');
        const chainParams = await readChainParams(chain);
        const { gasLimit } = await chain.publicClient.getBlock({ blockTag: 'latest' });
        checkChainLimits(config, chainParams, gasLimit, has('provider'));
        if (has('provider')) checkRedeemInterval(config.redeemIntervalMs, chainParams.withdrawalDelayMs);
        dataCapBytes = dataCap({ maxDataBytes: chainParams.maxDataBytes, blockGasLimit: gasLimit });
        if (has('provider') || has('committee')) {
          // Serving (or judging) under a profile no verifier runs would make answers uncheckable.
          if (!(await isRuntimeAdmitted(chain, engine.runtimeHash)))
            throw new GlassboxError(
              'PROFILE_MISMATCH',
              `this node's runtime profile ${engine.runtimeHash} is not admitted on chain: providers serve, and committee members judge, only under admitted profiles`,
              {
                field: 'runtime',
                metaMessages: [`profile: ${runtimeProfileJson(engine.profile)}`],
                details: { runtime: engine.runtimeHash, profile: engine.profile },
              },
            );
          actions.push(
            ...(await ensureProvider(chain, {
              endpoint: url,
              signer: signer.address,
              stake: config.stake,
              runtimes: await admittedRuntimes(chain, engines),
              voter: has('committee'),
            })),
          );
        }
        for (const { pkg, price, inputPrice } of has('provider') ? offers.values() : []) {
          actions.push(...(await serial(() => ensureModelRegistered(chain, pkg))));
          const refused =
            (await modelRefusal(chain, pkg)) ??
            (await runtimeRefusal(chain, engines, pkg)) ??
            (await loadRefusal(engines, pkg));
          if (refused) {
            // Serving it would expose this provider to slashing, or fail: refuse it, serve the rest.
            models.delete(pkg.id);
            log.error({ model: pkg.id, reason: refused }, 'model not served');
            continue;
          }
          actions.push(...(await serial(() => ensureOffer(chain, { model: pkg.id, price, inputPrice }))));
        }
        if (has('provider') && models.size === 0)
          throw new GlassboxError(
            'CONFIG_INVALID',
            'none of the configured models can be served (see the log)',
            {
              field: 'models',
            },
          );
        prices.forget();
        batcher = createBatcher({
          db,
          chain,
          serial,
          baseUrl: () => url,
          maxReceipts: config.batch.maxReceipts,
          maxAgeMs: config.batch.maxAgeMs,
          metrics,
          log,
        });
        redeemer = createRedeemer({ db, chain, serial, intervalMs: config.redeemIntervalMs, metrics, log });
        roles = composeRoles(chainParams);
        for (const service of Object.values(roles)) service.start();
        views = roleViews(roles, config.roles, address);
        pruner = createWorker({
          intervalMs: Math.max(1000, Math.min(config.challengeWindowMs, 60_000)),
          work: pruneByChainTime,
          onError: (error) => log.warn({ err: error }, 'pruning failed; retrying'),
        });
        pruner.start();
        state = 'ready';
        log.info(
          { url, provider: address, signer: signer.address, models: [...models.keys()], actions },
          'node ready',
        );
        return node;
      } catch (error) {
        state = 'stopping';
        await app.close().catch(() => undefined);
        await engines.close().catch(() => undefined);
        db.close();
        roleStore?.close();
        throw error;
      }
    },
    flushBatches: async () => batcher?.flush(),
    tickRoles: () => tickRoles(roles),
    redeemVouchers: async () => (redeemer ? redeemer.redeemAll() : 0n),
    prune,
    async stop() {
      if (state === 'stopping') return;
      const wasReady = state === 'ready';
      state = 'stopping';
      // Stops accepting; requests in flight finish first, within the grace period.
      const grace = setTimeout(() => app.server.closeAllConnections(), config.shutdownGraceMs);
      await app.close();
      clearTimeout(grace);
      await pruner?.stop();
      try {
        payments.flush(); // vouchers accepted with the last requests, before the final redemption
        if (wasReady) {
          for (const service of Object.values(roles)) await service.stop();
          await batcher?.stop();
          await redeemer?.stop();
        }
      } catch (error) {
        log.error({ err: error }, 'could not commit or redeem on stop; the next start will');
      } finally {
        await engines.close();
        db.close();
        roleStore?.close();
        log.info({ provider: address }, 'node stopped');
        log.flush?.();
      }
    },
  };
  return node;
}

/**
 * Why this node must not serve `pkg` under its engine, if it must not: the engine of THAT model (an
 * LLM's is the token engine, not the declared tensor engine) runs a profile the chain has not
 * admitted, so no verifier would accept its receipts.
 */
async function runtimeRefusal(
  chain: GlassboxClient,
  engines: Engines,
  pkg: ModelPackage,
): Promise<string | undefined> {
  let engine;
  try {
    engine = engineOf(engines, pkg);
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  if (await isRuntimeAdmitted(chain, engine.runtimeHash)) return undefined;
  return `run by an engine whose runtime profile ${engine.runtimeHash} (${engine.profile.engine}) is not admitted on chain`;
}

/**
 * The runtime profiles this node declares on chain: every engine's that is admitted (the tensor
 * engine's always is: start checked it). A committee member is drawn for a receipt only under a
 * runtime it declared, so a node that can re-check LLM generations declares its token engine's too.
 */
async function admittedRuntimes(chain: GlassboxClient, engines: Engines): Promise<Hex[]> {
  const hashes = [...new Set(engines.list.map((e) => e.runtimeHash))];
  const admitted = await Promise.all(hashes.map((h) => isRuntimeAdmitted(chain, h)));
  return hashes.filter((_, i) => admitted[i]);
}

/**
 * Why an LLM can't be served, if its engine can't load it. An LLM is loaded at start (its graph,
 * tokenizer and chat template checked, MODEL_INVALID naming the field otherwise): a broken package
 * is refused here rather than at a client's first request, which would also pay the load (seconds).
 */
async function loadRefusal(engines: Engines, pkg: ModelPackage): Promise<string | undefined> {
  if (pkg.manifest.format !== 'llm') return undefined;
  try {
    await engineOf(engines, pkg).load(pkg);
    return undefined;
  } catch (error) {
    return `not loadable: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/** Creates and starts a node: the one call `glassbox node start` makes. */
export async function startNode(
  input: NodeConfigInput | NodeConfig,
  options: CreateNodeOptions = {},
): Promise<GlassboxNode> {
  return (await createNode(input, options)).start();
}

/**
 * What the chain allows this node's config (audit C-1, L-1, L-2): retention must outlast the
 * challenge window plus an answer period (the clock starts at the commit block), and a batch must
 * be small enough that its receipt list can be published in one transaction.
 */
function checkChainLimits(
  config: NodeConfig,
  chain: Pick<ChainParams, 'challengeWindowMs' | 'answerPeriodMs'>,
  blockGasLimit: bigint,
  provider: boolean,
): void {
  if (!provider) return;
  const keep = chain.challengeWindowMs + chain.answerPeriodMs;
  if (config.challengeWindowMs < keep)
    throw new GlassboxError(
      'CONFIG_INVALID',
      `challengeWindowMs ${config.challengeWindowMs} is shorter than the chain's challenge window plus an answer period (${keep} ms): the node would prune data it can still be challenged for`,
      { field: 'challengeWindowMs' },
    );
  const most = batchCap(blockGasLimit);
  if (config.batch.maxReceipts > most)
    throw new GlassboxError(
      'CONFIG_INVALID',
      `batch.maxReceipts ${config.batch.maxReceipts} is more than this chain can take back in one answer (${most} with a block gas limit of ${blockGasLimit}): a batch challenge could not be answered`,
      { field: 'batch.maxReceipts', details: { max: most } },
    );
}

/**
 * A client can withdraw what providers have not redeemed one withdrawal delay after it asks, and
 * the node notices the request only at its next read of the escrow: a redemption must come well
 * within the delay, or what was served meanwhile is lost (audit H-2). 0 means "only on stop" (tests,
 * and operators who redeem by hand; docs/node.md says what that risks).
 */
function checkRedeemInterval(intervalMs: number, withdrawalDelayMs: number): void {
  if (intervalMs > 0 && intervalMs * 2 >= withdrawalDelayMs)
    throw new GlassboxError(
      'CONFIG_INVALID',
      `redeemIntervalMs ${intervalMs} is not below half the chain's withdrawal delay (${withdrawalDelayMs} ms): a client could withdraw what the node served before it redeems`,
      { field: 'redeemIntervalMs', details: { redeemIntervalMs: intervalMs, withdrawalDelayMs } },
    );
}

async function loadDeployment(config: NodeConfig): Promise<Deployment> {
  if (config.chain.deploymentFile !== undefined) return readDeployment(config.chain.deploymentFile);
  const d = config.chain.deployment as Record<string, unknown>;
  return typeof d === 'object' && d !== null && typeof d.schema === 'string'
    ? deploymentFromJson(d)
    : (d as unknown as Deployment);
}
