import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  getBatch,
  getBatchCount,
  getBatchCommits,
  isCommitted,
  verifyInclusion,
} from '../../src/chain/index.js';
import type { GlassboxNode } from '../../src/node/index.js';
import type { BatchResponse, InferResponse, StoredReceipt } from '../../src/protocol/api.js';
import { decodeTensors, hashTensors } from '../../src/protocol/encoding.js';
import { verifyBatchProof } from '../../src/protocol/merkle.js';
import { receiptHash, signedReceiptFromJson } from '../../src/protocol/receipt.js';
import {
  CLIENT,
  fundClients,
  inferBody,
  post,
  PROVIDER,
  startTestChain,
  startTestNode,
  tempDir,
  type TestChain,
} from './support.js';

let chain: TestChain;
let node: GlassboxNode;
let dataDir: { dir: string; remove(): Promise<void> };

beforeAll(async () => {
  chain = await startTestChain();
  await fundClients(chain);
  dataDir = await tempDir();
  node = await startTestNode(chain, PROVIDER[1], dataDir.dir, {
    batch: { maxReceipts: 4, maxAgeMs: 60_000 },
    challengeWindowMs: 3_600_000,
  });
});

afterAll(async () => {
  await node?.stop();
  await chain?.stop();
  await dataDir?.remove();
});

async function answer(i: number): Promise<InferResponse> {
  const pkg = [...node.models.values()][i % 2]!;
  const res = await post(`${node.url}/v1/infer`, await inferBody(node, pkg, chain.key(CLIENT[1])));
  expect(res.status).toBe(200);
  return (await res.json()) as InferResponse;
}

async function waitFor(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('provider node: batches', () => {
  it('commits a batch every N receipts; the batch endpoint serves receipts, proofs and inputs that verify', async () => {
    const before = await getBatchCount(chain.as(0));
    const answers: InferResponse[] = [];
    for (let i = 0; i < 4; i++) answers.push(await answer(i));
    await waitFor(async () => (await getBatchCount(chain.as(0))) > before);

    const leaves = answers.map((a) => receiptHash(signedReceiptFromJson(a.receipt).receipt));
    const stored = (await (
      await fetch(`${node.url}/v1/receipts/${answers[0]!.receipt.receipt.requestId}`)
    ).json()) as StoredReceipt;
    await waitFor(async () => {
      const s = (await (
        await fetch(`${node.url}/v1/receipts/${answers[0]!.receipt.receipt.requestId}`)
      ).json()) as StoredReceipt;
      return s.batch?.id !== undefined;
    });
    const committed = (await (
      await fetch(`${node.url}/v1/receipts/${answers[0]!.receipt.receipt.requestId}`)
    ).json()) as StoredReceipt;
    expect(stored.receipt).toEqual(answers[0]!.receipt);
    const root = committed.batch!.root;
    const batchId = BigInt(committed.batch!.id!);

    const onChain = await getBatch(chain.as(0), batchId);
    expect(onChain.root).toBe(root);
    expect(onChain.count).toBe(4);
    expect(onChain.provider).toBe(node.address);
    const [event] = (await getBatchCommits(chain.as(0), { provider: node.address })).filter(
      (e) => e.args.batchId === batchId,
    );
    expect(event?.args.uri).toBe(`${node.url}/v1/batches/${root}`);

    const res = await fetch(event!.args.uri);
    expect(res.status).toBe(200);
    const batch = (await res.json()) as BatchResponse;
    expect(batch.root).toBe(root);
    expect(batch.count).toBe(4);
    expect(batch.receipts.map((r) => r.receipt)).toEqual(answers.map((a) => a.receipt));
    for (const [i, r] of batch.receipts.entries()) {
      const signed = signedReceiptFromJson(r.receipt);
      expect(receiptHash(signed.receipt)).toBe(leaves[i]);
      expect(verifyBatchProof(root, leaves[i]!, r.batch!.proof)).toBe(true);
      expect(
        await verifyInclusion(chain.as(0), { batchId, receiptHash: leaves[i]!, proof: r.batch!.proof }),
      ).toBe(true);
      const inputs = decodeTensors(new Uint8Array(Buffer.from(r.inputs!, 'base64')));
      expect(hashTensors(inputs)).toBe(signed.receipt.inputHash);
    }
    expect(
      await isCommitted(chain.as(0), {
        batchId,
        receipt: signedReceiptFromJson(answers[1]!.receipt).receipt,
        proof: batch.receipts[1]!.batch!.proof,
      }),
    ).toBe(true);
  });

  it('stop commits the open batch; restart keeps serving it; pruning drops it after the window', async () => {
    const a = await answer(0);
    const b = await answer(1);
    const count = await getBatchCount(chain.as(0));
    await node.stop();
    expect(await getBatchCount(chain.as(0))).toBe(count + 1n);
    node = await startTestNode(chain, PROVIDER[1], dataDir.dir, {
      batch: { maxReceipts: 4, maxAgeMs: 60_000 },
      challengeWindowMs: 3_600_000,
    });
    const stored = (await (
      await fetch(`${node.url}/v1/receipts/${b.receipt.receipt.requestId}`)
    ).json()) as StoredReceipt;
    expect(stored.receipt).toEqual(b.receipt);
    expect(stored.batch?.id).toBe(count.toString());
    const batch = (await (
      await fetch(`${node.url}/v1/batches/${stored.batch!.root}`)
    ).json()) as BatchResponse;
    expect(batch.receipts.map((r) => r.receipt)).toEqual([a.receipt, b.receipt]);

    // Not yet past the window: nothing is pruned. Past it: committed receipts go, open ones stay.
    const open = await answer(0);
    expect(node.prune()).toBe(0);
    expect(node.prune(Date.now() + 3_600_001)).toBeGreaterThanOrEqual(6);
    expect((await fetch(`${node.url}/v1/receipts/${b.receipt.receipt.requestId}`)).status).toBe(404);
    expect((await fetch(`${node.url}/v1/batches/${stored.batch!.root}`)).status).toBe(404);
    expect((await fetch(`${node.url}/v1/receipts/${open.receipt.receipt.requestId}`)).status).toBe(200);
  });

  it('commits a partial batch once its oldest receipt is maxAgeMs old', async () => {
    await node.stop();
    node = await startTestNode(chain, PROVIDER[1], dataDir.dir, {
      batch: { maxReceipts: 100, maxAgeMs: 200 },
    });
    const a = await answer(1);
    await waitFor(async () => {
      const s = (await (
        await fetch(`${node.url}/v1/receipts/${a.receipt.receipt.requestId}`)
      ).json()) as StoredReceipt;
      return s.batch?.id !== undefined;
    }, 5_000);
  });
});
