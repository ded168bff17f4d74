import { drawCommittee, getChallenge, settleChallenge, type ChallengeInfo } from '../../chain/index.js';
import { isGlassboxError } from '../../protocol/errors.js';
import type { RoleComponents } from './components.js';

/*
 * The steps of a challenge's life that several roles take, whoever is first: the challenger, the
 * accused and every member draw the committee and resolve once it is due, so none of them can
 * stall it.
 */

type Steppers = Pick<RoleComponents, 'chain' | 'serial' | 'log'>;

/**
 * Draws the committee of a challenge once its draw block is behind the latest. True when nothing
 * is left to do: drawn, closed, or past the draw window (then it voids at its deadline).
 */
export async function drawWhenDue(c: Steppers, info: ChallengeInfo): Promise<boolean> {
  if (info.kind !== 'wrong' || info.status !== 'open') return true;
  if (info.committee.length > 0) return true;
  // draws close halfway through the commit period (members get the rest); after, it voids
  if (Date.now() >= info.commitDeadlineMs - c.chain.deployment.params.commitPeriodMs / 2) return true;
  if ((await c.chain.publicClient.getBlockNumber()) <= info.drawBlock) return false;
  try {
    const { committee, deferred } = await c.serial(() => drawCommittee(c.chain, info.challengeId));
    c.log.info({ challengeId: info.challengeId.toString(), committee, deferred }, 'committee drawn');
    return !deferred;
  } catch (error) {
    if (!isGlassboxError(error, 'CHAIN_REVERTED')) throw error;
    // drawn by someone else meanwhile, or nobody eligible: the chain says which
    return (await getChallenge(c.chain, info.challengeId)).committee.length > 0;
  }
}

/** Resolves a challenge once it is due; true once it is settled on chain. */
export async function settleWhenDue(c: Steppers, info: ChallengeInfo): Promise<boolean> {
  if (info.status !== 'open') return true;
  const due =
    Date.now() >= info.revealDeadlineMs + 1000 ||
    (info.kind === 'wrong' && info.committee.length > 0 && info.revealed === info.committee.length);
  if (!due) return false;
  // the challenger and every member resolve once it is due: whoever is first settles it
  const { status, tx } = await c.serial(() => settleChallenge(c.chain, info.challengeId));
  if (tx) c.log.info({ challengeId: info.challengeId.toString(), status }, 'challenge resolved');
  return status !== 'open';
}
