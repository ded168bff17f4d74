import fc from 'fast-check';
import { getAddress, type Address } from 'viem';
import { describe, expect, it } from 'vitest';
import { setOffer } from '../../src/chain/index.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import {
  charged,
  discoverProviders,
  infer,
  providerHealth,
  rankProviders,
  type Client,
  type ProviderCandidate,
  type ProviderHealth,
} from '../../src/sdk/index.js';
import { exampleSamples } from '../support/examples.js';
import { MIN_STAKE, useNetwork } from './support/network.js';

const { net: network, newClient } = useNetwork();
const run = (c: Client, over: Partial<Parameters<typeof infer>[1]> = {}) => {
  const pkg = network().models['iris-int8'];
  return infer(c, { model: pkg.id, inputs: exampleSamples(pkg, 'iris-int8'), maxPrice: 5000n, ...over });
};

describe('selection', () => {
  it('never picks a provider priced above maxPrice, even with more stake', async () => {
    const pricey = await network().startProvider({ account: 1, price: 3000n, stake: 10n * MIN_STAKE });
    const cheap = await network().startProvider({ account: 2, price: 1000n });
    const c = await newClient();
    for (let i = 0; i < 4; i++) {
      const result = await run(c, { maxPrice: 2000n });
      expect(result.providers).toEqual([cheap.address]);
    }
    expect(pricey.requests()).toBe(0);
    // Within the cap, stake wins.
    expect((await run(c, { maxPrice: 3000n })).providers).toEqual([pricey.address]);
    const error = await run(c, { maxPrice: 999n }).catch((e: unknown) => e);
    expect(isGlassboxError(error, 'PRICE_TOO_HIGH')).toBe(true);
  });

  const address = fc
    .integer({ min: 1, max: 2 ** 31 })
    .map((n) => getAddress(`0x${n.toString(16).padStart(40, '0')}`));
  const candidate = fc.record({
    address,
    price: fc.bigInt({ min: 0n, max: 10_000n }),
    stake: fc.bigInt({ min: 0n, max: 10n ** 21n }),
    active: fc.boolean(),
    latency: fc.option(fc.integer({ min: 1, max: 5000 })),
    cooling: fc.boolean(),
  });
  it('property: ranks exactly the active providers within maxPrice, healthy before cooling', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(candidate, { selector: (c) => c.address, maxLength: 12 }),
        fc.bigInt({ min: 0n, max: 10_000n }),
        (list, maxPrice) => {
          const now = 1_000_000;
          const candidates: ProviderCandidate[] = list.map((c) => ({
            address: c.address,
            endpoint: 'http://127.0.0.1:1',
            signer: c.address,
            stake: c.stake,
            registered: true,
            paused: !c.active,
            active: c.active,
            runtimes: [`0x${'0'.repeat(64)}`],
            price: c.price,
            inputPrice: 0n,
            pending: undefined,
          }));
          const health = new Map<Address, ProviderHealth>(
            list.map((c) => [
              c.address,
              {
                latencyMs: c.latency ?? undefined,
                deviationMs: 0,
                successes: 0,
                failures: 0,
                failuresInRow: 0,
                coolUntil: c.cooling ? now + 1 : 0,
                lastError: undefined,
              },
            ]),
          );
          const ranked = rankProviders({ candidates, maxPrice, health, now });
          for (const r of ranked) expect(r.price <= maxPrice && r.active).toBe(true);
          expect(ranked.length).toBe(list.filter((c) => c.active && c.price <= maxPrice).length);
          const cooling = ranked.map((r) => list.find((c) => c.address === r.address)!.cooling);
          expect(cooling).toEqual([...cooling].sort((a, b) => Number(a) - Number(b)));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('prices', () => {
  it('does not charge a pending price increase inside its notice period', async () => {
    const p = await network().startProvider({ account: 1, price: 1000n });
    const pkg = network().models['iris-int8'];
    await setOffer(network().chain.as(1), { model: pkg.id, price: 4000n });
    const c = await newClient();
    const result = await run(c, { maxPrice: 5000n });
    expect(result.receipts[0]!.receipt.price).toBe(1000n);
    expect(charged(c)[p.address]).toEqual({ charged: 1000n, receipts: 1 });

    // A provider that charges the announced price early fails verification.
    p.faults.chargePrice = 4000n;
    const error = await run(c, { maxPrice: 5000n }).catch((e: unknown) => e);
    expect(isGlassboxError(error, 'VERIFICATION_FAILED')).toBe(true);
    expect(charged(c)[p.address]!.charged).toBe(1000n);
    p.faults.chargePrice = undefined;

    // After the notice period the new price is in force (and is what is charged).
    await network().chain.increaseTime(network().chain.deployment.params.priceNoticeMs + 1000);
    const later = await newClient();
    expect((await run(later, { maxPrice: 5000n })).receipts[0]!.receipt.price).toBe(4000n);
    expect(
      isGlassboxError(await run(later, { maxPrice: 3000n }).catch((e: unknown) => e), 'PRICE_TOO_HIGH'),
    ).toBe(true);
  });
});

describe('prices: the pair', () => {
  it("a client's quote keeps the pair in force while a raise of one price, behind a lowered other, waits", async () => {
    const p = await network().startProvider({ account: 1, price: 1000n });
    const pkg = network().models['iris-int8'];
    await setOffer(network().chain.as(1), { model: pkg.id, price: 900n, inputPrice: 50n });
    const c = await newClient();
    const [quote] = await discoverProviders(c, { model: pkg.id, fresh: true });
    expect(quote).toMatchObject({
      address: p.address,
      price: 1000n,
      inputPrice: 0n,
      pending: { price: 900n, inputPrice: 50n },
    });
    expect((await run(c)).receipts[0]!.receipt.price).toBe(1000n); // not the lowered 900 either

    await network().chain.increaseTime(network().chain.deployment.params.priceNoticeMs + 1000);
    const [later] = await discoverProviders(c, { model: pkg.id, fresh: true });
    expect(later).toMatchObject({ price: 900n, inputPrice: 50n, pending: undefined });
  });
});

describe('failover and hedging', () => {
  it('fails over when a provider is down (connection refused) and cools it down', async () => {
    const down = await network().startProvider({ account: 1, price: 1000n, stake: 10n * MIN_STAKE });
    const up = await network().startProvider({ account: 2, price: 1000n });
    await down.stop();
    const c = await newClient();
    const result = await run(c, { hedgeAfterMs: false });
    expect(result.providers).toEqual([up.address]);
    expect(result.report.rejected).toEqual([
      expect.objectContaining({ provider: down.address, code: 'PROVIDER_UNAVAILABLE' }),
    ]);
    expect(providerHealth(c).find((h) => h.provider === down.address)).toMatchObject({
      cooling: true,
      failures: 1,
    });
    // Cooling down: tried last, so the next request goes straight to the healthy one.
    const again = await run(c, { hedgeAfterMs: false });
    expect(again.report.rejected).toEqual([]);
    expect(again.providers).toEqual([up.address]);
  });

  it('fails over when a provider times out', async () => {
    const slow = await network().startProvider({
      account: 1,
      price: 1000n,
      stake: 10n * MIN_STAKE,
      faults: { delayMs: 1000 },
    });
    const fast = await network().startProvider({ account: 2, price: 1000n });
    const c = await newClient();
    const result = await run(c, { hedgeAfterMs: false, attemptTimeoutMs: 200 });
    expect(result.providers).toEqual([fast.address]);
    expect(result.report.rejected).toEqual([
      expect.objectContaining({ provider: slow.address, code: 'PROVIDER_TIMEOUT' }),
    ]);
    // Nothing was received from the slow one, so nothing is owed to it.
    expect(charged(c)[slow.address]).toBeUndefined();
  });

  it('hedges to the next provider once the latency budget passes, taking the faster answer', async () => {
    const slow = await network().startProvider({
      account: 1,
      price: 1000n,
      stake: 10n * MIN_STAKE,
      faults: { delayMs: 1500 },
    });
    const fast = await network().startProvider({ account: 2, price: 1000n });
    const c = await newClient({ hedgeAfterMs: 100 });
    const started = performance.now();
    const result = await run(c);
    const elapsed = performance.now() - started;
    expect(result.providers).toEqual([fast.address]);
    expect(result.report.hedged).toBe(true);
    expect(slow.requests()).toBe(1);
    expect(elapsed).toBeLessThan(1200);
    // (the slow one finishes in the background and is paid once it verifies: payments.test.ts, M-4)
  });

  it('hedges on the measured p95 when no fixed budget is set', async () => {
    const first = await network().startProvider({ account: 1, price: 1000n, stake: 10n * MIN_STAKE });
    // The second is measured slower (a higher latency band), so the first goes first.
    const second = await network().startProvider({ account: 2, price: 1000n, faults: { delayMs: 60 } });
    const c = await newClient({ minHedgeAfterMs: 50 });
    for (let i = 0; i < 3; i++) await run(c, { exclude: [second.address] });
    for (let i = 0; i < 3; i++) await run(c, { exclude: [first.address] });
    expect(
      rankProviders({
        candidates: await discoverProviders(c, { model: network().models['iris-int8'].id }),
        maxPrice: 5000n,
        health: c.state.health,
      })[0]!.address,
    ).toBe(first.address);
    // Now the first slows down: past its p95 budget the second is asked too and wins.
    first.faults.delayMs = 1000;
    second.faults.delayMs = 0;
    const started = performance.now();
    const result = await run(c);
    expect(performance.now() - started).toBeLessThan(800);
    expect(result.report.hedged).toBe(true);
    expect(result.providers).toEqual([second.address]);
  });
});
