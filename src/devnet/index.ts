import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Address, Hex } from 'viem';
import { mnemonicToAccount } from 'viem/accounts';
import {
  ANVIL_MNEMONIC,
  connect,
  deployGlassbox,
  deposit,
  getModel,
  mintDevTokens,
  registerModel,
  startAnvil,
  withAccount,
  writeDeployment,
  type Anvil,
  type ChainParams,
  type Deployment,
  type GlassboxClient,
} from '../chain/index.js';
import { GlassboxError } from '../protocol/errors.js';
import type { TokenPrices } from '../protocol/llm.js';
import type { ModelId, ModelManifest } from '../protocol/manifest.js';
import { runtimeProfileJson } from '../protocol/runtime-profile.js';
import { defaultProfiles } from '../runtime/index.js';
import { createClient, type Client, type CreateClientParameters } from '../sdk/index.js';
import { createFsStore, packModelFolder } from '../store/index.js';

/*
 * The local network in one call: anvil, the contracts, funded accounts, the example models
 * registered on chain, and N provider nodes, each its own process (`glassbox node start`), on
 * loopback ports. What `glassbox devnet` and `npm start` run, and what the end-to-end tests use.
 */

const E18 = 10n ** 18n;

/** Short delays, so that a demo can see notice periods and withdrawals pass. */
export const DEVNET_PARAMS: Partial<ChainParams> = {
  minStake: 100n * E18,
  unbondingDelayMs: 30 * 60_000,
  priceNoticeMs: 5 * 60_000,
  withdrawalDelayMs: 5 * 60_000,
  challengeBond: 10n * E18,
  committeeSize: 3,
  commitPeriodMs: 2 * 60_000,
  revealPeriodMs: 2 * 60_000,
  answerPeriodMs: 60_000,
  challengeWindowMs: 5 * 60_000,
  paymentHoldMs: 10 * 60_000,
};

/** A tensor model's price per inference on a devnet provider (0.001 token). */
export const DEVNET_PRICE = 10n ** 15n;

/**
 * An LLM's prices per token on a devnet provider: 1 token per million output tokens, 0.25 per
 * million prompt tokens. Per-token prices are far below a per-inference price: a generation is
 * hundreds of tokens, and a request reserves credit for its worst case (prompt plus max_tokens).
 */
export const DEVNET_TOKEN_PRICES: TokenPrices = { inputPrice: 25n * 10n ** 10n, outputPrice: 10n ** 12n };

/** The models a devnet publishes and its providers serve by default. */
export const DEVNET_MODELS = ['iris', 'iris-int8', 'cnn', 'tiny-chat'] as const;

/** The built CLI: devnet providers run it as separate processes (also when this file runs from src/). */
const CLI_MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
/** The example models' folders, built by `npm run models`. */
const EXAMPLES = fileURLToPath(new URL('../../examples/models/build/', import.meta.url));

export type DevnetProviderOptions = {
  /** A tensor model's price per inference in base units (default 1e15 = 0.001 token). */
  readonly price?: bigint;
  /**
   * An LLM's prices per token in base units (default DEVNET_TOKEN_PRICES: 1 token per million
   * output tokens, a quarter of that per prompt token).
   */
  readonly tokenPrices?: TokenPrices;
  /**
   * What the provider process runs, as node's arguments, instead of the built CLI's `glassbox node
   * start`; `--config <file> --json` is appended, and it must print the same ready line. Tests run
   * providers with faults this way (test/support/faults.ts, `faultyProvider`).
   */
  readonly entry?: readonly string[];
  /**
   * Node config fields for this provider alone, over the devnet's and `nodeConfig`'s (a provider
   * that rate-limits its clients harder, stakes more).
   */
  readonly nodeConfig?: Record<string, unknown>;
};

export type DevnetOptions = {
  readonly providers?: number;
  /** Verifier nodes (`--role verifier`): sample, re-execute and challenge. */
  readonly verifiers?: number;
  /** Staked committee nodes (`--role committee`): drawn onto committees to vote. */
  readonly committee?: number;
  /**
   * Mine an empty block this often (ms). anvil makes blocks only for transactions, and a verifier
   * samples a batch with the hash of the block after its commit, which a quiet devnet would never
   * make. Default: 1000 when there are verifiers, else none (a real chain makes its own blocks).
   */
  readonly blockIntervalMs?: number;
  /** Extra node config for verifier and committee nodes (e.g. `verifier.sampleRate`). */
  readonly roleConfig?: Record<string, unknown>;
  /** Per-provider settings, by index. */
  readonly provider?: (index: number) => DevnetProviderOptions;
  /** Model folders to publish (default: the example models). */
  readonly models?: readonly string[];
  /** Where the devnet keeps its files (default: a new temporary folder). */
  readonly dir?: string;
  /**
   * The model store the devnet packs its models into and its providers read (default: `<dir>/store`).
   * `glassbox devnet` passes the user's store, so the CLI sees the devnet's models and its providers
   * see the models the user pushes.
   */
  readonly store?: string;
  readonly params?: Partial<ChainParams>;
  /** Extra node config fields for every provider (batch sizes, credit, log level…). */
  readonly nodeConfig?: Record<string, unknown>;
  /**
   * Funded accounts that no node uses, for a caller that acts as a third party (a rogue
   * challenger). Never send from a node's account: two processes sending with one key race for
   * its nonces, and a multi-step action of one (approve, then spend) can be undone by the other.
   */
  readonly spareAccounts?: number;
  /** Progress lines for people. */
  readonly log?: (line: string) => void;
};

export type DevnetProvider = {
  readonly index: number;
  readonly address: Address;
  readonly signer: Address;
  readonly configFile: string;
  /** Its data dir: database, admin token. */
  readonly dataDir: string;
  url: string;
  process: ChildProcess;
  /** Stops the process with `signal` (SIGKILL to simulate a crash) and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the process again with the same config and data. */
  restart(): Promise<void>;
};

export type Devnet = {
  readonly anvil: Anvil;
  readonly rpcUrl: string;
  readonly chainId: number;
  readonly deployment: Deployment;
  readonly deploymentFile: string;
  readonly dir: string;
  /** Whether `dir` is a temporary folder the devnet made, and removes when it stops. */
  readonly temporary: boolean;
  /** The model store its providers share. */
  readonly store: string;
  /** A funded client with a deposit in the escrow. */
  readonly client: { readonly address: Address; readonly privateKey: Hex };
  /** Funded accounts that no node and not the client use (`spareAccounts`). */
  readonly spare: readonly { readonly address: Address; readonly privateKey: Hex }[];
  readonly models: readonly DevnetModel[];
  readonly providers: readonly DevnetProvider[];
  readonly verifiers: readonly DevnetProvider[];
  readonly committee: readonly DevnetProvider[];
  /** Moves the chain's clock forward and mines a block: a devnet need not wait out holds and periods. */
  advanceTime(ms: number): Promise<void>;
  stop(): Promise<void>;
};

export type DevnetModel = {
  readonly name: string;
  readonly id: ModelId;
  readonly folder: string;
  /** An LLM's context in tokens (prompt and output together); absent for a tensor model. */
  readonly contextLength?: number;
};

/** Dev account `i` of anvil's mnemonic, as a key. */
function devKey(index: number): { address: Address; privateKey: Hex } {
  const account = mnemonicToAccount(ANVIL_MNEMONIC, { addressIndex: index });
  return {
    address: account.address,
    privateKey: `0x${Buffer.from(account.getHdKey().privateKey!).toString('hex')}`,
  };
}

export async function startDevnet(options: DevnetOptions = {}): Promise<Devnet> {
  const count = options.providers ?? 3;
  const log = options.log ?? (() => undefined);
  // A folder the devnet made is removed when it stops (node databases and stores grow to hundreds of MB).
  const temporary = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'glassbox-devnet-')));
  await mkdir(dir, { recursive: true });
  // Accounts: 0 deploys and publishes models, 1..nodes stake as providers, verifiers and committee
  // members, the next is the client, then the spare ones; signing keys come from indices 100+, so
  // that they differ from the staking accounts.
  const verifierCount = options.verifiers ?? 0;
  const committeeCount = options.committee ?? 0;
  const nodes = count + verifierCount + committeeCount;
  const spareCount = options.spareAccounts ?? 0;
  const anvil = await startAnvil({ accounts: nodes + 2 + spareCount });
  const providers: DevnetProvider[] = [];
  const verifiers: DevnetProvider[] = [];
  const committee: DevnetProvider[] = [];
  // filled as they start (in parallel, so possibly with holes): stop() and a failed start stop
  // every one that did
  const all = () => [...providers, ...verifiers, ...committee].filter((p) => p !== undefined);
  try {
    const deployer = anvil.accounts[0]!;
    const deployment = await deployGlassbox({
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      account: deployer.privateKey,
      params: { ...DEVNET_PARAMS, ...options.params },
      runtimes: defaultProfiles().map(runtimeProfileJson), // what the devnet's nodes run
      pollingIntervalMs: 10,
    });
    const deploymentFile = join(dir, 'deployment.json');
    await writeDeployment(deploymentFile, deployment);
    log(`chain    ${anvil.rpcUrl} (chain id ${anvil.chainId}), contracts deployed`);

    const connection = connect({ rpcUrl: anvil.rpcUrl, chainId: anvil.chainId, pollingIntervalMs: 10 });
    const as = (key: Hex): GlassboxClient => withAccount({ ...connection, deployment }, key);
    const owner = as(deployer.privateKey);
    const client = anvil.accounts[nodes + 1]!;
    const spare = anvil.accounts.slice(nodes + 2, nodes + 2 + spareCount);
    for (const account of [...anvil.accounts.slice(1, nodes + 1), client, ...spare])
      await mintDevTokens(owner, { to: account.address, amount: 10_000n * E18 });
    await deposit(as(client.privateKey), 1_000n * E18);

    const storeDir = options.store ?? join(dir, 'store');
    const store = createFsStore(storeDir);
    const models: DevnetModel[] = [];
    for (const folder of options.models ?? DEVNET_MODELS.map((m) => join(EXAMPLES, m))) {
      const { id, manifest } = await packModelFolder(store, folder);
      if (!(await getModel(owner, id)))
        await registerModel(owner, {
          model: id,
          exact: manifest.policy.kind === 'exact',
          metadata: JSON.stringify({ name: manifest.name, version: manifest.version }),
        });
      models.push({ name: manifest.name, id, folder, ...contextOf(manifest) });
      log(`model    ${manifest.name} ${manifest.version} ${id}`);
    }

    const writeConfig = async (
      name: string,
      index: number,
      entry: readonly string[] | undefined,
      own: Record<string, unknown> | undefined,
      config: Record<string, unknown>,
    ) => {
      const dataDir = join(dir, name);
      await mkdir(dataDir, { recursive: true });
      const configFile = join(dataDir, 'config.json');
      const staking = anvil.accounts[index + 1]!;
      const signing = devKey(100 + index);
      const full = {
        chain: { rpcUrl: anvil.rpcUrl, chainId: anvil.chainId, deploymentFile, pollingIntervalMs: 10 },
        keys: { stakingKey: staking.privateKey, signingKey: signing.privateKey },
        dataDir,
        store: storeDir,
        peers: [],
        logLevel: 'warn',
        // A chat that names no max_tokens may generate the rest of tiny-chat's 4,096-token context:
        // ~35 s of one core here, ~70 s with the cores shared; the default 30 s limit would cut it.
        runTimeoutMs: 180_000,
        ...config,
        // last, so that a caller's credit limit or batch size wins over the devnet's defaults
        ...options.nodeConfig,
        ...own,
      };
      await writeFile(configFile, JSON.stringify(full, null, 2));
      return spawnProvider(index, staking.address, signing.address, dataDir, entry);
    };

    const providerNode = async (i: number) => {
      const settings = options.provider?.(i) ?? {};
      const price = settings.price ?? DEVNET_PRICE;
      const tokens = settings.tokenPrices ?? DEVNET_TOKEN_PRICES;
      return writeConfig(`provider-${i}`, i, settings.entry, settings.nodeConfig, {
        models: models.map((m) => offerOf(m, price, tokens)),
        // What a model pushed with `glassbox model push --serve` is offered at when the push names
        // no price (an LLM's prompt tokens at the input price; a tensor model's is always 0).
        defaultPrice: price.toString(),
        defaultInputPrice: tokens.inputPrice.toString(),
        creditLimit: creditLimit(models, price, tokens).toString(),
        stake: (1_000n * E18).toString(),
      });
    };
    const roleNode = (role: 'verifier' | 'committee', i: number, index: number) =>
      writeConfig(`${role}-${i}`, index, undefined, undefined, {
        roles: [role],
        // held to re-execute and re-check (an LLM by teacher forcing), not offered
        models: models.map((m) => offerOf(m, DEVNET_PRICE, DEVNET_TOKEN_PRICES)),
        stake: role === 'committee' ? (1_000n * E18).toString() : '0',
        ...options.roleConfig,
      });
    // All nodes start at once: each has its own account (no nonce races), and a node's start is
    // mostly loading its code and models and waiting for its registration transactions, which
    // overlap. One after another, ten nodes took ten times one node's start.
    const range = (n: number) => Array.from({ length: n }, (_, i) => i);
    await startAll([
      ...range(count).map((i) => async () => {
        providers[i] = await providerNode(i);
      }),
      ...range(verifierCount).map((i) => async () => {
        verifiers[i] = await roleNode('verifier', i, count + i);
      }),
      ...range(committeeCount).map((i) => async () => {
        committee[i] = await roleNode('committee', i, count + verifierCount + i);
      }),
    ]);
    for (const p of providers) log(`provider ${p.index} ${p.url} staking ${p.address} signing ${p.signer}`);
    for (const [i, p] of verifiers.entries()) log(`verifier ${i} ${p.url} account ${p.address}`);
    for (const [i, p] of committee.entries()) log(`committee ${i} ${p.url} account ${p.address}`);
    const blockIntervalMs = options.blockIntervalMs ?? (verifierCount > 0 ? 1000 : 0);
    const miner =
      blockIntervalMs > 0
        ? setInterval(() => {
            void connection.publicClient.request({ method: 'evm_mine' } as never).catch(() => undefined);
          }, blockIntervalMs)
        : undefined;
    miner?.unref();

    return {
      anvil,
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      deployment,
      deploymentFile,
      dir,
      store: storeDir,
      client,
      spare,
      models,
      providers,
      verifiers,
      committee,
      advanceTime: async (ms) => {
        await connection.publicClient.request({
          method: 'evm_increaseTime',
          params: [Math.ceil(ms / 1000)],
        } as never);
        await connection.publicClient.request({ method: 'evm_mine' } as never);
      },
      temporary,
      stop: async () => {
        clearInterval(miner);
        await Promise.all(all().map((p) => p.kill('SIGTERM')));
        await anvil.stop();
        if (temporary) await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await Promise.all(all().map((p) => p.kill('SIGKILL')));
    await anvil.stop();
    if (temporary) await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Runs every start at once and waits for all of them; throws the first failure once all have ended. */
async function startAll(starts: readonly (() => Promise<void>)[]): Promise<void> {
  const results = await Promise.allSettled(starts.map((start) => start()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

function contextOf(manifest: ModelManifest): { contextLength?: number } {
  return manifest.format === 'llm' ? { contextLength: manifest.llm.contextLength } : {};
}

/** A node config's entry for `model`: an LLM at its per-token pair, a tensor model per inference. */
function offerOf(model: DevnetModel, price: bigint, tokens: TokenPrices) {
  return model.contextLength === undefined
    ? { model: model.id, price: price.toString() }
    : { model: model.id, price: tokens.outputPrice.toString(), inputPrice: tokens.inputPrice.toString() };
}

/**
 * Pay-after credit: what a client may owe before it must send a voucher. It must cover 100 tensor
 * answers, and 10 of the dearest LLM requests a client can send: a generation reserves its worst
 * case up front (its prompt and max_tokens, which defaults to the rest of the context), so a credit
 * sized by the per-inference price alone would answer 402 to a chat that names no max_tokens. The
 * worst case is bounded by the context: prompt + output <= contextLength, each token at most the
 * dearer of the two prices.
 */
export function creditLimit(models: readonly DevnetModel[], price: bigint, tokens: TokenPrices): bigint {
  const dearest = tokens.inputPrice > tokens.outputPrice ? tokens.inputPrice : tokens.outputPrice;
  const worstGeneration = BigInt(Math.max(0, ...models.map((m) => m.contextLength ?? 0))) * dearest;
  const tensors = price * 100n;
  const generations = worstGeneration * 10n;
  return tensors > generations ? tensors : generations;
}

/**
 * Starts `glassbox node start --config <file>` (or `entry` with the same arguments) and waits for
 * its ready line: {"ready": true, "url": ...}.
 */
async function spawnProvider(
  index: number,
  address: Address,
  signer: Address,
  dataDir: string,
  entry: readonly string[] = [CLI_MAIN, 'node', 'start'],
): Promise<DevnetProvider> {
  const configFile = join(dataDir, 'config.json');
  const provider: DevnetProvider = {
    index,
    address,
    signer,
    configFile,
    dataDir,
    url: '',
    process: undefined as unknown as ChildProcess,
    kill: async (signal = 'SIGTERM') => {
      const child = provider.process;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill(signal);
      await exited;
    },
    restart: async () => {
      await provider.kill('SIGTERM');
      await launch();
    },
  };
  const launch = async () => {
    const child = spawn(process.execPath, [...entry, '--config', configFile, '--json'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    provider.process = child;
    provider.url = await new Promise<string>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      const fail = (why: string) =>
        reject(new GlassboxError('PROVIDER_UNAVAILABLE', `provider ${index} did not start: ${why}`));
      child.once('exit', (code, signal) => fail(`exited with ${signal ?? code}`));
      lines.on('line', (line) => {
        try {
          const event = JSON.parse(line) as { ready?: boolean; url?: string };
          if (event.ready && event.url) resolve(event.url);
        } catch {
          // not a JSON line: the node's own output, ignored
        }
      });
    });
  };
  await launch();
  // Restarts keep the address: pin the port the node picked in its config.
  const config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;
  await writeFile(
    configFile,
    JSON.stringify({ ...config, listen: { port: Number(new URL(provider.url).port) } }, null, 2),
  );
  return provider;
}

/** A client of the devnet acting as its funded client account (overrides: SDK options). */
export function devnetClient(
  devnet: Devnet,
  overrides: Partial<CreateClientParameters> = {},
): Promise<Client> {
  return createClient({
    rpcUrl: devnet.rpcUrl,
    chainId: devnet.chainId,
    deployment: devnet.deployment,
    account: devnet.client.privateKey,
    pollingIntervalMs: 20,
    ...overrides,
  });
}
