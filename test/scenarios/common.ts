import type { Address } from 'viem';
import {
  getChallenge,
  getChallengeCount,
  getEvents,
  getProvider,
  releaseHold,
  type ChallengeInfo,
  type GlassboxClient,
} from '../../src/chain/index.js';
import { STATUS_LIMIT_MAX } from '../../src/api/routes.js';
import type { NodeStatus } from '../../src/api/schemas.js';

/*
 * What the acceptance scenarios (test/scenarios/*.ts) read off the chain and the nodes to fill
 * their tables: stakes, challenges, the escrow's money flows between a client and a provider.
 */

/** A provider's stake, bonded and unbonding (slashing takes from both). */
export async function stakeOf(chain: GlassboxClient, provider: Address): Promise<bigint> {
  const p = await getProvider(chain, provider);
  return p.stake + p.unbonding;
}

/** Every challenge opened so far, by id. */
export async function allChallenges(chain: GlassboxClient): Promise<ChallengeInfo[]> {
  const count = await getChallengeCount(chain);
  const all: ChallengeInfo[] = [];
  for (let id = 0n; id < count; id++) all.push(await getChallenge(chain, id));
  return all;
}

/** A node's status with as many of its samples as it lists (the scenarios count them). */
export async function nodeStatus(url: string): Promise<NodeStatus> {
  const response = await fetch(`${url}/v1/status?limit=${STATUS_LIMIT_MAX}`, {
    signal: AbortSignal.timeout(5000),
  });
  return (await response.json()) as NodeStatus;
}

/** What the escrow moved between `client` and `provider`, from its events. */
export type EscrowFlows = {
  /** Redemptions that took the client's money into the escrow's hold. */
  readonly takenIntoHold: bigint;
  /** Redemptions after a conviction: voided, the money never left the client's deposit. */
  readonly voided: bigint;
  /** Held money given back to the client (a conviction voids the provider's open holds). */
  readonly refunded: bigint;
  /** Held money paid out to the provider. */
  readonly released: bigint;
};

/**
 * The escrow's flows between `client` and `provider`. It first releases the pair's hold, which
 * refunds the client when the provider was convicted within the hold (and pays the provider when it
 * was not and the hold is over): a scenario asks what happened to the money, not what is pending.
 */
export async function escrowFlows(
  chain: GlassboxClient,
  pair: { readonly client: Address; readonly provider: Address },
): Promise<EscrowFlows> {
  await releaseHold(chain, pair).catch(() => undefined); // nothing to release is not an error here
  const of = { contract: 'paymentEscrow', args: pair } as const;
  const redeemed = await getEvents(chain, { ...of, eventName: 'Redeemed' });
  const refunded = await getEvents(chain, { ...of, eventName: 'Refunded' });
  const released = await getEvents(chain, { ...of, eventName: 'Released' });
  return {
    takenIntoHold: redeemed.reduce((t, e) => t + (e.args.refunded ? 0n : e.args.paid), 0n),
    voided: redeemed.reduce((t, e) => t + (e.args.refunded ? e.args.paid : 0n), 0n),
    refunded: refunded.reduce((t, e) => t + e.args.amount, 0n),
    released: released.reduce((t, e) => t + e.args.amount, 0n),
  };
}

/** Stake slashed from `provider` and rewarded to its challengers, over the resolved challenges. */
export async function slashedFrom(
  chain: GlassboxClient,
  challenges: readonly ChallengeInfo[],
  provider: Address,
): Promise<{ slashed: bigint; reward: bigint; firstAt?: number }> {
  const resolved = await getEvents(chain, { contract: 'disputeManager', eventName: 'ChallengeResolved' });
  const against = resolved.filter((e) => challenges[Number(e.args.id)]?.provider === provider);
  const upheld = against.find((e) => challenges[Number(e.args.id)]!.status === 'upheld');
  const firstAt = upheld
    ? Number((await chain.publicClient.getBlock({ blockNumber: upheld.blockNumber })).timestamp) * 1000
    : undefined;
  return {
    slashed: against.reduce((t, e) => t + e.args.slashed, 0n),
    reward: against.reduce((t, e) => t + e.args.reward, 0n),
    ...(firstAt === undefined ? {} : { firstAt }),
  };
}
