import type { Address, Hex } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type ApiTarget } from '../../src/api/client.js';
import { providerApi } from '../../src/api/provider.js';
import { routes } from '../../src/api/routes.js';
import { connect, getProvider, getRedeemed, setOffer, withAccount } from '../../src/chain/index.js';
import { devnetClient, startDevnet, type Devnet } from '../../src/devnet/index.js';
import { DEFAULT_MAX_RESPONSE_BYTES } from '../../src/protocol/body.js';
import { MAX_MANIFEST_BYTES } from '../../src/protocol/manifest.js';
import { signedReceiptFromJson, type SignedReceipt } from '../../src/protocol/receipt.js';
import {
  charged,
  closeClient,
  infer,
  settle,
  submitEvidence,
  verifyReceipt,
  type Client,
} from '../../src/sdk/index.js';
import { examplePackage, exampleSamples, exampleEngine } from '../support/examples.js';
import { faultyProvider } from '../support/faults.js';

/*
 * The network end to end, with real processes on loopback: anvil, five provider nodes started by
 * the built CLI (`glassbox node start`), and a client using the SDK. Providers 0-2 are honest,
 * 3 perturbs half of its answers (test/support/faults.ts), 4 charges 100 times the others' price.
 */
const PRICE = 10n ** 15n;
const MAX_PRICE = 10n ** 16n;
const CHEATER = 3;
const EXPENSIVE = 4;

let devnet: Devnet;
let client: Client;
const engine = exampleEngine();

beforeAll(async () => {
  devnet = await startDevnet({
    providers: 5,
    models: [(await import('../support/examples.js')).exampleDir('iris-int8')],
    provider: (i) =>
      i === CHEATER ? faultyProvider({ perturb: 0.5 }) : i === EXPENSIVE ? { price: PRICE * 100n } : {},
    nodeConfig: { batch: { maxReceipts: 50, maxAgeMs: 500 }, redeemIntervalMs: 500, logLevel: 'error' },
  });
  client = await devnetClient(devnet, { discoveryTtlMs: 200 });
}, 120_000);

afterAll(async () => {
  if (client) await closeClient(client);
  await devnet?.stop();
  await engine.close();
});

const address = (i: number): Address => devnet.providers[i]!.address;
const honest = () => [0, 1, 2].map(address);

async function irisInt8() {
  const pkg = await examplePackage('iris-int8');
  return { pkg, inputs: exampleSamples(pkg, 'iris-int8') };
}

describe('a devnet of five providers', () => {
  it('answers in receipt mode and quorum 3 with correct outputs, and every receipt verifies', async () => {
    const { pkg, inputs } = await irisInt8();
    expect(pkg.id).toBe(devnet.models[0]!.id);
    const local = await engine.run(pkg, inputs);
    const one = await infer(client, {
      model: pkg.id,
      inputs,
      maxPrice: MAX_PRICE,
      exclude: [address(CHEATER)],
    });
    expect(one.receipts[0]!.receipt.outputHash).toBe(local.outputHash);
    const three = await infer(client, {
      model: pkg.id,
      inputs,
      maxPrice: MAX_PRICE,
      mode: { quorum: 3 },
      exclude: [address(CHEATER)],
    });
    expect(three.receipts).toHaveLength(3);
    expect(new Set(three.providers).size).toBe(3);
    for (const report of [...one.report.receipts, ...three.report.receipts]) {
      expect(report.ok).toBe(true);
      expect(report.checks.every((c) => c.ok)).toBe(true);
    }
    // One changed byte of a receipt fails verification, and the report says which check and why.
    const signed = one.receipts[0]!;
    const tampered: SignedReceipt = {
      ...signed,
      receipt: { ...signed.receipt, price: signed.receipt.price + 1n },
    };
    const report = await verifyReceipt(client, {
      receipt: tampered,
      model: pkg.id,
      requestId: signed.receipt.requestId,
      inputs,
      outputs: one.outputs,
    });
    expect(report.ok).toBe(false);
    expect(report.checks.find((c) => c.check === 'signer')).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/is not a signing key registered by/),
    });
  });

  it("every JSON answer of a provider's routes follows its schema, read with the typed client", async () => {
    // (Each node also checks its own answers against the same schemas before they leave.)
    const { pkg, inputs } = await irisInt8();
    const one = await infer(client, {
      model: pkg.id,
      inputs,
      maxPrice: MAX_PRICE,
      exclude: [address(CHEATER)],
    });
    const provider = devnet.providers.find((p) => p.address === one.providers[0])!;
    const node: ApiTarget = {
      endpoint: provider.url,
      name: `provider ${provider.address}`,
      provider: provider.address,
      timeoutMs: 10_000,
      maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES,
    };
    const id = one.receipts[0]!.receipt.requestId;
    let stored = await call(node, routes.receipt, { params: { id } });
    for (let i = 0; i < 100 && stored.batch?.id === undefined; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100)); // committed within maxAgeMs
      stored = await call(node, routes.receipt, { params: { id } });
    }
    expect(stored.batch?.id).toBeDefined();
    const page = await providerApi(provider.url, { provider: provider.address }).getBatchPage(
      stored.batch!.root,
      0,
    );
    expect(page.receipts.map((r) => r.receipt.receipt.requestId)).toContain(id);
    expect((await call(node, routes.models, {})).models.map((m) => m.id)).toContain(pkg.id);
    expect((await call(node, routes.status, { query: { limit: 5 } })).limit).toBe(5);
    expect((await call(node, routes.health, {})).ok).toBe(true);
    expect((await call(node, routes.openapi, {})).openapi).toBe('3.1.0');
    const manifest = await providerApi(provider.url).getBlob(pkg.id, MAX_MANIFEST_BYTES);
    expect(manifest.byteLength).toBeGreaterThan(0);
  });

  it('loses no request when a provider is killed -9 mid-stream, and the restarted provider still has every receipt it answered', async () => {
    const { pkg, inputs } = await irisInt8();
    const expected = (await engine.run(pkg, inputs)).outputHash;
    const victim = devnet.providers[1]!;
    const answered: SignedReceipt[] = [];
    let started = 0;
    let failures = 0;
    let killed: Promise<void> | undefined;
    let restarted: Promise<void> | undefined;
    // Four concurrent streams; the provider dies (SIGKILL, requests in flight) after 60 answers and
    // comes back after 130.
    const stream = async () => {
      while (started < 200) {
        started++;
        try {
          const r = await infer(client, {
            model: pkg.id,
            inputs,
            maxPrice: MAX_PRICE,
            exclude: [address(CHEATER)],
            attemptTimeoutMs: 2000,
          });
          expect(r.receipts[0]!.receipt.outputHash).toBe(expected);
          answered.push(r.receipts[0]!);
        } catch {
          failures++;
        }
        if (answered.length >= 60) killed ??= victim.kill('SIGKILL');
        if (answered.length >= 130) restarted ??= killed!.then(() => victim.restart());
      }
    };
    await Promise.all([stream(), stream(), stream(), stream()]);
    await restarted;
    expect(failures).toBe(0);
    expect(answered.length).toBe(200);
    const fromVictim = answered.filter((r) => r.receipt.provider === victim.address);
    expect(fromVictim.length).toBeGreaterThan(0);
    for (const r of fromVictim) {
      const response = await fetch(new URL(`/v1/receipts/${r.receipt.requestId}`, victim.url));
      expect(response.status).toBe(200);
      const stored = signedReceiptFromJson(((await response.json()) as { receipt: unknown }).receipt);
      expect(stored).toEqual(r);
    }
  }, 180_000);

  it('never uses a provider above maxPrice, and does not charge a price increase inside its notice period', async () => {
    const { pkg, inputs } = await irisInt8();
    const owner = withAccount(
      {
        ...connect({ rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, pollingIntervalMs: 20 }),
        deployment: devnet.deployment,
      },
      devnet.anvil.accounts[1]!.privateKey,
    );
    await setOffer(owner, { model: pkg.id, price: PRICE * 5n }); // provider 0 raises its price: takes effect after the notice
    const providers = new Set<string>();
    for (let i = 0; i < 15; i++) {
      const r = await infer(client, {
        model: pkg.id,
        inputs,
        maxPrice: MAX_PRICE,
        exclude: [address(CHEATER)],
      });
      for (const receipt of r.receipts) {
        providers.add(receipt.receipt.provider);
        expect(receipt.receipt.price).toBe(PRICE);
      }
    }
    expect(providers.has(address(EXPENSIVE))).toBe(false);
  });

  it('returns the honest majority with evidence against a perturbing provider, and its equivocation slashes it', async () => {
    const { pkg, inputs } = await irisInt8();
    const expected = (await engine.run(pkg, inputs)).outputHash;
    // Quorum over providers 0, 1 and the cheater, until the cheater perturbs an answer.
    let evidenceSeen = false;
    for (let i = 0; i < 20 && !evidenceSeen; i++) {
      const q = await infer(client, {
        model: pkg.id,
        inputs,
        maxPrice: MAX_PRICE,
        mode: { quorum: 3 },
        exclude: [address(2), address(EXPENSIVE)],
      });
      expect(q.receipts.every((r) => r.receipt.outputHash === expected)).toBe(true);
      if (q.evidence) {
        expect(q.evidence.disagreements.map((d) => d.provider)).toEqual([address(CHEATER)]);
        evidenceSeen = true;
      }
    }
    expect(evidenceSeen).toBe(true);
    // Asked alone, the cheater signs two different answers to one question: equivocation, on an exact model.
    const before = (await getProvider(client.chain, address(CHEATER))).stake;
    let slashed = false;
    for (let i = 0; i < 20 && !slashed; i++) {
      const alone = await infer(client, {
        model: pkg.id,
        inputs,
        maxPrice: MAX_PRICE,
        exclude: [...honest(), address(EXPENSIVE)],
      }).catch((error: { details?: { evidence?: Parameters<typeof submitEvidence>[1] } }) => ({
        evidence: error.details?.evidence,
      }));
      if (alone.evidence?.equivocations.length) {
        const result = await submitEvidence(client, alone.evidence);
        expect(result.equivocations[0]).toMatchObject({ provider: address(CHEATER), submitted: true });
        slashed = true;
      }
    }
    expect(slashed).toBe(true);
    const after = (await getProvider(client.chain, address(CHEATER))).stake;
    expect(after).toBe(before / 2n); // slashBps 5000
    for (const i of [0, 1, 2])
      expect((await getProvider(client.chain, address(i))).stake).toBe(1_000n * 10n ** 18n);
  }, 120_000);

  it('pays providers exactly what the client was charged, to the base unit', async () => {
    const owed = charged(client);
    expect(Object.keys(owed).length).toBeGreaterThanOrEqual(3);
    await settle(client);
    const deadline = Date.now() + 20_000;
    for (const [provider, { charged: amount }] of Object.entries(owed)) {
      let redeemed = 0n;
      while (Date.now() < deadline) {
        redeemed = await getRedeemed(client.chain, {
          client: devnet.client.address,
          provider: provider as Hex,
        });
        if (redeemed === amount) break;
        // a provider redeems again only once its last redemption's hold is over: skip the wait
        await devnet.advanceTime(devnet.deployment.params.paymentHoldMs);
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(redeemed).toBe(amount);
    }
  }, 60_000);
});
