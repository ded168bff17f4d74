import fc from 'fast-check';
import { toHex, hexToBytes, type Hex } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getProvider, reportUnadmittedRuntime } from '../../src/chain/index.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { runtimeHash } from '../../src/protocol/runtime-profile.js';
import { recoverReceiptSigner, type Receipt, type SignedReceipt } from '../../src/protocol/receipt.js';
import {
  charged,
  closeClient,
  infer,
  verifyReceipt,
  type CheckName,
  type Client,
} from '../../src/sdk/index.js';
import { exampleSamples } from '../support/examples.js';
import { nonCanonical } from '../support/signatures.js';
import { startNetwork, type Network } from './support/network.js';
import type { TestProvider } from './support/provider.js';

let net: Network;
let honest: TestProvider;
let client: Client;
beforeAll(async () => {
  net = await startNetwork();
  honest = await net.startProvider({ account: 1, price: 1000n });
  client = await net.client();
});
afterAll(async () => {
  if (client) await closeClient(client);
  await net?.stop();
});

const ALL_CHECKS: CheckName[] = [
  'signature',
  'signer',
  'provider',
  'model',
  'request',
  'client',
  'params',
  'inputHash',
  'outputHash',
  'outputs',
  'price',
  'runtime',
  'timestamp',
];

describe('receipt mode', () => {
  it('returns outputs with a receipt whose every check passed', async () => {
    const pkg = net.models['iris-int8'];
    const inputs = exampleSamples(pkg, 'iris-int8');
    const result = await infer(client, { model: pkg.id, inputs, maxPrice: 5000n });
    const local = await net.engine.run(pkg, inputs);
    expect(result.providers).toEqual([honest.address]);
    expect(result.outputs.label!.data).toEqual(local.outputs.label!.data);
    expect(result.receipts[0]!.receipt.outputHash).toBe(local.outputHash);
    expect(result.report.ok).toBe(true);
    const checks = result.report.receipts[0]!.checks;
    expect(checks.map((c) => c.check).sort()).toEqual([...ALL_CHECKS].sort());
    for (const c of checks) expect(c, c.detail).toMatchObject({ ok: true });
    expect(result.evidence).toBeUndefined();
  });

  it('takes JSON inputs (nested arrays, dtype from the schema) and traces on request', async () => {
    const pkg = net.models.iris;
    const result = await infer(client, {
      model: pkg.id,
      inputs: { features: [[5.1, 3.5, 1.4, 0.2]] },
      maxPrice: 5000n,
      trace: true,
    });
    expect(result.outputs.probabilities!.shape).toEqual([1, 3]);
    expect(result.report.receipts[0]!.checks.find((c) => c.check === 'trace')).toMatchObject({ ok: true });
  });

  it('re-executes locally in mode local and adds the comparison to the report', async () => {
    const pkg = net.models.iris;
    const result = await infer(client, {
      model: pkg.id,
      inputs: exampleSamples(pkg, 'iris'),
      maxPrice: 5000n,
      mode: 'local',
    });
    expect(result.report.mode).toBe('local');
    expect(result.report.receipts[0]!.checks.find((c) => c.check === 'local')).toMatchObject({ ok: true });
  });
});

describe('C-3 a runtime profile nobody runs', () => {
  it('a receipt under a profile never admitted fails the runtime check, and the receipt alone gets its provider slashed', async () => {
    const extended = runtimeHash({ ...net.engine.profile, graphOptimizationLevel: 'extended' });
    const liar = await net.startProvider({
      account: 5,
      price: 10n,
      faults: { runtime: extended, perturb: 'fixed' },
    });
    const c = await net.client();
    try {
      const pkg = net.models['iris-int8'];
      // the liar is the cheapest, so it is asked first; its answer does not verify, the honest one does
      const result = await infer(c, {
        model: pkg.id,
        inputs: exampleSamples(pkg, 'iris-int8'),
        maxPrice: 5000n,
        hedgeAfterMs: false,
      });
      expect(result.providers).toEqual([honest.address]);
      const refused = result.report.rejected.find((r) => r.provider === liar.address)!;
      expect(refused.code).toBe('VERIFICATION_FAILED');
      const runtime = refused.report!.checks.find((x) => x.check === 'runtime')!;
      expect(runtime.ok).toBe(false);
      expect(runtime.detail).toMatch(/not among the profiles .* declared on chain/);
      // a genuine receipt for this request, within price, but under a profile nobody runs: not paid
      expect(charged(c)[liar.address]).toBeUndefined();
      expect(charged(c)[honest.address]).toMatchObject({ receipts: 1 });
      // and the signed receipt is evidence enough: nobody could ever have checked it
      const before = (await getProvider(c.chain, liar.address)).stake;
      const { slashed } = await reportUnadmittedRuntime(c.chain, refused.report!.receipt);
      expect(slashed).toBe(before / 2n);
    } finally {
      await closeClient(c);
    }
  });
});

describe('verifyReceipt: one changed byte', () => {
  let signed: SignedReceipt;
  let inputs: ReturnType<typeof exampleSamples>;
  let outputs: Awaited<ReturnType<typeof infer>>['outputs'];
  beforeAll(async () => {
    const pkg = net.models['iris-int8'];
    inputs = exampleSamples(pkg, 'iris-int8');
    const result = await infer(client, { model: pkg.id, inputs, maxPrice: 5000n });
    signed = result.receipts[0]!;
    outputs = result.outputs;
  });
  const verify = (s: SignedReceipt) =>
    verifyReceipt(client, {
      receipt: s,
      model: net.models['iris-int8'].id,
      requestId: signed.receipt.requestId,
      provider: honest.address,
      maxPrice: 5000n,
      inputs,
      outputs,
    });

  const flipByte = (hex: Hex, index: number): Hex => {
    const bytes = hexToBytes(hex);
    bytes[index % bytes.length]! ^= 1 + (index % 255);
    return toHex(bytes);
  };

  /** The check(s) a change of each field must fail, besides the signer check that every change fails. */
  const EXPECTED: Record<keyof Receipt | 'signature', CheckName[]> = {
    requestId: ['request'],
    provider: ['provider'],
    client: ['client'],
    model: ['model'],
    inputHash: ['inputHash'],
    outputHash: ['outputHash'],
    paramsHash: ['params'],
    runtime: ['runtime'],
    traceRoot: [],
    price: [],
    timestamp: [],
    signature: [],
  };

  it('passes untouched', async () => {
    expect((await verify(signed)).ok).toBe(true);
  });

  for (const field of Object.keys(EXPECTED) as (keyof typeof EXPECTED)[]) {
    it(`fails on a changed byte of ${field}, naming why`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 64 }), async (index) => {
          let changed: SignedReceipt;
          if (field === 'signature') changed = { ...signed, signature: flipByte(signed.signature, index) };
          else {
            const value = signed.receipt[field];
            const next =
              typeof value === 'bigint'
                ? value ^ (1n << BigInt(8 * (index % 8)))
                : flipByte(value, index % (field === 'provider' || field === 'client' ? 20 : 32));
            changed = { ...signed, receipt: { ...signed.receipt, [field]: next } as Receipt };
          }
          const report = await verify(changed);
          expect(report.ok).toBe(false);
          const failed = report.checks.filter((c) => !c.ok).map((c) => c.check);
          // The signature no longer recovers to the provider's registered key (or not at all).
          expect(failed.some((c) => c === 'signer' || c === 'signature')).toBe(true);
          for (const c of EXPECTED[field]) expect(failed).toContain(c);
          for (const c of report.checks.filter((c) => !c.ok)) expect(c.detail.length).toBeGreaterThan(10);
        }),
        { numRuns: 4 },
      );
    });
  }
});

describe('L-8 non-canonical receipt signatures', () => {
  it('fail the signature check, although they recover to the signer off chain', async () => {
    const pkg = net.models['iris-int8'];
    const inputs = exampleSamples(pkg, 'iris-int8');
    const result = await infer(client, { model: pkg.id, inputs, maxPrice: 5000n });
    const signed = result.receipts[0]!;
    const domain = { chainId: client.chainId, verifyingContract: client.deployment.contracts.receiptLedger };
    const { parity, highS } = nonCanonical(signed.signature);
    for (const signature of [parity, highS]) {
      const twin = { ...signed, signature };
      expect(await recoverReceiptSigner(twin, domain)).toBe(honest.signer);
      const report = await verifyReceipt(client, {
        receipt: twin,
        model: pkg.id,
        requestId: signed.receipt.requestId,
        provider: honest.address,
        maxPrice: 5000n,
        inputs,
        outputs: result.outputs,
      });
      expect(report.ok).toBe(false);
      expect(report.checks.find((c) => c.check === 'signature')).toMatchObject({
        ok: false,
        detail: expect.stringContaining('not canonical') as string,
      });
    }
  });
});

describe('a provider that fails verification', () => {
  it('is never returned: an overcharging provider fails over to an honest one', async () => {
    const greedy = await net.startProvider({
      account: 2,
      price: 1000n,
      stake: 10n * net.chain.deployment.params.minStake,
      faults: { chargePrice: 4000n },
    });
    const c = await net.client();
    const pkg = net.models['iris-int8'];
    const result = await infer(c, {
      model: pkg.id,
      inputs: exampleSamples(pkg, 'iris-int8'),
      maxPrice: 5000n,
      hedgeAfterMs: false,
    });
    expect(greedy.requests()).toBe(1);
    expect(result.providers).toEqual([honest.address]);
    expect(result.report.rejected).toHaveLength(1);
    const rejected = result.report.rejected[0]!;
    expect(rejected).toMatchObject({ provider: greedy.address, code: 'VERIFICATION_FAILED' });
    expect(rejected.report!.checks.find((x) => x.check === 'price')).toMatchObject({
      ok: false,
      detail: expect.stringContaining("above the provider's effective offer 1000"),
    });

    // With the honest one excluded, nothing verifies.
    const error = await infer(c, {
      model: pkg.id,
      inputs: exampleSamples(pkg, 'iris-int8'),
      maxPrice: 5000n,
      exclude: [honest.address],
    }).catch((e: unknown) => e);
    expect(isGlassboxError(error, 'VERIFICATION_FAILED')).toBe(true);
    await greedy.stop();
  });
});
