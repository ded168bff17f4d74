import { describe, expect, it } from 'vitest';
import { getRedeemed } from '../../src/chain/index.js';
import { recoverVoucherSigner } from '../../src/protocol/voucher.js';
import { charged, infer, settle } from '../../src/sdk/index.js';
import { exampleSamples } from '../support/examples.js';
import { MIN_STAKE, useNetwork } from './support/network.js';

const { net: network, newClient } = useNetwork();

describe('payments', () => {
  it('charges the sum of the verified receipts received, and providers redeem exactly that', async () => {
    const providers = [
      await network().startProvider({ account: 1, price: 1000n, stake: 3n * MIN_STAKE }),
      await network().startProvider({ account: 2, price: 1500n, stake: 2n * MIN_STAKE }),
      await network().startProvider({ account: 3, price: 2000n }),
      // Overcharges: its answers fail verification and are never paid.
      await network().startProvider({
        account: 4,
        price: 1000n,
        stake: 4n * MIN_STAKE,
        faults: { chargePrice: 1001n },
      }),
    ];
    const c = await newClient();
    const int8 = network().models['iris-int8'];
    const iris = network().models.iris;
    const received = new Map<string, bigint>();
    const results = [];
    for (let i = 0; i < 4; i++)
      results.push(
        await infer(c, {
          model: int8.id,
          inputs: exampleSamples(int8, 'iris-int8'),
          maxPrice: 5000n,
          hedgeAfterMs: false,
        }),
      );
    results.push(
      await infer(c, {
        model: iris.id,
        inputs: exampleSamples(iris, 'iris'),
        maxPrice: 1600n,
        hedgeAfterMs: false,
      }),
    );
    for (let i = 0; i < 2; i++)
      results.push(
        await infer(c, {
          model: int8.id,
          inputs: exampleSamples(int8, 'iris-int8'),
          maxPrice: 5000n,
          mode: { quorum: 3 },
        }),
      );
    // Every verified receipt the client received (quorum: all k, including any minority).
    for (const r of results)
      for (const report of r.report.receipts) {
        received.set(report.provider, (received.get(report.provider) ?? 0n) + report.receipt.receipt.price);
      }
    const totals = charged(c);
    expect(Object.fromEntries(Object.entries(totals).map(([p, t]) => [p, t.charged]))).toEqual(
      Object.fromEntries(received),
    );
    expect(totals[providers[3]!.address]).toBeUndefined();

    const settled = await settle(c);
    expect(settled.every((s) => s.delivered)).toBe(true);
    for (const p of providers) {
      const owed = totals[p.address]?.charged ?? 0n;
      const voucher = p.latestVoucher();
      expect(voucher?.voucher.amount ?? 0n).toBe(owed);
      if (voucher)
        expect(
          await recoverVoucherSigner(voucher, {
            chainId: c.chainId,
            verifyingContract: c.deployment.contracts.paymentEscrow,
          }),
        ).toBe(c.address);
      const paid = await p.redeem();
      expect(paid).toBe(owed);
      expect(await getRedeemed(c.chain, { client: c.address, provider: p.address })).toBe(owed);
    }
  });

  it('on 402 PAYMENT_REQUIRED settles and retries once', async () => {
    const p = await network().startProvider({
      account: 1,
      price: 1000n,
      faults: { creditLimit: 2000n, ignoreAttachedVouchers: true },
    });
    const c = await newClient();
    const int8 = network().models['iris-int8'];
    for (let i = 0; i < 5; i++)
      await infer(c, { model: int8.id, inputs: exampleSamples(int8, 'iris-int8'), maxPrice: 5000n });
    expect(p.paymentRequests()).toBeGreaterThan(0);
    expect(charged(c)[p.address]).toEqual({ charged: 5000n, receipts: 5 });
    await settle(c);
    expect(p.latestVoucher()!.voucher.amount).toBe(5000n);
    expect(await p.redeem()).toBe(5000n);
  });
});
