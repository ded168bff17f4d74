import type { Logger } from 'pino';
import {
  getHold,
  getRedeemed,
  isContractRevert,
  redeemVoucher,
  releaseHold,
  type GlassboxClient,
} from '../chain/index.js';
import { isGlassboxError } from '../protocol/errors.js';
import type { ClientAccount, NodeDb } from './db.js';
import type { NodeMetrics } from './metrics.js';
import type { Serial } from './serial.js';
import { createWorker } from './worker.js';

/*
 * The voucher redeemer: for each client whose best voucher is above what was redeemed, redeem it
 * on chain (the escrow takes the increase, capped by the client's deposit, into a hold that pays
 * out after the hold period) and record what the chain says was redeemed in total. Periodically,
 * and once more when the node stops. Every pass redeems every such channel: what is redeemed is
 * out of the client's reach, and a client can withdraw the rest after the withdrawal delay, so
 * waiting risks the payment (audit H-2; src/node/node.ts keeps the interval under half the delay).
 *
 * Channels fail on their own: a voucher the escrow refuses (any revert, e.g. a non-canonical
 * signature stored before they were refused at the door: audit H-1) is logged with its reason and
 * skipped, and the pass goes on with the other clients. A failure to reach the chain ends the pass;
 * the next one retries.
 */

export type Redeemer = {
  /** Redeems every voucher with something left to pay; returns the total paid now. */
  redeemAll(): Promise<bigint>;
  stop(): Promise<void>;
};

export type RedeemerParameters = {
  readonly db: NodeDb;
  readonly chain: GlassboxClient;
  readonly serial: Serial;
  readonly intervalMs: number;
  readonly metrics: NodeMetrics;
  readonly log: Logger;
};

export function createRedeemer(p: RedeemerParameters): Redeemer {
  const provider = p.chain.walletClient!.account.address;

  async function work(): Promise<bigint> {
    let total = 0n;
    for (const account of p.db.unredeemed()) {
      total += await redeemChannel(account);
      p.db.setRedeemed(account.client, await getRedeemed(p.chain, { client: account.client, provider }));
    }
    await releaseFinishedHolds(await chainNowMs());
    return total;
  }

  /** Redeems one client's best voucher; what it paid now (0 when refunded or refused by the escrow). */
  async function redeemChannel(account: ClientAccount): Promise<bigint> {
    const voucher = account.voucher!;
    try {
      const { paid, refunded, released, hash } = await p.serial(() => redeemVoucher(p.chain, voucher));
      if (refunded) {
        p.log.warn(
          { client: account.client, amount: paid.toString(), tx: hash },
          'voucher refunded: convicted',
        );
        return 0n;
      }
      p.metrics.redeemed.inc(Number(paid));
      p.log.info(
        { client: account.client, paid: paid.toString(), released: released.toString(), tx: hash },
        'voucher redeemed (held by the escrow for its hold period)',
      );
      return paid;
    } catch (error) {
      if (!isGlassboxError(error, 'CHAIN_REVERTED')) throw error;
      const expected =
        isContractRevert(error, 'VoucherAlreadyRedeemed') || isContractRevert(error, 'InsufficientDeposit');
      p.log[expected ? 'info' : 'warn'](
        {
          client: account.client,
          amount: voucher.voucher.amount.toString(),
          reason: error.details.error,
          err: error.shortMessage,
        },
        'voucher not redeemable now; skipped',
      );
      return 0n;
    }
  }

  async function chainNowMs(): Promise<number> {
    return Number((await p.chain.publicClient.getBlock({ blockTag: 'latest' })).timestamp) * 1000;
  }

  /** The escrow pays a hold out only when asked: at the next redemption, or here once it is over. */
  async function releaseFinishedHolds(now: number): Promise<void> {
    for (const account of p.db.redeemedAccounts()) {
      const channel = { client: account.client, provider };
      const hold = await getHold(p.chain, channel);
      if (!hold || now < hold.endsAtMs) continue;
      const { released, refunded } = await p.serial(() => releaseHold(p.chain, channel));
      p.log.info(
        { client: account.client, released: released.toString(), refunded: refunded.toString() },
        'held payment settled',
      );
    }
  }

  const worker = createWorker({
    intervalMs: p.intervalMs,
    work,
    onError: (error) => p.log.error({ err: error }, 'voucher redemption failed'),
  });
  worker.start();

  return {
    redeemAll: () => worker.run(),
    async stop() {
      await worker.stop();
      await worker.run();
    },
  };
}
