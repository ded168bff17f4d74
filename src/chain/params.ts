import type { Address } from 'viem';
import { secondsToMs, type GlassboxClient } from './client.js';
import { readFrom } from './contracts.js';
import type { ChainParams } from './deployment.js';

/** The parameters as the contracts hold them (what is in force, whatever the addresses file says). */
export async function readChainParams(client: GlassboxClient): Promise<ChainParams & { treasury: Address }> {
  const [
    minStake,
    unbonding,
    notice,
    withdrawal,
    bond,
    size,
    commit,
    reveal,
    slashBps,
    rewardBps,
    penalty,
    answer,
    window,
    hold,
    treasury,
    maxDataBytes,
  ] = await Promise.all([
    readFrom(client, 'providerRegistry', 'minStake'),
    readFrom(client, 'providerRegistry', 'unbondingDelay'),
    readFrom(client, 'providerRegistry', 'priceNoticePeriod'),
    readFrom(client, 'paymentEscrow', 'withdrawalDelay'),
    readFrom(client, 'disputeManager', 'challengeBond'),
    readFrom(client, 'disputeManager', 'committeeSize'),
    readFrom(client, 'disputeManager', 'commitPeriod'),
    readFrom(client, 'disputeManager', 'revealPeriod'),
    readFrom(client, 'disputeManager', 'slashBps'),
    readFrom(client, 'disputeManager', 'rewardBps'),
    readFrom(client, 'disputeManager', 'votePenalty'),
    readFrom(client, 'disputeManager', 'answerPeriod'),
    readFrom(client, 'disputeManager', 'challengeWindow'),
    readFrom(client, 'paymentEscrow', 'holdPeriod'),
    readFrom(client, 'disputeManager', 'treasury'),
    readFrom(client, 'disputeManager', 'maxDataBytes'),
  ]);
  return {
    minStake,
    unbondingDelayMs: secondsToMs(unbonding),
    priceNoticeMs: secondsToMs(notice),
    withdrawalDelayMs: secondsToMs(withdrawal),
    challengeBond: bond,
    committeeSize: Number(size),
    commitPeriodMs: secondsToMs(commit),
    revealPeriodMs: secondsToMs(reveal),
    slashBps: Number(slashBps),
    rewardBps: Number(rewardBps),
    votePenalty: penalty,
    answerPeriodMs: secondsToMs(answer),
    challengeWindowMs: secondsToMs(window),
    paymentHoldMs: secondsToMs(hold),
    maxDataBytes: Number(maxDataBytes),
    treasury,
  };
}
