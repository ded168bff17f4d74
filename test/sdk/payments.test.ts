import { describe, expect, it } from 'vitest';
import { getRedeemed } from '../../src/chain/index.js';
import { recoverVoucherSigner } from '../../src/protocol/voucher.js';
import { charged, closeClient, infer, settle, type Client } from '../../src/sdk/index.js';
import { exampleSamples } from '../support/examples.js';
import { MIN_STAKE, useNetwork } from './support/network.js';

const { net: network, newClient } = useNetwork();
const run = (c: Client, over: Partial<Parameters<typeof infer>[1]> = {}) => {
  const pkg = network().models['iris-int8'];
  return infer(c, { model: pkg.id, inputs: exampleSamples(pkg, 'iris-int8'), maxPrice: 5000n, ...over });
};

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
    // Every verified receipt the client received (quorum: the majority, here all k).
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

describe('M-4 the client pays for every answer a provider sent it', () => {
  it('a hedged request that lost finishes in the background and is paid: delivered = charged after settle', async () => {
    const slow = await network().startProvider({
      account: 1,
      price: 1000n,
      stake: 10n * MIN_STAKE,
      faults: { delayMs: 600 },
    });
    const fast = await network().startProvider({ account: 2, price: 1500n });
    const c = await newClient({ hedgeAfterMs: 100 });
    const result = await run(c);
    expect(result.report.hedged).toBe(true);
    expect(result.providers).toEqual([fast.address]);
    expect(charged(c)[slow.address]).toBeUndefined(); // still running
    const settled = await settle(c);
    expect(settled.every((s) => s.delivered)).toBe(true);
    expect(slow.delivered()).toBe(1000n);
    for (const p of [slow, fast]) {
      expect(charged(c)[p.address]?.charged).toBe(p.delivered());
      expect(p.latestVoucher()?.voucher.amount).toBe(p.delivered());
    }
  });

  it('closing the client cancels a hedged request still running; nothing fails after', async () => {
    const slow = await network().startProvider({
      account: 1,
      price: 1000n,
      stake: 10n * MIN_STAKE,
      faults: { delayMs: 1500 },
    });
    await network().startProvider({ account: 2, price: 1000n });
    const c = await newClient({ hedgeAfterMs: 100 });
    await run(c);
    expect(c.state.background.size).toBe(1);
    const started = performance.now();
    await closeClient(c);
    expect(performance.now() - started).toBeLessThan(1000); // did not wait for the slow answer
    expect(c.state.background.size).toBe(0);
    // The slow provider answers into a closed connection; no rejection escapes (vitest fails on one).
    await new Promise((r) => setTimeout(r, 1600));
    expect(slow.delivered()).toBe(1000n);
    expect(charged(c)[slow.address]).toBeUndefined();
  });
});

describe('L-6 quorum pays only the majority', () => {
  it('with one of 3 providers perturbing, the liar is not paid and the two honest ones are', async () => {
    const honest = [
      await network().startProvider({ account: 1, price: 1000n }),
      await network().startProvider({ account: 2, price: 1200n }),
    ];
    const liar = await network().startProvider({
      account: 3,
      price: 1000n,
      stake: 5n * MIN_STAKE,
      faults: { perturb: 'fixed' },
    });
    const c = await newClient();
    const result = await run(c, { mode: { quorum: 3 } });
    expect(result.report.quorum?.majority).toBe(2);
    expect(result.report.receipts.every((r) => r.ok)).toBe(true); // the liar's receipt verified too
    expect(liar.delivered()).toBe(1000n);
    expect(charged(c)[liar.address]).toBeUndefined();
    for (const p of honest) expect(charged(c)[p.address]?.charged).toBe(p.delivered());
    await settle(c);
    expect(liar.latestVoucher()).toBeUndefined();
  });

  it('without a majority nobody is paid', async () => {
    const providers = [
      await network().startProvider({ account: 1, price: 1000n }),
      await network().startProvider({ account: 2, price: 1000n, faults: { perturb: 'fixed' } }),
      await network().startProvider({ account: 3, price: 1000n, faults: { perturb: 'random' } }),
    ];
    const c = await newClient();
    const error = await run(c, { mode: { quorum: 3 } }).catch((e: unknown) => e);
    expect((error as { code?: string }).code).toBe('QUORUM_NO_MAJORITY');
    for (const p of providers) expect(charged(c)[p.address]).toBeUndefined();
  });
});
