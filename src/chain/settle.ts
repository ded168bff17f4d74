import { isGlassboxError } from '../protocol/errors.js';
import type { GlassboxClient, TxResult } from './client.js';
import { getChallenge, resolveChallenge, type ChallengeStatus } from './disputes.js';

export type SettledChallenge = {
  /** The challenge's status now: `open` only if it is not due yet (resolve throws then). */
  readonly status: ChallengeStatus;
  /** Our `resolve` transaction, when it was ours that settled it. */
  readonly tx?: TxResult & { slashed: bigint; reward: bigint };
};

/**
 * Resolves a challenge unless it is closed already, and returns its final status either way.
 * `resolve` is open to anyone, and the challenger and every committee member call it once it is
 * due, so all but one lose the race: a rival's transaction lands between our simulation and
 * ours, and ours reverts. What a caller needs is the outcome, so a revert is judged by reading the
 * challenge after it, not by the revert's name: closed means settled (by someone else); still open
 * means the revert had another reason (not due yet), and it is thrown.
 */
export async function settleChallenge(
  client: GlassboxClient,
  challengeId: bigint,
): Promise<SettledChallenge> {
  const before = await getChallenge(client, challengeId);
  if (before.status !== 'open') return { status: before.status };
  try {
    const tx = await resolveChallenge(client, challengeId);
    return { status: tx.status, tx };
  } catch (error) {
    if (!isGlassboxError(error, 'CHAIN_REVERTED')) throw error;
    const after = await getChallenge(client, challengeId);
    if (after.status === 'open') throw error;
    return { status: after.status };
  }
}
