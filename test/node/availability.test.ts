import { bytesToHex, getAddress } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  challengeAvailability,
  challengeBatch,
  getBatchCommits,
  getChallenge,
  getEvents,
  getPublishedBatch,
} from '../../src/chain/index.js';
import type { GlassboxNode } from '../../src/node/index.js';
import type { BatchResponse, InferResponse } from '../../src/protocol/api.js';
import { encodeTensors } from '../../src/protocol/encoding.js';
import { inputsFromJson } from '../../src/protocol/inputs.js';
import { batchTree } from '../../src/protocol/merkle.js';
import { receiptHash, signedReceiptFromJson, type Receipt } from '../../src/protocol/receipt.js';
import {
  CLIENT,
  inferBody,
  post,
  PROVIDER,
  startTestChain,
  startTestNode,
  tempDir,
  type TestChain,
} from './support.js';

/*
 * A provider's side of availability challenges, on a real node and chain: an honest node answers
 * them on chain from its database (the batch's receipt hashes, a receipt and its inputs); a node
 * with the `withhold` fault serves nothing of its batches and answers nothing.
 */

let chain: TestChain;
let honest: GlassboxNode;
let withholding: GlassboxNode;
const dirs: { remove(): Promise<void> }[] = [];
const CHALLENGER = 5;

beforeAll(async () => {
  chain = await startTestChain();
  const start = async (i: number, fault?: object) => {
    const dir = await tempDir();
    dirs.push(dir);
    return startTestNode(chain, i, dir.dir, {
      batch: { maxReceipts: 3, maxAgeMs: 60_000 },
      ...(fault ? { fault } : {}),
    });
  };
  honest = await start(PROVIDER[0]);
  withholding = await start(PROVIDER[1], { withhold: 'batches' });
});

afterAll(async () => {
  await honest?.stop();
  await withholding?.stop();
  await chain?.stop();
  for (const d of dirs) await d.remove();
});

/** Three answers from `node`, committed as one batch; returns the batch id and the answers. */
async function committedBatch(node: GlassboxNode) {
  const answers: InferResponse[] = [];
  const pkg = [...node.models.values()][0]!;
  for (let i = 0; i < 3; i++) {
    const res = await post(`${node.url}/v1/infer`, inferBody(pkg, getAddress(chain.address(CLIENT[0]))));
    expect(res.status).toBe(200);
    answers.push((await res.json()) as InferResponse);
  }
  await node.flushBatches();
  const commits = await getBatchCommits(chain.as(0), { provider: node.address });
  return { batchId: commits.at(-1)!.args.batchId, answers, pkg };
}

describe('availability challenges against a provider node', () => {
  it('an honest node publishes a challenged batch and a challenged receipt on chain by itself', async () => {
    const { batchId, answers, pkg } = await committedBatch(honest);
    const hashes = answers.map((a) => receiptHash(signedReceiptFromJson(a.receipt).receipt));
    const batch = await challengeBatch(chain.as(CHALLENGER), batchId);
    await honest.tickRoles();
    expect((await getChallenge(chain.as(0), batch.challengeId)).status).toBe('rejected');
    expect(await getPublishedBatch(chain.as(0), batchId)).toEqual(hashes);

    const receipt = await challengeAvailability(chain.as(CHALLENGER), {
      provider: honest.address,
      batchId,
      receiptHash: hashes[1]!,
      proof: batchTree(hashes).proof(1),
    });
    await honest.tickRoles();
    expect((await getChallenge(chain.as(0), receipt.challengeId)).status).toBe('rejected');
    const [answered] = await getEvents<{ receipt: Receipt; inputs: `0x${string}` }>(chain.as(0), {
      contract: 'disputeManager',
      eventName: 'AvailabilityAnswered',
      args: { id: receipt.challengeId },
    });
    expect(receiptHash(answered!.args.receipt)).toBe(hashes[1]);
    // the inputs on chain are exactly what the client sent, in the canonical encoding
    const sent = inferBody(pkg, getAddress(chain.address(CLIENT[0]))).inputs;
    expect(answered!.args.inputs).toBe(bytesToHex(encodeTensors(inputsFromJson(pkg.manifest.inputs, sent))));
  });

  it('a withholding node serves nothing of its batches and lets the challenge run out', async () => {
    const { batchId } = await committedBatch(withholding);
    const commits = await getBatchCommits(chain.as(0), { provider: withholding.address });
    const res = await fetch(`${withholding.url}/v1/batches/${commits.at(-1)!.args.root}`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as BatchResponse & { code: string }).code).toBe('NOT_FOUND');
    const { challengeId } = await challengeBatch(chain.as(CHALLENGER), batchId);
    await withholding.tickRoles();
    expect((await getChallenge(chain.as(0), challengeId)).status).toBe('open');
    expect(await getPublishedBatch(chain.as(0), batchId)).toBeUndefined();
  });
});
