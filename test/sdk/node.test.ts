import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatePrivateKey } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRedeemed } from '../../src/chain/index.js';
import { createNode, parseNodeConfig, type GlassboxNode } from '../../src/node/index.js';
import { isGlassboxError, type GlassboxError } from '../../src/protocol/errors.js';
import {
  charged,
  closeClient,
  infer,
  settle,
  type Client,
  type RejectedAttempt,
} from '../../src/sdk/index.js';
import { exampleDir, exampleSamples } from '../support/examples.js';
import { MIN_STAKE, startNetwork, type Network } from './support/network.js';
import { faultyNode } from '../support/faults.js';

/* The SDK against the real provider node (src/node). The SDK never imports the node; its tests may. */
describe('the SDK against src/node', () => {
  let net: Network;
  let client: Client;
  const nodes: GlassboxNode[] = [];
  const dirs: string[] = [];
  beforeAll(async () => {
    net = await startNetwork();
    for (const [i, perturb] of [
      [1, 0],
      [2, 0],
      [3, 1],
    ] as const) {
      const dataDir = mkdtempSync(join(tmpdir(), 'glassbox-sdk-node-'));
      dirs.push(dataDir);
      const config = parseNodeConfig({
        chain: {
          rpcUrl: net.chain.anvil.rpcUrl,
          chainId: net.chain.anvil.chainId,
          deployment: net.chain.deployment,
          pollingIntervalMs: 5,
        },
        keys: { stakingKey: net.chain.key(i) },
        dataDir,
        models: [{ model: exampleDir('iris-int8'), price: '1000' }],
        stake: (MIN_STAKE * BigInt(i === 3 ? 3 : 1)).toString(),
        creditLimit: '5000',
        logLevel: 'silent',
      });
      nodes.push(await (await createNode(config, perturb ? faultyNode(config, { perturb }) : {})).start());
    }
    client = await net.client();
  });
  afterAll(async () => {
    if (client) await closeClient(client);
    await Promise.all(nodes.map((n) => n.stop()));
    await net?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('receipt mode, quorum 3 with evidence, and payments that redeem to what was charged', async () => {
    const pkg = net.models['iris-int8'];
    const inputs = exampleSamples(pkg, 'iris-int8');
    const local = await net.engine.run(pkg, inputs);
    const one = await infer(client, {
      model: pkg.id,
      inputs,
      maxPrice: 5000n,
      exclude: [nodes[2]!.address as `0x${string}`],
    });
    expect(one.report.ok).toBe(true);
    expect(one.receipts[0]!.receipt.outputHash).toBe(local.outputHash);

    const q = await infer(client, { model: pkg.id, inputs, maxPrice: 5000n, mode: { quorum: 3 } });
    expect(q.receipts.every((r) => r.receipt.outputHash === local.outputHash)).toBe(true);
    expect(q.evidence?.disagreements.map((d) => d.provider)).toEqual([nodes[2]!.address]);

    const owed = charged(client);
    const settled = await settle(client);
    expect(settled.every((s) => s.delivered)).toBe(true);
    for (const n of nodes) {
      await n.redeemVouchers();
      const total = owed[n.address as `0x${string}`]?.charged ?? 0n;
      expect(
        await getRedeemed(client.chain, { client: client.address, provider: n.address as `0x${string}` }),
      ).toBe(total);
    }
  });

  it('an unfunded client is refused by every node: it must deposit (audit H-3)', async () => {
    const unfunded = await net.client({ account: generatePrivateKey() });
    try {
      const pkg = net.models['iris-int8'];
      const error = await infer(unfunded, {
        model: pkg.id,
        inputs: exampleSamples(pkg, 'iris-int8'),
        maxPrice: 5000n,
        hedgeAfterMs: false,
      }).catch((e: unknown) => e);
      // Every node refused for the same reason, so that is the error, not an unreachable network.
      expect(isGlassboxError(error, 'PAYMENT_REQUIRED')).toBe(true);
      expect((error as GlassboxError).shortMessage).toMatch(
        /^every provider of model .* refused the request: .*must deposit/,
      );
      const rejected = (error as GlassboxError).details.rejected as RejectedAttempt[];
      expect(rejected).toHaveLength(nodes.length);
      for (const r of rejected) {
        expect(r.code).toBe('PAYMENT_REQUIRED');
        expect(r.message).toContain('must deposit');
      }
      for (const n of nodes) expect(n.db.getAccount(unfunded.address).delivered).toBe(0n);
    } finally {
      await closeClient(unfunded);
    }
  });
});
