import type { Hex } from 'viem';
import { deposit, registerModel } from '../../../src/chain/index.js';
import type { ModelPackage } from '../../../src/protocol/manifest.js';
import type { TensorEngine } from '../../../src/runtime/index.js';
import { afterAll, afterEach, beforeAll } from 'vitest';
import {
  closeClient,
  createClient,
  type Client,
  type CreateClientParameters,
} from '../../../src/sdk/index.js';
import { createMemoryStore, loadModel, packModelFolder, type BlobStore } from '../../../src/store/index.js';
import { E18, startTestChain, TEST_PARAMS, type TestChain } from '../../chain/support.js';
import { exampleDir, exampleEngine } from '../../support/examples.js';
import { startTestProvider, type Faults, type TestProvider } from './provider.js';

/*
 * A small real network for SDK tests: anvil with Glassbox deployed, the example models packed and
 * registered (exact on chain when their policy is exact), and test providers on loopback.
 */

export const MIN_STAKE = TEST_PARAMS.minStake!;
/** Dev accounts 1..8 are providers; 10 and 11 are clients. */
export const CLIENT_ACCOUNT = 10;

export type Network = {
  readonly chain: TestChain;
  readonly store: BlobStore;
  readonly engine: TensorEngine;
  readonly models: Record<'iris' | 'iris-int8', ModelPackage>;
  readonly providers: TestProvider[];
  startProvider(p: {
    account: number;
    price: bigint;
    stake?: bigint;
    faults?: Faults;
    models?: ModelPackage[];
    port?: number;
  }): Promise<TestProvider>;
  client(over?: Partial<CreateClientParameters>, account?: number): Promise<Client>;
  /** Stops the providers started since the last reset and reverts the chain to just after setup. */
  reset(): Promise<void>;
  stop(): Promise<void>;
};

export async function startNetwork(): Promise<Network> {
  const chain = await startTestChain();
  const store = createMemoryStore();
  const engine = exampleEngine();
  const pack = async (name: 'iris' | 'iris-int8') => {
    const { id } = await packModelFolder(store, exampleDir(name));
    const pkg = await loadModel(store, id);
    await registerModel(chain.as(0), { model: id, exact: pkg.manifest.policy.kind === 'exact' });
    return pkg;
  };
  const models = { iris: await pack('iris'), 'iris-int8': await pack('iris-int8') };
  const providers: TestProvider[] = [];
  for (const i of [CLIENT_ACCOUNT, CLIENT_ACCOUNT + 1]) await deposit(chain.as(i), 1000n * E18);
  await chain.rebase();
  return {
    chain,
    store,
    engine,
    models,
    providers,
    startProvider: async ({ account, price, stake, faults, models: served, port }) => {
      const p = await startTestProvider({
        chain: chain.as(account),
        store,
        engine,
        models: served ?? Object.values(models),
        price,
        stake: stake ?? MIN_STAKE,
        ...(faults ? { faults } : {}),
        ...(port === undefined ? {} : { port }),
      });
      providers.push(p);
      return p;
    },
    client: (over = {}, account = CLIENT_ACCOUNT) =>
      createClient({
        rpcUrl: chain.anvil.rpcUrl,
        chainId: chain.anvil.chainId,
        deployment: chain.deployment,
        account: chain.key(account) as Hex,
        pollingIntervalMs: 5,
        discoveryTtlMs: 60_000,
        ...over,
      }),
    reset: async () => {
      await Promise.all(providers.splice(0).map((p) => p.stop()));
      await chain.reset();
    },
    stop: async () => {
      await Promise.all(providers.map((p) => p.stop()));
      await engine.close();
      await chain.stop();
    },
  };
}

/**
 * Registers the hooks most SDK test files share: one network for the file, reset to its snapshot
 * and with the clients it handed out closed after each test. `net()` is valid inside tests.
 */
export function useNetwork(): {
  net: () => Network;
  newClient: (over?: Parameters<Network['client']>[0]) => Promise<Client>;
} {
  let network: Network | undefined;
  const clients: Client[] = [];
  beforeAll(async () => {
    network = await startNetwork();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => closeClient(c)));
    await network!.reset();
  });
  afterAll(async () => {
    await network?.stop();
  });
  return {
    net: () => network!,
    newClient: async (over) => {
      const c = await network!.client(over);
      clients.push(c);
      return c;
    },
  };
}
