import type { Address } from 'viem';
import { secondsToMs, type GlassboxClient } from './client.js';
import { readFrom } from './contracts.js';
import type { ChainParams } from './deployment.js';

/** The parameters as the contracts hold them (what is in force, whatever the addresses file says). */
export async function readChainParams(client: GlassboxClient): Promise<ChainParams & { treasury: Address }> {
  const pr = (fn: string) => readFrom<bigint>(client, 'providerRegistry', fn);
  const dm = <T>(fn: string) => readFrom<T>(client, 'disputeManager', fn);
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
    pr('minStake'),
    pr('unbondingDelay'),
    pr('priceNoticePeriod'),
    readFrom<bigint>(client, 'paymentEscrow', 'withdrawalDelay'),
    dm<bigint>('challengeBond'),
    dm<number>('committeeSize'),
    dm<bigint>('commitPeriod'),
    dm<bigint>('revealPeriod'),
    dm<number>('slashBps'),
    dm<number>('rewardBps'),
    dm<bigint>('votePenalty'),
    dm<bigint>('answerPeriod'),
    dm<bigint>('challengeWindow'),
    readFrom<bigint>(client, 'paymentEscrow', 'holdPeriod'),
    dm<Address>('treasury'),
    dm<number>('maxDataBytes'),
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
