import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { getAddress, isAddress, type Account, type Address, type Hex } from 'viem';
import { z } from 'zod';
import { GlassboxError } from '../protocol/errors.js';
import { parseWith } from '../protocol/validate.js';
import { MAX_DATA_BYTES } from '../protocol/limits.js';
import {
  DevTokenAbi,
  DevTokenBytecode,
  DisputeManagerAbi,
  DisputeManagerBytecode,
  ModelRegistryAbi,
  ModelRegistryBytecode,
  PaymentEscrowAbi,
  PaymentEscrowBytecode,
  ProviderRegistryAbi,
  ProviderRegistryBytecode,
  ReceiptLedgerAbi,
  ReceiptLedgerBytecode,
} from './artifacts/index.js';
import { accountOf, assertChainId, connect, msToSeconds, send, type ChainConnection } from './client.js';
import { toChainError } from './errors.js';

/** Everything set at deployment (and readable on chain afterwards). Amounts in base units, times in ms. */
export type ChainParams = {
  /** Least stake a provider must keep. */
  readonly minStake: bigint;
  /** From requesting an unstake to withdrawing it; must outlast a whole dispute. */
  readonly unbondingDelayMs: number;
  /** Before a price increase takes effect. */
  readonly priceNoticeMs: number;
  /** From a client's withdrawal request to the withdrawal. */
  readonly withdrawalDelayMs: number;
  /** What a challenger posts. */
  readonly challengeBond: bigint;
  /** Committee members drawn per challenge (fewer when fewer are eligible). */
  readonly committeeSize: number;
  readonly commitPeriodMs: number;
  readonly revealPeriodMs: number;
  /** Fraction of a losing provider's stake slashed, in basis points. */
  readonly slashBps: number;
  /** Fraction of the loser's loss paid to the winner (rest to the treasury), in basis points. */
  readonly rewardBps: number;
  /**
   * Slashed from a committee member that does not reveal, or reveals against the verdict; shared
   * among the members that voted with it.
   */
  readonly votePenalty: bigint;
  /** How long a provider has to publish data named by an availability challenge. */
  readonly answerPeriodMs: number;
  /**
   * How long after its commit a batch's data can be challenged as unavailable: providers must keep
   * and serve it this long (a node's `challengeWindowMs` must be at least this).
   */
  readonly challengeWindowMs: number;
  /**
   * How long a redeemed payment is held before the provider receives it; a conviction in that
   * time refunds it to the client. Must outlast the challenge window plus a dispute.
   */
  readonly paymentHoldMs: number;
  /**
   * The most a challengeable receipt's inputs plus outputs may weigh (canonical encodings, bytes):
   * an availability challenge makes the provider publish them on chain, 64 KiB chunk by chunk
   * (one transaction each), so providers refuse larger requests and clients don't send them. At
   * most MAX_DATA_BYTES (256 chunks: what DisputeManager takes of one side).
   */
  readonly maxDataBytes: number;
};

export { MAX_DATA_BYTES };

const E18 = 10n ** 18n;
const DAY = 86_400_000;

export const DEFAULT_PARAMS: ChainParams = {
  minStake: 100n * E18,
  unbondingDelayMs: 7 * DAY,
  priceNoticeMs: DAY,
  withdrawalDelayMs: DAY,
  challengeBond: 10n * E18,
  committeeSize: 5,
  commitPeriodMs: DAY,
  revealPeriodMs: DAY,
  slashBps: 5000,
  rewardBps: 5000,
  votePenalty: 1n * E18,
  answerPeriodMs: DAY,
  challengeWindowMs: 3 * DAY,
  paymentHoldMs: 6 * DAY,
  // a million float32 values in (4 MiB) with up to 8 MiB out: iris on 262,144 rows takes 9 MiB
  maxDataBytes: 12 * 1024 * 1024,
};

export type Contracts = {
  readonly token: Address;
  readonly modelRegistry: Address;
  readonly providerRegistry: Address;
  readonly paymentEscrow: Address;
  readonly receiptLedger: Address;
  readonly disputeManager: Address;
};

export type Deployment = {
  readonly chainId: number;
  readonly deployer: Address;
  readonly treasury: Address;
  /** The block of the first deployment transaction: where event readers start. */
  readonly startBlock: bigint;
  /** True when the token is the devnet DevToken we deployed (it has a public mint). */
  readonly devToken: boolean;
  readonly contracts: Contracts;
  readonly params: ChainParams;
};

export function validateParams(p: ChainParams): void {
  const bad = (field: string, why: string) => {
    throw new GlassboxError('CHAIN_PARAMS_INVALID', `${field} ${why}`, { field });
  };
  for (const f of [
    'unbondingDelayMs',
    'priceNoticeMs',
    'withdrawalDelayMs',
    'commitPeriodMs',
    'revealPeriodMs',
    'answerPeriodMs',
    'challengeWindowMs',
    'paymentHoldMs',
  ] as const)
    if (!Number.isSafeInteger(p[f]) || p[f] < 0) bad(f, 'must be a non-negative integer of ms');
  if (p.commitPeriodMs < 1000) bad('commitPeriodMs', 'must be at least one second');
  if (p.revealPeriodMs < 1000) bad('revealPeriodMs', 'must be at least one second');
  if (p.answerPeriodMs < 1000) bad('answerPeriodMs', 'must be at least one second');
  if (p.challengeWindowMs < 1000) bad('challengeWindowMs', 'must be at least one second');
  // A cheater must not be paid, nor leave with its stake, before it can be caught and convicted.
  const caught = p.challengeWindowMs + Math.max(p.answerPeriodMs, p.commitPeriodMs + p.revealPeriodMs);
  if (p.paymentHoldMs <= caught)
    bad(
      'paymentHoldMs',
      'must exceed challengeWindowMs plus the longest dispute, or a cheater is paid first',
    );
  if (p.unbondingDelayMs <= caught)
    bad('unbondingDelayMs', 'must exceed challengeWindowMs plus the longest dispute, or stake leaves first');
  if (p.minStake <= 0n) bad('minStake', 'must be positive');
  if (p.challengeBond <= 0n) bad('challengeBond', 'must be positive');
  if (p.votePenalty < 0n) bad('votePenalty', 'must not be negative');
  if (!Number.isInteger(p.maxDataBytes) || p.maxDataBytes < 1024 || p.maxDataBytes > MAX_DATA_BYTES)
    bad(
      'maxDataBytes',
      `must be an integer from 1024 to ${MAX_DATA_BYTES}: an availability answer publishes at most 256 chunks of 64 KiB a side`,
    );
  if (!Number.isInteger(p.committeeSize) || p.committeeSize < 1 || p.committeeSize > 255)
    bad('committeeSize', 'must be an integer from 1 to 255');
  if (!Number.isInteger(p.slashBps) || p.slashBps < 0 || p.slashBps > 10_000)
    bad('slashBps', 'must be an integer from 0 to 10000');
  // at 100 % a provider reporting itself from another account would lose nothing
  if (!Number.isInteger(p.rewardBps) || p.rewardBps < 0 || p.rewardBps >= 10_000)
    bad('rewardBps', 'must be an integer from 0 to 9999: at 10000 self-reporting is free');
  if (p.unbondingDelayMs <= p.commitPeriodMs + p.revealPeriodMs)
    bad(
      'unbondingDelayMs',
      'must exceed commitPeriodMs + revealPeriodMs, or stake could leave before a dispute ends',
    );
}

export type DeployParameters = {
  readonly rpcUrl: string;
  readonly chainId: number;
  /** The deployer: a private key (0x-hex) or a viem account. */
  readonly account: Hex | Account;
  readonly params?: Partial<ChainParams>;
  /** Where slashed stake and forfeited bonds go (default: the deployer). */
  readonly treasury?: Address;
  /** An existing ERC-20 to use; without it a DevToken (public mint) is deployed. */
  readonly token?: Address;
  /**
   * Runtime profiles to admit (their canonical JSON, src/protocol/runtime-profile.ts
   * `runtimeProfileJson`): providers may serve only under admitted profiles. The deployer stays
   * the ProviderRegistry's owner and can admit more later (`admitRuntime`).
   */
  readonly runtimes?: readonly string[];
  readonly pollingIntervalMs?: number;
  /** Called after each step, for progress output. */
  readonly onStep?: (step: string, address: Address) => void;
};

/**
 * Deploys every contract in order and wires them together. Works against any EVM RPC: it only
 * needs the URL, the chain id (checked against the RPC) and a funded key.
 */
export async function deployGlassbox(parameters: DeployParameters): Promise<Deployment> {
  const params: ChainParams = { ...DEFAULT_PARAMS, ...parameters.params };
  validateParams(params);
  const connection = connect({
    rpcUrl: parameters.rpcUrl,
    chainId: parameters.chainId,
    account: parameters.account,
    pollingIntervalMs: parameters.pollingIntervalMs ?? 1000,
  });
  await assertChainId(connection, parameters.chainId);
  const deployer = accountOf(connection).address;
  const treasury = parameters.treasury ?? deployer;
  let startBlock: bigint | undefined;

  const wallet = connection.walletClient!;
  /** Waits for a deployment `sent` (typed by its ABI's constructor) and returns its address. */
  const deploy = async (name: string, sent: () => Promise<Hex>): Promise<Address> => {
    try {
      const hash = await sent();
      const receipt = await connection.publicClient.waitForTransactionReceipt({ hash });
      if (receipt.status !== 'success' || !receipt.contractAddress)
        throw new GlassboxError('CHAIN_DEPLOYMENT', `deploying ${name} failed (tx ${hash})`);
      startBlock ??= receipt.blockNumber;
      const address = getAddress(receipt.contractAddress);
      parameters.onStep?.(name, address);
      return address;
    } catch (error) {
      throw toChainError(error, `deploy ${name}`);
    }
  };

  const devToken = parameters.token === undefined;
  const token =
    parameters.token ??
    (await deploy('DevToken', () => wallet.deployContract({ abi: DevTokenAbi, bytecode: DevTokenBytecode })));
  const modelRegistry = await deploy('ModelRegistry', () =>
    wallet.deployContract({ abi: ModelRegistryAbi, bytecode: ModelRegistryBytecode }),
  );
  const providerRegistry = await deploy('ProviderRegistry', () =>
    wallet.deployContract({
      abi: ProviderRegistryAbi,
      bytecode: ProviderRegistryBytecode,
      args: [
        token,
        modelRegistry,
        params.minStake,
        msToSeconds(params.unbondingDelayMs),
        msToSeconds(params.priceNoticeMs),
      ],
    }),
  );
  const paymentEscrow = await deploy('PaymentEscrow', () =>
    wallet.deployContract({
      abi: PaymentEscrowAbi,
      bytecode: PaymentEscrowBytecode,
      args: [token, msToSeconds(params.withdrawalDelayMs), msToSeconds(params.paymentHoldMs)],
    }),
  );
  const receiptLedger = await deploy('ReceiptLedger', () =>
    wallet.deployContract({
      abi: ReceiptLedgerAbi,
      bytecode: ReceiptLedgerBytecode,
      args: [providerRegistry],
    }),
  );
  const disputeManager = await deploy('DisputeManager', () =>
    wallet.deployContract({
      abi: DisputeManagerAbi,
      bytecode: DisputeManagerBytecode,
      args: [
        token,
        providerRegistry,
        modelRegistry,
        receiptLedger,
        paymentEscrow,
        {
          treasury,
          challengeBond: params.challengeBond,
          committeeSize: params.committeeSize,
          commitPeriod: msToSeconds(params.commitPeriodMs),
          revealPeriod: msToSeconds(params.revealPeriodMs),
          slashBps: params.slashBps,
          rewardBps: params.rewardBps,
          votePenalty: params.votePenalty,
          answerPeriod: msToSeconds(params.answerPeriodMs),
          challengeWindow: msToSeconds(params.challengeWindowMs),
          maxDataBytes: params.maxDataBytes,
        },
      ],
    }),
  );
  for (const [address, abi] of [
    [providerRegistry, ProviderRegistryAbi],
    [paymentEscrow, PaymentEscrowAbi],
  ] as const)
    await send(connection, { address, abi, functionName: 'setDisputeManager', args: [disputeManager] });
  parameters.onStep?.('wired', disputeManager);
  for (const profile of parameters.runtimes ?? []) {
    await send(connection, {
      address: providerRegistry,
      abi: ProviderRegistryAbi,
      functionName: 'admitRuntime',
      args: [profile],
    });
    parameters.onStep?.('admitRuntime', providerRegistry);
  }
  return {
    chainId: parameters.chainId,
    deployer,
    treasury,
    startBlock: startBlock ?? 0n,
    devToken,
    contracts: { token, modelRegistry, providerRegistry, paymentEscrow, receiptLedger, disputeManager },
    params,
  };
}

// ---- the addresses file ----

export const DEPLOYMENT_SCHEMA = 'glassbox.deployment/v1';

const address = z
  .string()
  .refine((v) => isAddress(v, { strict: false }), 'is not an address')
  .transform((v) => getAddress(v));
const big = z
  .string()
  .regex(/^\d+$/, 'is not a decimal integer string')
  .transform((v) => BigInt(v));
const ms = z.number().int().nonnegative();

const deploymentSchema = z.strictObject({
  schema: z.literal(DEPLOYMENT_SCHEMA),
  chainId: z.number().int().positive(),
  deployer: address,
  treasury: address,
  startBlock: big,
  devToken: z.boolean(),
  contracts: z.strictObject({
    token: address,
    modelRegistry: address,
    providerRegistry: address,
    paymentEscrow: address,
    receiptLedger: address,
    disputeManager: address,
  }),
  params: z.strictObject({
    minStake: big,
    unbondingDelayMs: ms,
    priceNoticeMs: ms,
    withdrawalDelayMs: ms,
    challengeBond: big,
    committeeSize: z.number().int(),
    commitPeriodMs: ms,
    revealPeriodMs: ms,
    slashBps: z.number().int(),
    rewardBps: z.number().int(),
    votePenalty: big,
    answerPeriodMs: ms,
    challengeWindowMs: ms,
    paymentHoldMs: ms,
    maxDataBytes: z.number().int().positive(),
  }),
});

export type DeploymentJson = z.input<typeof deploymentSchema>;

export function deploymentToJson(d: Deployment): DeploymentJson {
  const p = d.params;
  return {
    schema: DEPLOYMENT_SCHEMA,
    chainId: d.chainId,
    deployer: d.deployer,
    treasury: d.treasury,
    startBlock: d.startBlock.toString(),
    devToken: d.devToken,
    contracts: { ...d.contracts },
    params: {
      ...p,
      minStake: p.minStake.toString(),
      challengeBond: p.challengeBond.toString(),
      votePenalty: p.votePenalty.toString(),
    },
  };
}

export function deploymentFromJson(json: unknown): Deployment {
  const { schema: _schema, ...d } = parseWith(deploymentSchema, json, {
    code: 'CHAIN_DEPLOYMENT',
    label: 'deployment',
  });
  return d;
}

/** Writes the addresses file (JSON; bigints as decimal strings). */
export async function writeDeployment(path: string, deployment: Deployment): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, JSON.stringify(deploymentToJson(deployment), null, 2) + '\n');
}

export async function readDeployment(path: string): Promise<Deployment> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new GlassboxError('CHAIN_DEPLOYMENT', `no deployment file at ${path}`, { cause, field: 'path' });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new GlassboxError('CHAIN_DEPLOYMENT', `${path} is not JSON`, { cause });
  }
  return deploymentFromJson(json);
}

/** Checks that every contract of a deployment has code on the connected chain of the right id. */
export async function verifyDeployment(connection: ChainConnection, deployment: Deployment): Promise<void> {
  await assertChainId(connection, deployment.chainId);
  for (const [name, addr] of Object.entries(deployment.contracts)) {
    let code: Hex | undefined;
    try {
      code = await connection.publicClient.getCode({ address: addr });
    } catch (error) {
      throw toChainError(error, 'eth_getCode');
    }
    if (!code || code === '0x')
      throw new GlassboxError('CHAIN_DEPLOYMENT', `no contract code for ${name} at ${addr}`, {
        field: `contracts.${name}`,
      });
  }
}
