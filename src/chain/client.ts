import {
  BaseError,
  createPublicClient,
  createWalletClient,
  defineChain,
  encodeFunctionData,
  http,
  keccak256,
  NonceTooLowError,
  parseEventLogs,
  type Abi,
  type Account,
  type Address,
  type Chain,
  type Hex,
  type Log,
  type PublicClient,
  type TransactionReceipt,
  type Transport,
  type WalletClient,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { GlassboxError } from '../protocol/errors.js';
import type { Deployment } from './deployment.js';
import { decodeRevert, toChainError } from './errors.js';

/** A chain as viem sees it, for any RPC URL and chain id (nothing anvil-specific). */
export function glassboxChain(rpcUrl: string, chainId: number): Chain {
  return defineChain({
    id: chainId,
    name: `glassbox-${chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
}

export type ChainConnection = {
  readonly rpcUrl: string;
  readonly chainId: number;
  readonly publicClient: PublicClient<Transport, Chain>;
  /** Present when the connection can send transactions. */
  readonly walletClient?: WalletClient<Transport, Chain, Account>;
  /** Set on the client `exclusive` hands its task: its sends skip the lane it already holds. */
  readonly holds?: Lease;
};

/** A connection plus the deployed Glassbox contracts: the first argument of every action. */
export type GlassboxClient = ChainConnection & { readonly deployment: Deployment };

export type ConnectParameters = {
  readonly rpcUrl: string;
  readonly chainId: number;
  /** A private key (0x-hex) or a viem account; without one the client is read-only. */
  readonly account?: Hex | Account;
  /** Receipt polling interval in ms (default 1000 for public chains; use ~5 on anvil). */
  readonly pollingIntervalMs?: number;
};

export function connect(params: ConnectParameters): ChainConnection {
  const chain = glassboxChain(params.rpcUrl, params.chainId);
  const pollingInterval = params.pollingIntervalMs ?? 1000;
  const transport = http(params.rpcUrl, { retryCount: 2 });
  const publicClient = createPublicClient({ chain, transport, pollingInterval, cacheTime: 0 });
  const base = { rpcUrl: params.rpcUrl, chainId: params.chainId, publicClient };
  if (params.account === undefined) return base;
  const account = typeof params.account === 'string' ? privateKeyToAccount(params.account) : params.account;
  const walletClient = createWalletClient({ chain, transport, account, pollingInterval, cacheTime: 0 });
  return { ...base, walletClient };
}

/** The same client acting as another account (shares the public client). */
export function withAccount(client: GlassboxClient, account: Hex | Account): GlassboxClient {
  const acc = typeof account === 'string' ? privateKeyToAccount(account) : account;
  const walletClient = createWalletClient({
    chain: client.publicClient.chain,
    transport: http(client.rpcUrl, { retryCount: 2 }),
    account: acc,
    pollingInterval: client.publicClient.pollingInterval,
    cacheTime: 0,
  });
  return { ...client, walletClient };
}

/** Checks that the RPC serves `chainId`; CHAIN_ID_MISMATCH otherwise. */
export async function assertChainId(connection: ChainConnection, chainId: number): Promise<void> {
  let actual: number;
  try {
    actual = await connection.publicClient.getChainId();
  } catch (error) {
    throw toChainError(error, 'eth_chainId');
  }
  if (actual !== chainId)
    throw new GlassboxError('CHAIN_ID_MISMATCH', `the RPC serves chain ${actual}, not ${chainId}`, {
      details: { expected: chainId, actual },
    });
}

export function accountOf(connection: ChainConnection): Account {
  const account = connection.walletClient?.account;
  if (!account)
    throw new GlassboxError('USAGE', 'this action sends a transaction: connect with an account', {
      field: 'account',
    });
  return account;
}

export type TxResult = {
  readonly hash: Hex;
  readonly gasUsed: bigint;
  readonly blockNumber: bigint;
  readonly receipt: TransactionReceipt;
};

type Call = {
  readonly address: Address;
  readonly abi: Abi;
  readonly functionName: string;
  readonly args?: readonly unknown[];
};

/*
 * One transaction sender per account. In a process, every transaction of an account goes through
 * that account's lane, one at a time, and each waits for its receipt before the next is prepared.
 * Without it, two flows of one account (a batch commit and a redemption; a test and the node it
 * drives; two challenges) read the same pending nonce and both send with it: the chain takes one
 * and answers the other "nonce too low". The nonce is read from the chain ('pending')
 * for each transaction instead of being counted here, because a local count goes wrong when the
 * chain goes back (evm_revert in tests, a reorg), and a nonce too high is a transaction that never
 * mines. Another process sending with the same key can still take a nonce between that read and
 * our send; `send` then prepares the transaction again. Run one process per key regardless: a
 * multi-step action (approve, then spend the allowance) is atomic only within its process.
 */

/** A hold on an account's lane; inactive once the task that held it ended. */
export type Lease = { readonly key: string; active: boolean };

const lanes = new Map<string, Promise<void>>();
/** How many times a transaction is prepared again after another sender took its nonce. */
const NONCE_ATTEMPTS = 3;

function laneKey(connection: ChainConnection): string {
  return `${connection.chainId}:${accountOf(connection).address.toLowerCase()}`;
}

/**
 * Runs `task` holding the account's lane: no other transaction of this account is sent from this
 * process until it ends, so a multi-step action (approve then open a challenge; read then write)
 * is atomic per account. The task must send through the client it is given (`held`), which skips
 * the lane it holds; sending through another client of the same account would wait for itself.
 * Nested calls with `held` run at once.
 */
export async function exclusive<C extends ChainConnection, T>(
  client: C,
  task: (held: C) => Promise<T>,
): Promise<T> {
  const key = laneKey(client);
  if (client.holds?.active && client.holds.key === key) return task(client);
  const previous = lanes.get(key) ?? Promise.resolve();
  let release!: () => void;
  const done = new Promise<void>((resolve) => (release = resolve));
  lanes.set(key, done);
  await previous;
  const lease: Lease = { key, active: true };
  try {
    return await task({ ...client, holds: lease });
  } finally {
    lease.active = false;
    release();
    if (lanes.get(key) === done) lanes.delete(key);
  }
}

/**
 * Simulates (so a revert is decoded before anything is sent), sends, and waits for the receipt,
 * in the account's lane. Every failure is a GlassboxError (CHAIN_REVERTED names the custom error,
 * also for a transaction that reverted on chain after its simulation passed).
 */
export function send(connection: ChainConnection, call: Call): Promise<TxResult> {
  return exclusive(connection, async (held) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await confirm(held, call, await submit(held, call));
      } catch (error) {
        if (attempt < NONCE_ATTEMPTS && isNonceConflict(error)) continue;
        throw toChainError(error, call.functionName);
      }
    }
  });
}

/** Simulates, prepares (nonce from the chain), signs and sends; returns the transaction hash. */
async function submit(connection: ChainConnection, call: Call): Promise<Hex> {
  const account = accountOf(connection);
  const { publicClient } = connection;
  const walletClient = connection.walletClient!;
  const contractCall = { ...call, args: call.args ?? [], account } as never;
  await publicClient.simulateContract(contractCall);
  // Gas can depend on the block (committee draws use prevrandao), so leave a margin over the
  // estimate; only what is used is paid.
  const estimate = await publicClient.estimateContractGas(contractCall);
  const request = await walletClient.prepareTransactionRequest({
    account,
    chain: walletClient.chain,
    to: call.address,
    data: encodeFunctionData(contractCall),
    gas: (estimate * 5n) / 4n + 20_000n,
  } as never);
  // Signed here, so the hash is known before the send: an answer lost on the way (a timeout, then
  // viem's retry told "already known" or "nonce too low") is told from a refusal by that hash.
  const serializedTransaction = await walletClient.signTransaction(request as never);
  const hash = keccak256(serializedTransaction);
  try {
    await walletClient.sendRawTransaction({ serializedTransaction });
  } catch (error) {
    const known = await publicClient.getTransaction({ hash }).then(
      () => true,
      () => false,
    );
    if (!known) throw error;
  }
  return hash;
}

async function confirm(connection: ChainConnection, call: Call, hash: Hex): Promise<TxResult> {
  const receipt = await connection.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success') throw await revertedOnChain(connection, call, receipt);
  return { hash, gasUsed: receipt.gasUsed, blockNumber: receipt.blockNumber, receipt };
}

/**
 * A transaction whose simulation passed but that reverted when mined (another transaction came
 * first: a rival `resolve`, a spent allowance). Replaying the call on the state after its block
 * names the custom error in almost every such case (ChallengeNotOpen), instead of 'unknown'.
 */
async function revertedOnChain(
  connection: ChainConnection,
  call: Call,
  receipt: TransactionReceipt,
): Promise<GlassboxError> {
  const what = call.functionName;
  const replay = await connection.publicClient
    .simulateContract({
      ...call,
      args: call.args ?? [],
      account: accountOf(connection),
      blockNumber: receipt.blockNumber,
    } as never)
    .then(
      () => undefined,
      (error: unknown) => decodeRevert(error),
    );
  const name = replay?.name ?? 'unknown';
  return new GlassboxError(
    'CHAIN_REVERTED',
    `${what} reverted on chain: ${name} (tx ${receipt.transactionHash})`,
    {
      details: { error: name, args: replay?.args ?? [], call: what, hash: receipt.transactionHash },
    },
  );
}

/** Another sender used the nonce we read (or a pending transaction holds it). */
function isNonceConflict(error: unknown): boolean {
  if (!(error instanceof BaseError)) return false;
  const conflict = /replacement transaction underpriced/;
  return (
    error.walk(
      (e) =>
        e instanceof NonceTooLowError ||
        (e instanceof BaseError &&
          (NonceTooLowError.nodeMessage.test(e.details) || conflict.test(e.details))),
    ) !== null
  );
}

/** A view call; reverts and RPC failures become GlassboxErrors. */
export async function read<T>(connection: ChainConnection, call: Call): Promise<T> {
  try {
    return (await connection.publicClient.readContract({ ...call, args: call.args ?? [] } as never)) as T;
  } catch (error) {
    throw toChainError(error, call.functionName);
  }
}

/** The decoded `eventName` logs of a transaction receipt. */
export function eventsOf<T = Record<string, unknown>>(
  abi: Abi,
  eventName: string,
  logs: readonly Log[],
): T[] {
  return parseEventLogs({ abi, eventName, logs: logs as Log[] }).map(
    (l) => (l as unknown as { args: T }).args,
  );
}

/** Seconds on chain -> ms in TypeScript. */
export const secondsToMs = (s: bigint | number): number => Number(s) * 1000;
/** ms in TypeScript -> whole seconds on chain (rounded up, so a delay is never shortened). */
export const msToSeconds = (ms: number): bigint => BigInt(Math.ceil(ms / 1000));
