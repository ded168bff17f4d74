import {
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
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
import { toChainError } from './errors.js';

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

/**
 * Simulates (so a revert is decoded before anything is sent), sends, and waits for the receipt.
 * Every failure is a GlassboxError (CHAIN_REVERTED names the custom error).
 */
export async function send(connection: ChainConnection, call: Call): Promise<TxResult> {
  const account = accountOf(connection);
  const what = call.functionName;
  try {
    const { request } = await connection.publicClient.simulateContract({
      ...call,
      args: call.args ?? [],
      account,
    } as never);
    // Gas can depend on the block (committee draws use prevrandao), so leave a margin over the
    // estimate; only what is used is paid.
    const estimate = await connection.publicClient.estimateContractGas({
      ...call,
      args: call.args ?? [],
      account,
    } as never);
    const gas = (estimate * 5n) / 4n + 20_000n;
    const hash = await connection.walletClient!.writeContract({ ...(request as object), gas } as never);
    const receipt = await connection.publicClient.waitForTransactionReceipt({ hash });
    if (receipt.status !== 'success')
      throw new GlassboxError('CHAIN_REVERTED', `${what} reverted on chain (tx ${hash})`, {
        details: { error: 'unknown', call: what, hash },
      });
    return { hash, gasUsed: receipt.gasUsed, blockNumber: receipt.blockNumber, receipt };
  } catch (error) {
    throw toChainError(error, what);
  }
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
