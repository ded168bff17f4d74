import { join } from 'node:path';
import pino from 'pino';
import { keccak256, toHex } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  challengeBatch,
  commitVote,
  createEventReader,
  findChallenge,
  getBatchCommits,
  getChallenge,
  getPublishedBatch,
  getVote,
  type GlassboxClient,
} from '../../../src/chain/index.js';
import type { GlassboxNode } from '../../../src/node/index.js';
import {
  availabilityAnswerer,
  availabilityDataOf,
  committeeMember,
  createProviderFetches,
  openRoleStore,
  sampler,
  type AvailabilityData,
  type RoleStore,
} from '../../../src/node/roles/index.js';
import { modelByDigest } from '../../../src/node/roles/check.js';
import type { RoleComponents } from '../../../src/node/roles/components.js';
import { createSerial } from '../../../src/node/serial.js';
import type { EvidenceResponse, InferResponse } from '../../../src/protocol/api.js';
import { encodeTensors } from '../../../src/protocol/encoding.js';
import { inputsFromJson } from '../../../src/protocol/inputs.js';
import { batchTree } from '../../../src/protocol/merkle.js';
import { receiptHash, signedReceiptFromJson, signedReceiptToJson } from '../../../src/protocol/receipt.js';
import { defaultEngines } from '../../../src/runtime/index.js';
import { ENGINE_RUNTIME_HASH, openAndDraw, registerVoter } from '../../chain/support.js';
import { exampleDir } from '../../support/examples.js';
import {
  CLIENT,
  E18,
  fundClients,
  INT8_INPUTS,
  inferBody,
  post,
  PRICE,
  PROVIDER,
  startTestChain,
  startTestNode,
  tempDir,
  type TestChain,
} from '../support.js';

/*
 * Each role service started alone, with only the components it asks for, against a real anvil:
 * the availability answerer, the verifier's sampler and a committee member. The environment is one
 * honest provider node whose own role loop never fires during the tests (a long poll interval, and
 * nobody ticks it), so whatever is done on chain here was done by the service under test.
 */

const CHALLENGER = 5;
const SAMPLER = 3;
const MEMBER = 10;
const OTHER_VOTERS = [2, 11];

let chain: TestChain;
let provider: GlassboxNode;
const engines = defaultEngines();
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  chain = await startTestChain();
  await fundClients(chain);
  const dir = await tempDir();
  cleanups.push(dir.remove);
  provider = await startTestNode(chain, PROVIDER[0], dir.dir, {
    models: [{ model: exampleDir('iris-int8'), price: PRICE.toString() }],
    batch: { maxReceipts: 3, maxAgeMs: 60_000 },
    verifier: { pollIntervalMs: 600_000 },
  });
  // a committee pool for the engine's runtime: exactly the committee size, so all are drawn
  for (const i of [MEMBER, ...OTHER_VOTERS])
    await registerVoter(
      chain.as(i),
      { endpoint: `http://voter-${i}`, signer: chain.address(i), stake: 100n * E18 },
      ENGINE_RUNTIME_HASH,
    );
});

afterAll(async () => {
  await provider?.stop();
  await engines.close();
  await chain?.stop();
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** The components every role service shares, for dev account `i`, with a role store of its own. */
async function baseComponents(i: number): Promise<RoleComponents & { store: RoleStore }> {
  const dir = await tempDir('glassbox-role-');
  const store = openRoleStore(join(dir.dir, 'roles.sqlite'));
  cleanups.push(dir.remove, () => store.close());
  const client: GlassboxClient = chain.as(i);
  return {
    chain: client,
    serial: createSerial(),
    log: pino({ level: 'silent' }),
    events: createEventReader({ client, cursors: { get: store.cursor, set: store.setCursor } }),
    store,
  };
}

/** What the sampler and the committee member run models with: the provider's packages. */
const judging = () => ({
  engines,
  models: async (digest: `0x${string}`) => modelByDigest(provider.models, digest),
  providers: createProviderFetches(),
});

/** Three answers from `node` (the honest provider unless named), committed as one batch. */
async function committedBatch(node = provider) {
  const answers: InferResponse[] = [];
  const pkg = [...node.models.values()][0]!;
  for (let i = 0; i < 3; i++) {
    const res = await post(`${node.url}/v1/infer`, await inferBody(node, pkg, chain.key(CLIENT[0])));
    expect(res.status).toBe(200);
    answers.push((await res.json()) as InferResponse);
  }
  await node.flushBatches();
  const commits = await getBatchCommits(chain.as(0), { provider: node.address });
  const receipts = answers.map((a) => signedReceiptFromJson(a.receipt));
  return { batchId: commits.at(-1)!.args.batchId, receipts, pkg };
}

describe('the availability answerer alone', () => {
  it('answers a batch challenge from its data source; a wrapped source that withholds answers nothing', async () => {
    const asked: string[] = [];
    const ours = availabilityDataOf(provider.db);
    const recorded: AvailabilityData = {
      batchLeaves: (root) => (asked.push(root), ours.batchLeaves(root)),
      receiptData: (hash) => ours.receiptData(hash),
    };
    const withholding: AvailabilityData = { batchLeaves: () => undefined, receiptData: () => undefined };

    const first = await committedBatch();
    const withheld = await challengeBatch(chain.as(CHALLENGER), first.batchId);
    const silent = availabilityAnswerer({ pollIntervalMs: 600_000 })({
      ...(await baseComponents(PROVIDER[0])),
      data: withholding,
    });
    await silent.tick();
    expect((await getChallenge(chain.as(0), withheld.challengeId)).status).toBe('open');

    const second = await committedBatch();
    const challenged = await challengeBatch(chain.as(CHALLENGER), second.batchId);
    const answerer = availabilityAnswerer({ pollIntervalMs: 600_000 })({
      ...(await baseComponents(PROVIDER[0])),
      data: recorded,
    });
    await answerer.tick();
    expect((await getChallenge(chain.as(0), challenged.challengeId)).status).toBe('answered');
    expect(await getPublishedBatch(chain.as(0), second.batchId)).toEqual(
      second.receipts.map((r) => receiptHash(r.receipt)),
    );
    expect(asked.length).toBeGreaterThan(0); // through the data source it was given
    await answerer.stop();
    await silent.stop();
  });
});

describe('the sampler alone', () => {
  it('reads committed batches, fetches each from its provider and re-executes every receipt at rate 1', async () => {
    const { receipts } = await committedBatch();
    await chain.increaseTime(1000); // the block after the commit, whose hash draws the sample
    const verifier = sampler({ sampleRate: 1, dataDeadlineMs: 60_000, pollIntervalMs: 600_000, url: '' })({
      ...(await baseComponents(SAMPLER)),
      ...judging(),
    });
    await verifier.tick();
    const status = verifier.status();
    for (const r of receipts)
      expect(status.samples.find((s) => s.receiptHash === receiptHash(r.receipt))).toMatchObject({
        outcome: 'match',
        provider: provider.address,
      });
    expect(status.outcomes.mismatch + status.outcomes.unavailable).toBe(0);
    expect(status.challenges).toEqual([]);
    await verifier.stop();
  });

  it('challenges the availability of receipts whose inputs their provider does not serve by the deadline', async () => {
    const dir = await tempDir();
    const hiding = await startTestNode(
      chain,
      PROVIDER[3],
      dir.dir,
      {
        models: [{ model: exampleDir('iris-int8'), price: PRICE.toString() }],
        batch: { maxReceipts: 3, maxAgeMs: 60_000 },
        verifier: { pollIntervalMs: 600_000 },
      },
      { withhold: 'inputs' },
    );
    cleanups.push(dir.remove);
    try {
      const { receipts } = await committedBatch(hiding);
      await chain.increaseTime(1000);
      const verifier = sampler({ sampleRate: 1, dataDeadlineMs: 0, pollIntervalMs: 600_000, url: '' })({
        ...(await baseComponents(SAMPLER)),
        ...judging(),
      });
      await verifier.tick();
      const hash = receiptHash(receipts[0]!.receipt);
      const challengeId = await findChallenge(chain.as(0), { kind: 'unavailable', receiptHash: hash });
      expect(challengeId).toBeDefined();
      expect((await getChallenge(chain.as(0), challengeId!)).provider).toBe(hiding.address);
      expect(verifier.status().samples.find((s) => s.receiptHash === hash)).toMatchObject({
        outcome: 'unavailable',
        challengeId: challengeId!.toString(),
      });
      await verifier.stop();
    } finally {
      await hiding.stop();
    }
  });
});

describe('the committee member alone', () => {
  it('judges a challenge it was drawn for from the evidence, commits, then reveals once every member committed', async () => {
    const { batchId, receipts, pkg } = await committedBatch();
    const hashes = receipts.map((r) => receiptHash(r.receipt));
    const evidence: EvidenceResponse = {
      receipt: signedReceiptToJson(receipts[0]!),
      inputs: Buffer.from(encodeTensors(inputsFromJson(pkg.manifest.inputs, INT8_INPUTS))).toString('base64'),
    };
    const { challengeId, committee } = await openAndDraw(chain, chain.as(CHALLENGER), {
      receipt: receipts[0]!.receipt,
      batchId,
      proof: batchTree(hashes).proof(0),
      inputsUri: `data:application/json;base64,${Buffer.from(JSON.stringify(evidence)).toString('base64')}`,
    });
    expect(committee).toContain(chain.address(MEMBER));

    const member = committeeMember({ pollIntervalMs: 600_000 })({
      ...(await baseComponents(MEMBER)),
      ...judging(),
    });
    await member.tick(); // judges and commits
    const me = { challengeId, member: chain.address(MEMBER) };
    expect(await getVote(chain.as(0), me)).toMatchObject({ committed: true, revealed: false });
    expect(member.status().duties).toEqual([
      expect.objectContaining({
        challengeId: challengeId.toString(),
        decision: 'vote',
        guilty: false, // the provider was honest: our re-execution agrees
        committed: true,
        revealed: false,
      }),
    ]);

    await member.tick(); // reveals are not open while others may still commit
    expect(await getVote(chain.as(0), me)).toMatchObject({ revealed: false });
    for (const i of OTHER_VOTERS)
      await commitVote(chain.as(i), { challengeId, guilty: false, salt: keccak256(toHex(`salt:${i}`)) });
    await member.tick(); // every member committed: reveals are open
    expect(await getVote(chain.as(0), me)).toMatchObject({ committed: true, revealed: true, guilty: false });
    await member.stop();
  });
});

describe('createNode composes only the roles it is configured for', () => {
  it('a provider-only node answers availability challenges but runs no verifier: it never reads batch commits', async () => {
    await provider.tickRoles();
    const store = openRoleStore(join(provider.config.dataDir, 'roles.sqlite'));
    try {
      expect(store.cursor('availability')).toBeDefined();
      expect(store.cursor('batches')).toBeUndefined();
      expect(store.cursor('challenges')).toBeUndefined();
    } finally {
      store.close();
    }
    const status = (await (await fetch(`${provider.url}/v1/status`)).json()) as Record<string, unknown>;
    expect(status).not.toHaveProperty('verifier');
    expect(status).not.toHaveProperty('committee');
  });
});
