import type {
  Abi,
  Address,
  ContractEventArgs,
  ContractEventArgsFromTopics,
  ContractEventName,
  Hex,
} from 'viem';
import type { Receipt } from '../protocol/receipt.js';
import type { GlassboxClient } from './client.js';
import { ABIS, type AbiOf, type ContractName } from './contracts.js';
import { toChainError } from './errors.js';

export type ChainEvent<T> = {
  readonly eventName: string;
  readonly args: T;
  readonly blockNumber: bigint;
  readonly transactionHash: Hex;
  readonly logIndex: number;
};

/** The decoded arguments of event `E` of contract `C`, typed by its ABI. */
export type EventArgs<
  C extends ContractName,
  E extends ContractEventName<AbiOf<C>>,
> = ContractEventArgsFromTopics<AbiOf<C>, E>;

export type GetEventsParameters<C extends ContractName, E extends ContractEventName<AbiOf<C>>> = {
  readonly contract: C;
  readonly eventName: E;
  /** Filters on indexed arguments, e.g. `{ provider: '0x…' }` (a list matches any of its values). */
  readonly args?: ContractEventArgs<AbiOf<C>, E> | undefined;
  /** Default: the deployment's start block. */
  readonly fromBlock?: bigint | undefined;
  readonly toBlock?: bigint | undefined;
};

/** Decoded `eventName` events of one of the Glassbox contracts, oldest first. */
export function getEvents<C extends ContractName, E extends ContractEventName<AbiOf<C>>>(
  client: GlassboxClient,
  params: GetEventsParameters<C, E>,
): Promise<ChainEvent<EventArgs<C, E>>[]>;
export async function getEvents(
  client: GlassboxClient,
  params: { contract: ContractName; eventName: string; args?: object; fromBlock?: bigint; toBlock?: bigint },
) {
  const abi: Abi = ABIS[params.contract];
  try {
    const logs = await client.publicClient.getContractEvents({
      address: client.deployment.contracts[params.contract],
      abi,
      eventName: params.eventName,
      args: params.args,
      fromBlock: params.fromBlock ?? client.deployment.startBlock,
      toBlock: params.toBlock ?? 'latest',
      // every argument decoded, as the typed result promises (a log that does not decode is dropped)
      strict: true,
    });
    return logs.map((l) => ({
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

export type BatchCommitted = EventArgs<'receiptLedger', 'BatchCommitted'>;

export function getBatchCommits(
  client: GlassboxClient,
  params: { provider?: Address; fromBlock?: bigint } = {},
): Promise<ChainEvent<BatchCommitted>[]> {
  return getEvents(client, {
    contract: 'receiptLedger',
    eventName: 'BatchCommitted',
    args: params.provider ? { provider: params.provider } : undefined,
    fromBlock: params.fromBlock,
  });
}

export type ChallengeOpened = EventArgs<'disputeManager', 'ChallengeOpened'>;

/** Opened challenges (their committees come later: `getCommitteesDrawn`). */
export function getChallengesOpened(
  client: GlassboxClient,
  params: { fromBlock?: bigint; toBlock?: bigint } = {},
): Promise<ChainEvent<ChallengeOpened>[]> {
  return getEvents(client, {
    contract: 'disputeManager',
    eventName: 'ChallengeOpened',
    fromBlock: params.fromBlock,
    toBlock: params.toBlock,
  });
}

export type CommitteeDrawn = EventArgs<'disputeManager', 'CommitteeDrawn'>;

/** Drawn committees (the node's committee member watches these for its own address). */
export function getCommitteesDrawn(
  client: GlassboxClient,
  params: { id?: bigint; fromBlock?: bigint; toBlock?: bigint } = {},
): Promise<ChainEvent<CommitteeDrawn>[]> {
  return getEvents(client, {
    contract: 'disputeManager',
    eventName: 'CommitteeDrawn',
    args: params.id === undefined ? undefined : { id: params.id },
    fromBlock: params.fromBlock,
    toBlock: params.toBlock,
  });
}

export type OfferSet = EventArgs<'providerRegistry', 'OfferSet'>;

export function getOfferEvents(
  client: GlassboxClient,
  params: { provider?: Address; model?: Hex; fromBlock?: bigint } = {},
): Promise<ChainEvent<OfferSet>[]> {
  return getEvents(client, {
    contract: 'providerRegistry',
    eventName: 'OfferSet',
    // undefined matches any value of an indexed argument
    args: { provider: params.provider, model: params.model },
    fromBlock: params.fromBlock,
  });
}

/** The receipt of each challenge, as its ChallengedReceipt event carries it (committee members re-execute it). */
export async function getChallengedReceipt(
  client: GlassboxClient,
  challengeId: bigint,
): Promise<Receipt | undefined> {
  const [event] = await getEvents(client, {
    contract: 'disputeManager',
    eventName: 'ChallengedReceipt',
    args: { id: challengeId },
  });
  return event?.args.receipt;
}

export type AvailabilityChallenged = EventArgs<'disputeManager', 'AvailabilityChallenged'>;

/** Availability challenges (a provider's node answers those against it). */
export function getAvailabilityChallenges(
  client: GlassboxClient,
  params: { provider?: Address; fromBlock?: bigint; toBlock?: bigint } = {},
): Promise<ChainEvent<AvailabilityChallenged>[]> {
  return getEvents(client, {
    contract: 'disputeManager',
    eventName: 'AvailabilityChallenged',
    args: params.provider ? { provider: params.provider } : undefined,
    fromBlock: params.fromBlock,
    toBlock: params.toBlock,
  });
}

export type ChallengeResolved = EventArgs<'disputeManager', 'ChallengeResolved'>;

/** Settled challenges, with what was slashed (or what bond was lost) and the winner's reward. */
export function getChallengesResolved(
  client: GlassboxClient,
  params: { fromBlock?: bigint } = {},
): Promise<ChainEvent<ChallengeResolved>[]> {
  return getEvents(client, {
    contract: 'disputeManager',
    eventName: 'ChallengeResolved',
    fromBlock: params.fromBlock,
  });
}

export type BatchChallenged = EventArgs<'disputeManager', 'BatchChallenged'>;

/** Batch availability challenges (a provider's node answers those against it). */
export function getBatchChallenges(
  client: GlassboxClient,
  params: { provider?: Address; fromBlock?: bigint; toBlock?: bigint } = {},
): Promise<ChainEvent<BatchChallenged>[]> {
  return getEvents(client, {
    contract: 'disputeManager',
    eventName: 'BatchChallenged',
    args: params.provider ? { provider: params.provider } : undefined,
    fromBlock: params.fromBlock,
    toBlock: params.toBlock,
  });
}

/** The receipt hashes of batch `batchId` as its provider published them on chain, if it had to. */
export async function getPublishedBatch(client: GlassboxClient, batchId: bigint): Promise<Hex[] | undefined> {
  const [event] = await getEvents(client, {
    contract: 'disputeManager',
    eventName: 'BatchAnswered',
    args: { batchId },
  });
  return event && [...event.args.receiptHashes];
}
