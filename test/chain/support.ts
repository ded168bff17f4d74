import { keccak256, toHex, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import {
  connect,
  deployGlassbox,
  mintDevTokens,
  registerModel,
  registerProvider,
  setRuntimes,
  setVoter,
  openChallenge,
  drawCommittee,
  startAnvil,
  withAccount,
  type Anvil,
  isContractRevert,
  type ChainParams,
  type ContractErrorName,
  type Deployment,
  type GlassboxClient,
} from '../../src/chain/index.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { modelIdFromDigest } from '../../src/protocol/manifest.js';
import { runtimeProfileJson } from '../../src/protocol/runtime-profile.js';
import { defaultProfiles } from '../../src/runtime/index.js';
import type { Receipt } from '../../src/protocol/receipt.js';

export const E18 = 10n ** 18n;

/** Short, whole-second delays so tests can jump over them with evm_increaseTime. */
export const TEST_PARAMS: Partial<ChainParams> = {
  minStake: 100n * E18,
  unbondingDelayMs: 10_000_000,
  priceNoticeMs: 3_600_000,
  withdrawalDelayMs: 86_400_000,
  challengeBond: 10n * E18,
  committeeSize: 3,
  commitPeriodMs: 600_000,
  revealPeriodMs: 600_000,
  slashBps: 5000,
  rewardBps: 5000,
  votePenalty: 1n * E18,
  answerPeriodMs: 600_000,
  challengeWindowMs: 1_800_000,
  paymentHoldMs: 3_600_000,
  maxDataBytes: 64 * 1024,
};

/** Past the hold of a redemption made now, whatever its slot: a hold bucket pays at most hold/8 late. */
export const HOLD_DUE_MS = (TEST_PARAMS.paymentHoldMs! * 9) / 8 + 1000;

/**
 * The runtime profiles a test chain admits: `TEST_RUNTIME` (whose hash is `h('runtime')`, the
 * runtime of `makeReceipt`'s receipts) and the (ONNX) engine's default profile, which the test
 * providers and nodes serve under.
 */
export const TEST_RUNTIME = 'runtime';
export const ENGINE_RUNTIME = runtimeProfileJson(defaultProfiles()[0]!);
export const ENGINE_RUNTIME_HASH = keccak256(toHex(ENGINE_RUNTIME));

export type TestChain = {
  readonly anvil: Anvil;
  readonly deployment: Deployment;
  /** Client acting as dev account `i` (0 is the deployer and treasury). */
  as(i: number): GlassboxClient;
  address(i: number): Address;
  key(i: number): Hex;
  rpc<T = unknown>(method: string, params?: unknown[]): Promise<T>;
  /** Moves chain time forward by `ms` and mines a block. */
  increaseTime(ms: number): Promise<void>;
  /** Back to the state right after deployment and funding (or the last `rebase`). */
  reset(): Promise<void>;
  /** Makes the current state the one `reset` returns to. */
  rebase(): Promise<void>;
  stop(): Promise<void>;
};

/** Starts anvil on a free port, deploys, mints 10,000 tokens to accounts 1..n-1, and snapshots. */
export async function startTestChain(
  params: Partial<ChainParams> = TEST_PARAMS,
  accounts = 12,
  runtimes: readonly string[] = [TEST_RUNTIME, ENGINE_RUNTIME],
): Promise<TestChain> {
  const anvil = await startAnvil({ accounts });
  try {
    const deployment = await deployGlassbox({
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      account: anvil.accounts[0]!.privateKey,
      params,
      runtimes,
      pollingIntervalMs: 5,
    });
    const base: GlassboxClient = {
      ...connect({ rpcUrl: anvil.rpcUrl, chainId: anvil.chainId, pollingIntervalMs: 5 }),
      deployment,
    };
    const clients = anvil.accounts.map((a) => withAccount(base, a.privateKey));
    for (let i = 1; i < anvil.accounts.length; i++)
      await mintDevTokens(clients[0]!, { to: anvil.accounts[i]!.address, amount: 10_000n * E18 });
    const rpc = async <T>(method: string, p: unknown[] = []): Promise<T> => {
      const res = await fetch(anvil.rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: p }),
      });
      const body = (await res.json()) as { result?: T; error?: { message: string } };
      if (body.error) throw new Error(`${method}: ${body.error.message}`);
      return body.result as T;
    };
    let snapshot = await rpc<string>('evm_snapshot');
    return {
      anvil,
      deployment,
      as: (i) => clients[i]!,
      address: (i) => anvil.accounts[i]!.address,
      key: (i) => anvil.accounts[i]!.privateKey,
      rpc,
      increaseTime: async (ms) => {
        await rpc('evm_increaseTime', [Math.ceil(ms / 1000)]);
        await rpc('evm_mine');
      },
      reset: async () => {
        await rpc('evm_revert', [snapshot]);
        snapshot = await rpc<string>('evm_snapshot');
      },
      rebase: async () => {
        snapshot = await rpc<string>('evm_snapshot');
      },
      stop: () => anvil.stop(),
    };
  } catch (error) {
    await anvil.stop();
    throw error;
  }
}

/** Expects `promise` to reject with custom error `name` (a name our ABIs lack does not compile). */
export async function expectRevert(promise: Promise<unknown>, name: ContractErrorName): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected a revert with ${name}`).toBeDefined();
  if (!isGlassboxError(error, 'CHAIN_REVERTED')) throw error;
  expect(error.details.error).toBe(name);
  expect(isContractRevert(error, name)).toBe(true);
}

export const h = (label: string): Hex => keccak256(toHex(label));

/** A fresh model id (a CIDv1 over a digest derived from `label`). */
export const modelOf = (label: string): string => modelIdFromDigest(h(`model:${label}`));

export async function registerTestModel(
  chain: TestChain,
  label: string,
  exact = true,
  owner = 0,
): Promise<string> {
  const model = modelOf(label);
  await registerModel(chain.as(owner), { model, exact, metadata: JSON.stringify({ name: label }) });
  return model;
}

export function signerAddress(key: Hex): Address {
  return privateKeyToAccount(key).address;
}

export function makeReceipt(over: Partial<Receipt> & { provider: Address; model: Hex }): Receipt {
  return {
    requestId: h(`req:${Math.random()}`),
    client: '0x000000000000000000000000000000000000c11e',
    inputHash: h('input'),
    outputHash: h('output'),
    paramsHash: `0x${'0'.repeat(64)}`,
    runtime: h(TEST_RUNTIME),
    traceRoot: `0x${'0'.repeat(64)}`,
    price: 1000n,
    // now, so the receipt is inside the challenge window (chain time follows the clock here)
    timestamp: BigInt(Date.now()),
    ...over,
  };
}

/** Registers the account as a provider that opted in to committee duty under `runtime`. */
export async function registerVoter(
  client: GlassboxClient,
  params: Parameters<typeof registerProvider>[1],
  runtime: Hex = h(TEST_RUNTIME),
): Promise<void> {
  await registerProvider(client, params);
  await setRuntimes(client, [runtime]);
  await setVoter(client, true);
}

/** Mines empty blocks until the chain's latest block is at least `block`. */
export async function mineTo(chain: TestChain, block: bigint): Promise<void> {
  const latest = await chain.as(0).publicClient.getBlockNumber();
  if (latest < block) await chain.rpc('anvil_mine', [`0x${(block - latest).toString(16)}`]);
}

/**
 * Opens a challenge and draws its committee: mines past the block whose hash seeds the draw (a
 * call simulated at the latest block needs the draw block behind it), then draws, as a
 * verifier's node does once the draw block is there.
 */
export async function openAndDraw(
  chain: TestChain,
  client: GlassboxClient,
  params: Parameters<typeof openChallenge>[1],
): Promise<Awaited<ReturnType<typeof openChallenge>> & { committee: readonly Address[] }> {
  const opened = await openChallenge(client, params);
  await mineTo(chain, opened.drawBlock + 1n);
  const { committee } = await drawCommittee(client, opened.challengeId);
  return { ...opened, committee };
}

/**
 * Registers the hooks the chain test files share: one chain for the file (started before its
 * tests, stopped after them) and, unless `resetEach` is false, back at its snapshot before each
 * test. `chain()` is valid inside tests and later hooks.
 */
export function useTestChain(
  params: Partial<ChainParams> = TEST_PARAMS,
  accounts = 12,
  options: { resetEach?: boolean } = {},
): () => TestChain {
  let chain: TestChain | undefined;
  beforeAll(async () => {
    chain = await startTestChain(params, accounts);
  });
  afterAll(async () => {
    await chain?.stop();
  });
  if (options.resetEach ?? true)
    beforeEach(async () => {
      await chain!.reset();
    });
  return () => chain!;
}
