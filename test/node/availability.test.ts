import Fastify from 'fastify';
import { createServer, type AddressInfo } from 'node:net';
import { bytesToHex, keccak256 } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../../src/api/client.js';
import { providerApi } from '../../src/api/provider.js';
import { routes } from '../../src/api/routes.js';
import {
  challengeAvailability,
  challengeBatch,
  findChallenge,
  getBatchCommits,
  getChallenge,
  getEvents,
  getPublishedBatch,
  getTokenBalance,
  getChallengeCount,
  openChallenge,
} from '../../src/chain/index.js';
import type { GlassboxNode } from '../../src/node/index.js';
import type { NodeStatus } from '../../src/api/schemas.js';
import {
  BATCH_PAGE_MAX,
  type BatchResponse,
  type EvidenceResponse,
  type InferResponse,
} from '../../src/protocol/api.js';
import { encodeTensors } from '../../src/protocol/encoding.js';
import { inputsFromJson } from '../../src/protocol/inputs.js';
import { batchTree } from '../../src/protocol/merkle.js';
import { receiptHash, signedReceiptFromJson } from '../../src/protocol/receipt.js';
import { ENGINE_RUNTIME_HASH, mineTo, registerVoter } from '../chain/support.js';
import { exampleDir } from '../support/examples.js';
import {
  CLIENT,
  E18,
  fundClients,
  inferBody,
  post,
  PRICE,
  PROVIDER,
  startTestChain,
  startTestNode,
  tempDir,
  TEST_PARAMS,
  type TestChain,
} from './support.js';
import { type NodeFaults } from '../support/faults.js';

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
  await fundClients(chain);
  const start = async (i: number, faults?: NodeFaults) => {
    const dir = await tempDir();
    dirs.push(dir);
    return startTestNode(chain, i, dir.dir, { batch: { maxReceipts: 3, maxAgeMs: 60_000 } }, faults);
  };
  honest = await start(PROVIDER[0]);
  withholding = await start(PROVIDER[1], { withhold: 'batches' });
  // a committee pool for the engine's runtime, so verifiers' challenges can be judged
  await registerVoter(
    chain.as(11),
    { endpoint: 'http://voter', signer: chain.address(11), stake: 100n * E18 },
    ENGINE_RUNTIME_HASH,
  );
});

/**
 * A provider node (account `provider`, serving iris-int8) with `over`, and a verifier node
 * (account `verifier`) that samples every receipt at `sampleRate` and treats data as late at once.
 */
async function startWithVerifier(
  provider: number,
  over: Parameters<typeof startTestNode>[3],
  verifierAccount: number,
  sampleRate = 1,
  faults?: NodeFaults,
) {
  const dir = await tempDir();
  const other = await tempDir();
  dirs.push(dir, other);
  const node = await startTestNode(
    chain,
    provider,
    dir.dir,
    {
      models: [{ model: exampleDir('iris-int8'), price: PRICE.toString() }],
      batch: { maxReceipts: 3, maxAgeMs: 60_000 },
      ...over,
    },
    faults,
  );
  const verifier = await startTestNode(chain, verifierAccount, other.dir, {
    roles: ['verifier'],
    stake: '0',
    verifier: { sampleRate, dataDeadlineMs: 0, pollIntervalMs: 600_000 },
  });
  return { node, verifier };
}

afterAll(async () => {
  await honest?.stop();
  await withholding?.stop();
  await chain?.stop();
  for (const d of dirs) await d.remove();
});

/** A port nothing listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Three answers from `node` (asked at `url`: its own, unless it registered another), committed as
 * one batch; returns the batch id and the answers.
 */
async function committedBatch(node: GlassboxNode, url = node.url) {
  const answers: InferResponse[] = [];
  const pkg = [...node.models.values()][0]!;
  for (let i = 0; i < 3; i++) {
    const res = await post(`${url}/v1/infer`, await inferBody(node, pkg, chain.key(CLIENT[0])));
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
    expect((await getChallenge(chain.as(0), batch.challengeId)).status).toBe('answered');
    expect(await getPublishedBatch(chain.as(0), batchId)).toEqual(hashes);

    const receipt = await challengeAvailability(chain.as(CHALLENGER), {
      provider: honest.address,
      batchId,
      receiptHash: hashes[1]!,
      proof: batchTree(hashes).proof(1),
    });
    await honest.tickRoles();
    expect((await getChallenge(chain.as(0), receipt.challengeId)).status).toBe('answered');
    const [answered] = await getEvents(chain.as(0), {
      contract: 'disputeManager',
      eventName: 'AvailabilityAnswered',
      args: { id: receipt.challengeId },
    });
    expect(receiptHash(answered!.args.receipt)).toBe(hashes[1]);
    // the inputs on chain are exactly what the client sent, in the canonical encoding
    const sent = (await inferBody(honest, pkg, chain.key(CLIENT[0]))).inputs;
    expect(answered!.args.inputs).toBe(bytesToHex(encodeTensors(inputsFromJson(pkg.manifest.inputs, sent))));
  });

  it('a node that withholds inputs but answers on chain is re-executed from the published data and challenged', async () => {
    const { node: dodger, verifier } = await startWithVerifier(PROVIDER[2], {}, 10, 1, {
      perturb: 1,
      withhold: 'inputs',
    });
    try {
      const { answers } = await committedBatch(dodger);
      const hashes = answers.map((a) => receiptHash(signedReceiptFromJson(a.receipt).receipt));
      await chain.increaseTime(1000); // the block after the commit: the sample's draw
      await verifier.tickRoles(); // inputs not served: availability challenges
      const data = await findChallenge(chain.as(0), { kind: 'unavailable', receiptHash: hashes[0]! });
      expect(data).toBeDefined();
      await dodger.tickRoles(); // the dodger publishes receipt and inputs on chain
      expect((await getChallenge(chain.as(0), data!)).status).toBe('answered');
      await verifier.tickRoles(); // re-executed from the chain: wrong, so challenged
      const wrong = await findChallenge(chain.as(0), { kind: 'wrong', receiptHash: hashes[0]! });
      expect(wrong).toBeDefined();
      expect((await getChallenge(chain.as(0), wrong!)).provider).toBe(dodger.address);
      const status = (await (await fetch(`${verifier.url}/v1/status`)).json()) as NodeStatus;
      const sample = status.verifier!.samples.find((x) => x.receiptHash === hashes[0]);
      expect(sample).toMatchObject({ outcome: 'mismatch', challengeId: wrong!.toString() });
      expect(sample!.detail).toMatch(/data published on chain/);
      // bounded: counts of everything, and only the latest `limit` of each list
      const latest = (await (await fetch(`${verifier.url}/v1/status?limit=1`)).json()) as NodeStatus;
      expect(status.verifier!.samples.length).toBeGreaterThan(1);
      expect(status.verifier!.challengeCount).toBeGreaterThan(1);
      expect(latest.limit).toBe(1);
      expect(latest.verifier!.sampled).toBe(status.verifier!.sampled);
      expect(latest.verifier!.challengeCount).toBe(status.verifier!.challengeCount);
      expect(latest.verifier!.samples).toEqual(status.verifier!.samples.slice(-1));
      expect(latest.verifier!.challenges).toEqual(status.verifier!.challenges.slice(-1));
      // the evidence it serves the committee is the published inputs
      const evidence = (await (
        await fetch(`${verifier.url}/v1/evidence/${hashes[0]}`)
      ).json()) as EvidenceResponse;
      expect(keccak256(Buffer.from(evidence.inputs, 'base64'))).toBe(
        signedReceiptFromJson(answers[0]!.receipt).receipt.inputHash,
      );
    } finally {
      await verifier.stop();
      await dodger.stop();
    }
  });

  it('H-4: a node that serves no batch at all but answers on chain has every sampled receipt checked, and the verifier loses no bond', async () => {
    const VERIFIER = 9;
    const { node: dodger, verifier } = await startWithVerifier(PROVIDER[3], {}, VERIFIER, 1, {
      perturb: 1,
      withhold: 'listing',
    });
    try {
      const { batchId, answers } = await committedBatch(dodger);
      const hashes = answers.map((a) => receiptHash(signedReceiptFromJson(a.receipt).receipt));
      const tokens = () => getTokenBalance(chain.as(0), chain.address(VERIFIER));
      const before = await tokens();
      await chain.increaseTime(1000); // the block after the commit: the sample's draw
      await verifier.tickRoles(); // no listing: a batch challenge
      await dodger.tickRoles(); // it publishes the receipt hashes on chain
      await verifier.tickRoles(); // the bond comes back; every drawn receipt gets an availability challenge
      for (const hash of hashes)
        expect(await findChallenge(chain.as(0), { kind: 'unavailable', receiptHash: hash })).toBeDefined();
      await dodger.tickRoles(); // it publishes each receipt, its inputs and outputs
      await verifier.tickRoles(); // re-executed from the chain: every one is wrong, every one challenged
      for (const hash of hashes) {
        const wrong = await findChallenge(chain.as(0), { kind: 'wrong', receiptHash: hash });
        expect(wrong, `receipt ${hash} was not challenged`).toBeDefined();
      }
      // every bond the verifier is out is locked in a challenge still open (the wrong answers):
      // the availability and batch challenges the dodger answered gave theirs back, none went to it
      let locked = 0n;
      for (let id = 0n; id < (await getChallengeCount(chain.as(0))); id++) {
        const c = await getChallenge(chain.as(0), id);
        if (c.challenger !== chain.address(VERIFIER)) continue;
        if (c.provider === dodger.address && c.kind !== 'wrong') expect(c.status).toBe('answered');
        if (c.status === 'open') locked += c.bond;
      }
      expect(before - (await tokens())).toBe(locked);
      expect(locked).toBeGreaterThanOrEqual(BigInt(hashes.length) * TEST_PARAMS.challengeBond!);
      expect(await getPublishedBatch(chain.as(0), batchId)).toEqual(hashes);
    } finally {
      await verifier.stop();
      await dodger.stop();
    }
  });

  it("a provider's puppet that challenges and answers first doesn't stall verifiers: the published data is still re-executed", async () => {
    const { node: dodger, verifier } = await startWithVerifier(PROVIDER[2], {}, 8, 1, {
      perturb: 1,
      withhold: 'inputs',
    });
    try {
      const { batchId, answers } = await committedBatch(dodger);
      const hashes = answers.map((a) => receiptHash(signedReceiptFromJson(a.receipt).receipt));
      // before any verifier, the provider's own puppet challenges receipt 0, and the provider answers
      const puppet = await challengeAvailability(chain.as(CHALLENGER), {
        provider: dodger.address,
        batchId,
        receiptHash: hashes[0]!,
        proof: batchTree(hashes).proof(0),
      });
      await dodger.tickRoles();
      expect((await getChallenge(chain.as(0), puppet.challengeId)).status).toBe('answered');
      await chain.increaseTime(1000);
      await verifier.tickRoles(); // it finds that challenge answered and follows it
      await dodger.tickRoles();
      await verifier.tickRoles();
      // every receipt, the pre-empted one included, was re-executed from the chain and challenged
      for (const hash of hashes)
        expect(await findChallenge(chain.as(0), { kind: 'wrong', receiptHash: hash })).toBeDefined();
    } finally {
      await verifier.stop();
      await dodger.stop();
    }
  });

  it('a verifier reads a batch of more receipts than one page, page by page, and finds every one served', async () => {
    const { node: big, verifier } = await startWithVerifier(
      PROVIDER[2],
      { batch: { maxReceipts: BATCH_PAGE_MAX + 6, maxAgeMs: 60_000 } },
      10,
      0,
    );
    try {
      const pkg = [...big.models.values()][0]!;
      for (let i = 0; i < BATCH_PAGE_MAX + 6; i++)
        expect(
          (await post(`${big.url}/v1/infer`, await inferBody(big, pkg, chain.key(CLIENT[1])))).status,
        ).toBe(200);
      await big.flushBatches();
      const [commit] = (await getBatchCommits(chain.as(0), { provider: big.address })).slice(-1);
      expect(Number(commit!.args.count)).toBe(BATCH_PAGE_MAX + 6);
      await chain.increaseTime(1000);
      await verifier.tickRoles();
      // past the data deadline, yet nothing challenged: every receipt's inputs were served
      expect(
        await findChallenge(chain.as(0), { kind: 'unavailable-batch', batchId: commit!.args.batchId }),
      ).toBeUndefined();
      for (const leaf of big.db.batchLeaves(commit!.args.root))
        expect(await findChallenge(chain.as(0), { kind: 'unavailable', receiptHash: leaf })).toBeUndefined();
    } finally {
      await verifier.stop();
      await big.stop();
    }
  });

  it('the accused provider draws the committee of a challenge against it, also after a restart', async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const config = { batch: { maxReceipts: 3, maxAgeMs: 60_000 } };
    let accused = await startTestNode(chain, PROVIDER[2], dir.dir, config);
    try {
      const { batchId, answers } = await committedBatch(accused);
      const receipt = signedReceiptFromJson(answers[0]!.receipt).receipt;
      const hashes = answers.map((a) => receiptHash(signedReceiptFromJson(a.receipt).receipt));
      // a challenger that opens and then never draws (hoping for another draw block later)
      const { challengeId, drawBlock } = await openChallenge(chain.as(CHALLENGER), {
        receipt,
        batchId,
        proof: batchTree(hashes).proof(0),
        inputsUri: 'http://challenger.invalid/evidence',
      });
      await accused.tickRoles(); // too early to draw: it must remember the challenge
      await accused.stop();
      accused = await startTestNode(chain, PROVIDER[2], dir.dir, config);
      await mineTo(chain, drawBlock + 1n);
      await accused.tickRoles();
      expect((await getChallenge(chain.as(0), challengeId)).committee.length).toBeGreaterThan(0);
    } finally {
      await accused.stop();
    }
  });

  it('a provider serving a garbage batch listing is challenged for availability like one serving none, not retried for ever', async () => {
    // Its registered endpoint answers every listing with a 200 that breaks the page schema.
    const garbage = Fastify();
    garbage.get('/v1/batches/:root', async () => ({ root: 'garbage', count: -1, receipts: 'not a list' }));
    const garbageUrl = await garbage.listen({ host: '127.0.0.1', port: 0 });
    const port = await freePort();
    const { node, verifier } = await startWithVerifier(
      PROVIDER[2],
      { listen: { port, publicUrl: garbageUrl } },
      8,
    );
    try {
      const { batchId } = await committedBatch(node, `http://127.0.0.1:${port}`);
      const root = (await getBatchCommits(chain.as(0), { provider: node.address })).at(-1)!.args.root;
      await expect(providerApi(garbageUrl).getBatchPage(root, 0)).rejects.toMatchObject({
        code: 'PROVIDER_ERROR',
        field: 'response.root',
      });
      await chain.increaseTime(1000); // the block after the commit: the sample's draw
      await verifier.tickRoles(); // the listing does not parse: as if not served, and the deadline is 0
      const challengeId = await findChallenge(chain.as(0), { kind: 'unavailable-batch', batchId });
      expect(challengeId, 'no availability challenge of the batch').toBeDefined();
      const status = await call(
        { endpoint: verifier.url, name: 'the verifier', timeoutMs: 5000, maxResponseBytes: 1 << 20 },
        routes.status,
        {},
      );
      expect(status.verifier?.challenges).toContainEqual(
        expect.objectContaining({ kind: 'unavailable-batch', provider: node.address, receiptHash: root }),
      );
    } finally {
      await verifier.stop();
      await node.stop();
      await garbage.close();
    }
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
