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
  type Chain,
  type ContractEventArgsFromTopics,
  type ContractEventName,
  type ContractFunctionArgs,
  type ContractFunctionName,
  type ContractFunctionParameters,
  type Hex,
  type Log,
  type PublicClient,
  type ReadContractParameters,
  type ReadContractReturnType,
  type TransactionReceipt,
  type Transport,
  type WalletClient,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { GlassboxError, isGlassboxError } from '../protocol/errors.js';
import type { Deployment } from './deployment.js';
import { toChainError, UnknownRevertError } from './errors.js';

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

type Writable = 'nonpayable' | 'payable';

/**
 * A transaction to a contract, typed by its `as const` ABI as viem's writeContract is: a function
 * name the ABI lacks, or arguments of the wrong types, do not compile.
 */
export type ContractWrite<
  abi extends Abi = Abi,
  functionName extends ContractFunctionName<abi, Writable> = ContractFunctionName<abi, Writable>,
  args extends ContractFunctionArgs<abi, Writable, functionName> = ContractFunctionArgs<
    abi,
    Writable,
    functionName
  >,
> = ContractFunctionParameters<abi, Writable, functionName, args>;

/** What `send` works on inside, once the caller's call type-checked against its ABI. */
type Call = ContractWrite;

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
export function send<
  const abi extends Abi,
  functionName extends ContractFunctionName<abi, Writable>,
  const args extends ContractFunctionArgs<abi, Writable, functionName>,
>(connection: ChainConnection, call: ContractWrite<abi, functionName, args>): Promise<TxResult>;
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
  await publicClient.simulateContract({ ...call, account });
  // Gas can depend on the block (committee draws use prevrandao), so leave a margin over the
  // estimate; only what is used is paid.
  const estimate = await publicClient.estimateContractGas({ ...call, account });
  const request = await walletClient.prepareTransactionRequest({
    account,
    chain: walletClient.chain,
    to: call.address,
    data: encodeFunctionData(call),
    gas: (estimate * 5n) / 4n + 20_000n,
  });
  // Signed here, so the hash is known before the send: an answer lost on the way (a timeout, then
  // viem's retry told "already known" or "nonce too low") is told from a refusal by that hash.
  const serializedTransaction = await walletClient.signTransaction(request);
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
  const hash = receipt.transactionHash;
  const replayed = await connection.publicClient
    .simulateContract({ ...call, account: accountOf(connection), blockNumber: receipt.blockNumber })
    .then(
      () => undefined,
      (error: unknown) => error,
    );
  const revert = replayed === undefined ? undefined : toChainError(replayed, call.functionName, { hash });
  return revert && isGlassboxError(revert, 'CHAIN_REVERTED')
    ? revert
    : new UnknownRevertError('unknown', call.functionName, { hash });
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

/** A view call, typed by its `as const` ABI (viem's readContract); failures become GlassboxErrors. */
export async function read<
  const abi extends Abi,
  functionName extends ContractFunctionName<abi, 'pure' | 'view'>,
  const args extends ContractFunctionArgs<abi, 'pure' | 'view', functionName>,
>(
  connection: ChainConnection,
  call: ReadContractParameters<abi, functionName, args>,
): Promise<ReadContractReturnType<abi, functionName, args>> {
  try {
    return await connection.publicClient.readContract(call);
  } catch (error) {
    throw toChainError(error, call.functionName);
  }
}

/** The decoded `eventName` logs of a transaction receipt, typed by the ABI. */
export function eventsOf<const abi extends Abi, eventName extends ContractEventName<abi>>(
  abi: abi,
  eventName: eventName,
  logs: readonly Log[],
): ContractEventArgsFromTopics<abi, eventName>[];
export function eventsOf(abi: Abi, eventName: string, logs: readonly Log[]) {
  return parseEventLogs({ abi, eventName, logs: [...logs] }).map((l) => l.args);
}

/** Seconds on chain -> ms in TypeScript. */
export const secondsToMs = (s: bigint | number): number => Number(s) * 1000;
/** ms in TypeScript -> whole seconds on chain (rounded up, so a delay is never shortened). */
export const msToSeconds = (ms: number): bigint => BigInt(Math.ceil(ms / 1000));
