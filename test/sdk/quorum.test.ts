import { describe, expect, it } from 'vitest';
import { getProvider } from '../../src/chain/index.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { infer, submitEvidence, type Client, type Evidence } from '../../src/sdk/index.js';
import { exampleSamples } from '../support/examples.js';
import { MIN_STAKE, useNetwork } from './support/network.js';

const { net: network, newClient } = useNetwork();
const pkg = () => network().models['iris-int8'];
const run = (c: Client, over: Partial<Parameters<typeof infer>[1]> = {}) =>
  infer(c, { model: pkg().id, inputs: exampleSamples(pkg(), 'iris-int8'), maxPrice: 5000n, ...over });

describe('quorum', () => {
  it('returns the honest majority of 3 with evidence against the provider that perturbs', async () => {
    const a = await network().startProvider({ account: 1, price: 1000n });
    const b = await network().startProvider({ account: 2, price: 1000n });
    const liar = await network().startProvider({
      account: 3,
      price: 1000n,
      stake: 5n * MIN_STAKE,
      faults: { perturb: 'fixed' },
    });
    const c = await newClient();
    const result = await run(c, { mode: { quorum: 3 } });
    const local = await network().engine.run(pkg(), exampleSamples(pkg(), 'iris-int8'));
    expect(result.receipts.every((r) => r.receipt.outputHash === local.outputHash)).toBe(true);
    expect(result.outputs.label!.data).toEqual(local.outputs.label!.data);
    expect([...result.providers].sort()).toEqual([a.address, b.address].sort());
    expect(result.report.quorum).toMatchObject({ k: 3, majority: 2 });
    expect(result.report.receipts).toHaveLength(3);
    expect(result.report.receipts.every((r) => r.ok)).toBe(true);

    const evidence = result.evidence!;
    expect(evidence.majority).toHaveLength(2);
    expect(evidence.disagreements).toHaveLength(1);
    const d = evidence.disagreements[0]!;
    expect(d.provider).toBe(liar.address);
    expect(d.reason).toMatch(/differs at element 0/);
    expect(d.against!.receipt.outputHash).toBe(local.outputHash);
    expect(d.inputsUri).toBe(`${liar.url}/v1/receipts/${d.receipt.receipt.requestId}`);
    expect(evidence.equivocations).toEqual([]);

    // Different providers disagreeing is a challenge, not an equivocation: nothing is sent unasked.
    const submitted = await submitEvidence(c, evidence);
    expect(submitted.equivocations).toEqual([]);
    expect(submitted.challenges).toEqual([
      expect.objectContaining({
        provider: liar.address,
        submitted: false,
        reason: expect.stringContaining('challenge: true'),
      }),
    ]);
  });

  it('replaces a provider that is down and still gets 3 answers', async () => {
    // The others listen first: a server started after `down` stopped could be handed its port by
    // the kernel (9 in 20,000 tries here), and `down`'s endpoint would then reach that provider.
    for (const account of [2, 3, 4]) await network().startProvider({ account, price: 1000n });
    const down = await network().startProvider({ account: 1, price: 1000n, stake: 5n * MIN_STAKE });
    await down.stop();
    const result = await run(await newClient(), { mode: { quorum: 3 } });
    expect(result.providers).toHaveLength(3);
    expect(result.providers).not.toContain(down.address);
    expect(result.report.rejected).toEqual([
      expect.objectContaining({ provider: down.address, code: 'PROVIDER_UNAVAILABLE' }),
    ]);
    expect(result.evidence).toBeUndefined();
  });

  it('an endpoint that answers as another provider (a stale endpoint) is PROVIDER_UNAVAILABLE, not a failed check', async () => {
    const moved = await network().startProvider({ account: 1, price: 1000n, stake: 5n * MIN_STAKE });
    await moved.stop();
    // what the kernel may do by chance: the next server gets the port `moved` left
    const port = Number(new URL(moved.url).port);
    const other = await network().startProvider({ account: 2, price: 1000n, port });
    const third = await network().startProvider({ account: 3, price: 1000n });
    const fourth = await network().startProvider({ account: 4, price: 1000n });
    const c = await newClient();

    const result = await run(c, { mode: { quorum: 3 } });
    expect([...result.providers].sort()).toEqual([other.address, third.address, fourth.address].sort());
    expect(result.report.rejected).toEqual([
      expect.objectContaining({
        provider: moved.address,
        code: 'PROVIDER_UNAVAILABLE',
        message: expect.stringContaining(`answers as ${other.address}`),
      }),
    ]);
    expect(result.evidence).toBeUndefined();

    // alone, it is the provider that can't be reached
    const error = await run(c, { exclude: [other.address, third.address, fourth.address] }).catch(
      (e: unknown) => e,
    );
    expect(isGlassboxError(error, 'PROVIDER_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toMatch(/no provider of model .* answered/);
  });

  it('refuses an answer without a majority (QUORUM_NO_MAJORITY, with the evidence)', async () => {
    await network().startProvider({ account: 1, price: 1000n });
    await network().startProvider({ account: 2, price: 1000n, faults: { perturb: 'fixed' } });
    await network().startProvider({ account: 3, price: 1000n, faults: { perturb: 'random' } });
    const error = await run(await newClient(), { mode: { quorum: 3 } }).catch((e: unknown) => e);
    expect(isGlassboxError(error, 'QUORUM_NO_MAJORITY')).toBe(true);
    const evidence = (error as { details: { evidence: Evidence } }).details.evidence;
    expect(evidence.majority).toEqual([]);
    expect(evidence.disagreements).toHaveLength(3);
  });

  it('needs k providers within maxPrice', async () => {
    await network().startProvider({ account: 1, price: 1000n });
    await network().startProvider({ account: 2, price: 9000n });
    const error = await run(await newClient(), { mode: { quorum: 2 } }).catch((e: unknown) => e);
    expect(isGlassboxError(error, 'PROVIDER_UNAVAILABLE')).toBe(true);
  });
});

describe('equivocation', () => {
  it('catches one provider answering the same input two ways, and submitting it slashes the provider', async () => {
    const liar = await network().startProvider({ account: 1, price: 1000n, faults: { perturb: 'random' } });
    const c = await newClient();
    const first = await run(c);
    expect(first.evidence).toBeUndefined();
    const second = await run(c);
    const evidence = second.evidence!;
    expect(evidence.equivocations).toHaveLength(1);
    const e = evidence.equivocations[0]!;
    expect(e.provider).toBe(liar.address);
    expect(e.a.receipt.inputHash).toBe(e.b.receipt.inputHash);
    expect(e.a.receipt.outputHash).not.toBe(e.b.receipt.outputHash);

    const before = await getProvider(c.chain, liar.address);
    const submitted = await submitEvidence(c, evidence);
    expect(submitted.equivocations).toEqual([
      expect.objectContaining({ provider: liar.address, submitted: true }),
    ]);
    const slashed = (submitted.equivocations[0] as { slashed: bigint }).slashed;
    expect(slashed).toBe((before.stake * 5000n) / 10_000n);
    expect((await getProvider(c.chain, liar.address)).stake).toBe(before.stake - slashed);

    // Once per (provider, model, input, params, runtime): a second report is refused, with the reason.
    const again = await submitEvidence(c, evidence);
    expect(again.equivocations[0]).toMatchObject({ submitted: false });
  });

  it('does not submit an equivocation on a model that is not exact on chain', async () => {
    const iris = network().models.iris;
    await network().startProvider({ account: 1, price: 1000n, faults: { perturb: 'random' } });
    const c = await newClient();
    const go = () => infer(c, { model: iris.id, inputs: exampleSamples(iris, 'iris'), maxPrice: 5000n });
    await go();
    const evidence = (await go()).evidence!;
    expect(evidence.equivocations).toHaveLength(1);
    const submitted = await submitEvidence(c, evidence);
    expect(submitted.equivocations[0]).toMatchObject({
      submitted: false,
      reason: expect.stringContaining('not registered exact'),
    });
  });
});
