import type { Address, Hex } from 'viem';
import type { Receipt } from '../protocol/receipt.js';
import type { GlassboxClient } from './client.js';
import { ABIS, type ContractName } from './contracts.js';
import { toChainError } from './errors.js';

export type ChainEvent<T = Record<string, unknown>> = {
  readonly eventName: string;
  readonly args: T;
  readonly blockNumber: bigint;
  readonly transactionHash: Hex;
  readonly logIndex: number;
};

export type GetEventsParameters = {
  readonly contract: ContractName;
  /** One event name, or every event of the contract when omitted. */
  readonly eventName?: string;
  /** Filters on indexed arguments, e.g. `{ provider: '0x…' }`. */
  readonly args?: Record<string, unknown>;
  /** Default: the deployment's start block. */
  readonly fromBlock?: bigint;
  readonly toBlock?: bigint;
};

/** Decoded events of one of the Glassbox contracts, oldest first. */
export async function getEvents<T = Record<string, unknown>>(
  client: GlassboxClient,
  params: GetEventsParameters,
): Promise<ChainEvent<T>[]> {
  try {
    const logs = await client.publicClient.getContractEvents({
      address: client.deployment.contracts[params.contract],
      abi: ABIS[params.contract],
      eventName: params.eventName,
      args: params.args,
      fromBlock: params.fromBlock ?? client.deployment.startBlock,
      toBlock: params.toBlock ?? 'latest',
    } as never);
    return (
      logs as unknown as {
        eventName: string;
        args: T;
        blockNumber: bigint;
        transactionHash: Hex;
        logIndex: number;
      }[]
    ).map((l) => ({
      eventName: l.eventName,
      args: l.args,
      blockNumber: l.blockNumber,
      transactionHash: l.transactionHash,
      logIndex: l.logIndex,
    }));
  } catch (error) {
    throw toChainError(error, `getEvents(${params.contract})`);
  }
}

export type BatchCommitted = { batchId: bigint; provider: Address; root: Hex; count: bigint; uri: string };

export function getBatchCommits(
  client: GlassboxClient,
  params: { provider?: Address; fromBlock?: bigint } = {},
): Promise<ChainEvent<BatchCommitted>[]> {
  return getEvents<BatchCommitted>(client, {
    contract: 'receiptLedger',
    eventName: 'BatchCommitted',
    args: params.provider ? { provider: params.provider } : undefined,
    fromBlock: params.fromBlock,
  });
}

export type ChallengeOpened = {
  id: bigint;
  provider: Address;
  challenger: Address;
  receiptHash: Hex;
  inputsUri: string;
  drawBlock: bigint;
};

/** Opened challenges (their committees come later: `getCommitteesDrawn`). */
export function getChallengesOpened(
  client: GlassboxClient,
  params: { fromBlock?: bigint; toBlock?: bigint } = {},
): Promise<ChainEvent<ChallengeOpened>[]> {
  return getEvents<ChallengeOpened>(client, {
    contract: 'disputeManager',
    eventName: 'ChallengeOpened',
    fromBlock: params.fromBlock,
    toBlock: params.toBlock,
  });
}

export type CommitteeDrawn = {
  id: bigint;
  committee: readonly Address[];
  commitDeadline: bigint;
  revealDeadline: bigint;
};

/** Drawn committees (the node's committee member watches these for its own address). */
export function getCommitteesDrawn(
  client: GlassboxClient,
  params: { id?: bigint; fromBlock?: bigint; toBlock?: bigint } = {},
): Promise<ChainEvent<CommitteeDrawn>[]> {
  return getEvents<CommitteeDrawn>(client, {
    contract: 'disputeManager',
    eventName: 'CommitteeDrawn',
    args: params.id === undefined ? undefined : { id: params.id },
    fromBlock: params.fromBlock,
    toBlock: params.toBlock,
  });
}

export type OfferSet = { provider: Address; model: Hex; price: bigint; effectiveAt: bigint };

export function getOfferEvents(
  client: GlassboxClient,
  params: { provider?: Address; model?: Hex; fromBlock?: bigint } = {},
): Promise<ChainEvent<OfferSet>[]> {
  const args: Record<string, unknown> = {};
  if (params.provider) args.provider = params.provider;
  if (params.model) args.model = params.model;
  return getEvents<OfferSet>(client, {
    contract: 'providerRegistry',
    eventName: 'OfferSet',
    args,
    fromBlock: params.fromBlock,
  });
}

/** The receipt of each challenge, as its ChallengedReceipt event carries it (committee members re-execute it). */
export async function getChallengedReceipt(
  client: GlassboxClient,
  challengeId: bigint,
): Promise<Receipt | undefined> {
  const [event] = await getEvents<{ id: bigint; receipt: Receipt }>(client, {
    contract: 'disputeManager',
    eventName: 'ChallengedReceipt',
    args: { id: challengeId },
  });
  return event?.args.receipt;
}

export type AvailabilityChallenged = {
  id: bigint;
  provider: Address;
  challenger: Address;
  batchId: bigint;
  receiptHash: Hex;
  answerDeadline: bigint;
};

/** Availability challenges (a provider's node answers those against it). */
export function getAvailabilityChallenges(
  client: GlassboxClient,
  params: { provider?: Address; fromBlock?: bigint; toBlock?: bigint } = {},
): Promise<ChainEvent<AvailabilityChallenged>[]> {
  return getEvents<AvailabilityChallenged>(client, {
    contract: 'disputeManager',
    eventName: 'AvailabilityChallenged',
    args: params.provider ? { provider: params.provider } : undefined,
    fromBlock: params.fromBlock,
    toBlock: params.toBlock,
  });
}

export type ChallengeResolved = {
  id: bigint;
  status: number;
  guilty: number;
  innocent: number;
  slashed: bigint;
  reward: bigint;
};

/** Settled challenges, with what was slashed (or what bond was lost) and the winner's reward. */
export function getChallengesResolved(
  client: GlassboxClient,
  params: { fromBlock?: bigint } = {},
): Promise<ChainEvent<ChallengeResolved>[]> {
  return getEvents<ChallengeResolved>(client, {
    contract: 'disputeManager',
    eventName: 'ChallengeResolved',
    fromBlock: params.fromBlock,
  });
}

export type BatchChallenged = {
  id: bigint;
  provider: Address;
  challenger: Address;
  batchId: bigint;
  answerDeadline: bigint;
};

/** Batch availability challenges (a provider's node answers those against it). */
export function getBatchChallenges(
  client: GlassboxClient,
  params: { provider?: Address; fromBlock?: bigint; toBlock?: bigint } = {},
): Promise<ChainEvent<BatchChallenged>[]> {
  return getEvents<BatchChallenged>(client, {
    contract: 'disputeManager',
    eventName: 'BatchChallenged',
    args: params.provider ? { provider: params.provider } : undefined,
    fromBlock: params.fromBlock,
    toBlock: params.toBlock,
  });
}

/** The receipt hashes of batch `batchId` as its provider published them on chain, if it had to. */
export async function getPublishedBatch(client: GlassboxClient, batchId: bigint): Promise<Hex[] | undefined> {
  const [event] = await getEvents<{ receiptHashes: readonly Hex[] }>(client, {
    contract: 'disputeManager',
    eventName: 'BatchAnswered',
    args: { batchId },
  });
  return event && [...event.args.receiptHashes];
}
