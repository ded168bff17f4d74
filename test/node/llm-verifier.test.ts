import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  drawCommittee,
  findChallenge,
  getChallenge,
  getEvents,
  getHold,
  getProvider,
  getTokenBalance,
  getVote,
  openChallenge,
  releaseHold,
  type ChallengeInfo,
} from '../../src/chain/index.js';
import type { NodeStatus } from '../../src/api/schemas.js';
import { createNode, parseNodeConfig, type GlassboxNode } from '../../src/node/index.js';
import type { EvidenceResponse, StoredReceipt } from '../../src/protocol/api.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import { receiptHash, signedReceiptFromJson, type SignedReceipt } from '../../src/protocol/receipt.js';
import { runtimeProfileJson } from '../../src/protocol/runtime-profile.js';
import { defaultEngines, defaultProfiles, type Engines } from '../../src/runtime/index.js';
import { createSessionKey } from '../../src/sdk/index.js';
import { ENGINE_RUNTIME, TEST_RUNTIME } from '../chain/support.js';
import { exampleDir, llmExample } from '../support/examples.js';
import { enginesWithFaults, faultyNode, type NodeFaults } from '../support/faults.js';
import {
  CLIENT,
  fundClients,
  nodeConfig,
  post,
  PROVIDER,
  requestId,
  startTestChain,
  tempDir,
  TEST_PARAMS,
  testClient,
  type TestChain,
} from './support.js';

/*
 * Verifiers and committees on LLM receipts (issue 14 point 3), with real nodes on anvil: the real
 * tiny-chat on the real LLM engine (1 thread), real SQLite, real HTTP. One provider serves
 * tiny-chat-perturbed's weights whenever it is asked for tiny-chat (the substitution fault: its
 * node, sampler and receipts are real, only the engine's files are swapped). A verifier samples
 * every receipt, re-checks it by teacher forcing and opens a token challenge naming the first
 * failing position; three committee members serving the LLM runtime judge that position without
 * generating, and the chain slashes, rewards and refunds as for ONNX receipts.
 */

const OUTPUT_PRICE = 1_000n;
const INPUT_PRICE = 100n;
const IMPOSTOR = PROVIDER[0];
const HONEST = PROVIDER[1];
const VERIFIER = 5;
const FALSE_CHALLENGER = 4;
const MEMBERS = [3, 10, 11];
const BOND = TEST_PARAMS.challengeBond!;
const PROMPTS = [
  'Tell me about glass.',
  'Write a poem about the sea.',
  'What is a receipt?',
  'Count to five.',
];

let chain: TestChain;
let real: { dir: string; pkg: ModelPackage };
let impostorDir: string;
let impostor: GlassboxNode;
let honest: GlassboxNode;
let verifier: GlassboxNode;
let members: GlassboxNode[];
const cleanups: (() => Promise<unknown>)[] = [];

/** Every engine of this build on one onnxruntime thread (the suite shares two cores). */
const pinned = (): Engines =>
  defaultEngines({ onnx: { intraOpNumThreads: 1 }, llm: { intraOpNumThreads: 1 } });

async function start(
  i: number,
  over: Parameters<typeof nodeConfig>[3],
  engines: Engines,
  faults?: NodeFaults,
): Promise<GlassboxNode> {
  const dir = await tempDir();
  cleanups.push(dir.remove);
  const config = parseNodeConfig(
    nodeConfig(chain, i, dir.dir, {
      models: [{ model: real.dir, price: OUTPUT_PRICE.toString(), inputPrice: INPUT_PRICE.toString() }],
      batch: { maxReceipts: 100, maxAgeMs: 600_000 },
      verifier: { pollIntervalMs: 600_000 },
      ...over,
    }),
  );
  const options = faults
    ? { ...faultyNode(config, faults), engines: enginesWithFaults(engines, faults) }
    : { engines };
  const node = await (await createNode(config, options)).start();
  cleanups.push(() => node.stop());
  return node;
}

beforeAll(async () => {
  const llmRuntime = runtimeProfileJson(defaultProfiles()[1]!);
  chain = await startTestChain(TEST_PARAMS, 12, [TEST_RUNTIME, ENGINE_RUNTIME, llmRuntime]);
  await fundClients(chain);
  real = await llmExample('tiny-chat');
  impostorDir = (await llmExample('tiny-chat-perturbed')).dir;
  impostor = await start(IMPOSTOR, {}, pinned(), { substitute: { model: real.dir, with: impostorDir } });
  honest = await start(HONEST, {}, pinned());
  verifier = await start(
    VERIFIER,
    {
      roles: ['verifier'],
      stake: '0',
      // it holds no LLM: it fetches tiny-chat from the provider it checks (every blob re-hashed)
      models: [{ model: exampleDir('iris'), price: '1000' }],
      verifier: { sampleRate: 1, dataDeadlineMs: 60_000, pollIntervalMs: 600_000 },
    },
    pinned(),
  );
  members = [];
  // three voters that declare the LLM runtime (every engine's runtime, D1): the whole pool
  for (const i of MEMBERS) members.push(await start(i, { roles: ['committee'] }, pinned()));
}, 300_000);

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await chain?.stop();
});

type ChatAnswer = { glassbox: { receipt: unknown; outputTokenIds: number[] } };

/**
 * One sampled chat by client `c` with `node`, paid by a voucher for everything sent so far: its
 * receipt and output ids.
 */
async function chat(
  node: GlassboxNode,
  c: number,
  content: string,
  seed: number,
  paid: { total: bigint },
): Promise<{ receipt: SignedReceipt; outputIds: number[] }> {
  const { key } = await createSessionKey(
    {
      account: privateKeyToAccount(chain.key(c)),
      chainId: chain.anvil.chainId,
      deployment: chain.deployment,
    },
    { provider: node.address, ttlMs: 3_600_000 },
  );
  paid.total += 200_000n; // more than any of these chats costs: the voucher is cumulative
  const voucher = await testClient(chain, c).voucherJson(node.address, paid.total);
  const res = await post(
    `${node.url}/v1/chat/completions`,
    {
      model: real.pkg.id,
      messages: [{ role: 'user', content }],
      temperature: 0.8,
      top_p: 0.9,
      seed,
      max_tokens: 32,
    },
    {
      authorization: `Bearer ${key}`,
      'glassbox-voucher': JSON.stringify(voucher),
      'glassbox-request-id': requestId(),
    },
  );
  expect(res.status).toBe(200);
  const { glassbox } = (await res.json()) as ChatAnswer;
  return { receipt: signedReceiptFromJson(glassbox.receipt as never), outputIds: glassbox.outputTokenIds };
}

/** Ticks the verifier and the committee until every challenge in `ids` is settled (or gives up). */
async function settle(ids: readonly bigint[], extra: GlassboxNode[] = []): Promise<ChallengeInfo[]> {
  for (let round = 0; round < 8; round++) {
    const infos = await Promise.all(ids.map((id) => getChallenge(chain.as(0), id)));
    if (infos.every((c) => c.status !== 'open')) return infos;
    await chain.increaseTime(1000); // the draw block is behind the latest from now on
    for (const node of [verifier, ...extra, ...members]) await node.tickRoles();
  }
  return Promise.all(ids.map((id) => getChallenge(chain.as(0), id)));
}

const stakeOf = async (node: GlassboxNode) => {
  const p = await getProvider(chain.as(0), node.address);
  return p.stake + p.unbonding;
};

describe('verifiers and committees on LLM receipts', () => {
  it('an impostor serving tiny-chat-perturbed as tiny-chat is re-checked, challenged at a position, convicted by the committee, slashed; the challenger is paid and the client refunded', async () => {
    const client = CLIENT[0];
    const paid = { total: 0n };
    // A substituted answer is one whose tokens differ from the real model's (the same request to
    // the honest provider): a model that gives the very same tokens cannot be told apart by them.
    const substituted: SignedReceipt[] = [];
    const same: SignedReceipt[] = [];
    for (const [n, content] of PROMPTS.entries()) {
      const claimed = await chat(impostor, client, content, 100 + n, paid);
      const truth = await chat(honest, CLIENT[3], content, 100 + n, { total: BigInt(n) * 200_000n });
      (claimed.outputIds.join() === truth.outputIds.join() ? same : substituted).push(claimed.receipt);
    }
    expect(substituted.length).toBeGreaterThan(0);
    await impostor.flushBatches();
    const redeemed = await impostor.redeemVouchers();
    expect(redeemed).toBeGreaterThan(0n);
    const [stake, challengerBalance] = [
      await stakeOf(impostor),
      await getTokenBalance(chain.as(0), verifier.address),
    ];

    await chain.increaseTime(1000); // the block after the commit, whose hash draws the sample
    await verifier.tickRoles();
    const status = (await (await fetch(`${verifier.url}/v1/status`)).json()) as NodeStatus;
    const sampleOf = (r: SignedReceipt) =>
      status.verifier!.samples.find((s) => s.receiptHash === receiptHash(r.receipt));
    for (const r of same) expect(sampleOf(r)).toMatchObject({ outcome: 'match' });
    const ids: bigint[] = [];
    for (const r of substituted) {
      expect(sampleOf(r)).toMatchObject({ outcome: 'mismatch', provider: impostor.address });
      expect(sampleOf(r)!.detail).toMatch(/generation re-check: margin fails at position \d+/);
      const id = await findChallenge(chain.as(0), { kind: 'wrong', receiptHash: receiptHash(r.receipt) });
      expect(id).toBeDefined();
      ids.push(id!);
    }
    const opened = await getChallenge(chain.as(0), ids[0]!);
    expect(opened.token).toMatchObject({ check: 'margin' });
    expect(opened.token!.position).toBeGreaterThanOrEqual(0);
    expect(opened.token!.position).toBeLessThan(32);
    expect(opened.challenger).toBe(verifier.address);

    console.info(
      `substituted ${substituted.length} of ${PROMPTS.length} answers; first challenge names ${opened.token!.check} at position ${opened.token!.position}; re-checks took ${status.verifier!.computeMs.toFixed(0)} ms`,
    );
    const settled = await settle(ids);
    for (const c of settled) {
      expect(c.status).toBe('upheld');
      expect(c.committee).toHaveLength(3);
      expect(c.guilty).toBe(3);
    }
    // every member judged the named position by scoring, without generating
    for (const m of members) {
      const duties = ((await (await fetch(`${m.url}/v1/status`)).json()) as NodeStatus).committee!.duties;
      const duty = duties.find((d) => d.challengeId === ids[0]!.toString());
      // what it decided and why (its own record), and what it revealed (the chain's)
      expect(duty).toMatchObject({ decision: 'vote', guilty: true });
      expect(await getVote(chain.as(0), { challengeId: ids[0]!, member: m.address })).toMatchObject({
        revealed: true,
        guilty: true,
      });
      expect(duty!.detail).toMatch(new RegExp(`margin fails at position ${opened.token!.position}`));
    }
    // slashed by half once per upheld challenge (one per substituted answer); the challenger has
    // its bonds back and the rewards
    expect(await stakeOf(impostor)).toBe(stake / 2n ** BigInt(ids.length));
    const resolved = await getEvents(chain.as(0), {
      contract: 'disputeManager',
      eventName: 'ChallengeResolved',
    });
    const rewards = resolved.filter((e) => ids.includes(e.args.id)).reduce((t, e) => t + e.args.reward, 0n);
    expect(rewards).toBeGreaterThan(0n);
    expect(await getTokenBalance(chain.as(0), verifier.address)).toBe(challengerBalance + rewards);
    // the client's payment on hold goes back to it
    const held = await getHold(chain.as(0), { client: chain.address(client), provider: impostor.address });
    expect(held?.amount).toBe(redeemed);
    const { refunded, released } = await releaseHold(chain.as(client), {
      client: chain.address(client),
      provider: impostor.address,
    });
    expect([refunded, released]).toEqual([redeemed, 0n]);
  }, 600_000);

  it('an honest LLM provider sampled at rate 1 is re-checked and never challenged', async () => {
    const paid = { total: 0n };
    const receipts: SignedReceipt[] = [];
    for (const [n, content] of PROMPTS.slice(0, 3).entries())
      receipts.push((await chat(honest, CLIENT[1], content, 200 + n, paid)).receipt);
    await honest.flushBatches();
    await chain.increaseTime(1000);
    await verifier.tickRoles();
    const status = (await (await fetch(`${verifier.url}/v1/status`)).json()) as NodeStatus;
    for (const r of receipts) {
      const hash = receiptHash(r.receipt);
      expect(status.verifier!.samples.find((s) => s.receiptHash === hash)).toMatchObject({
        outcome: 'match',
        provider: honest.address,
      });
      expect(await findChallenge(chain.as(0), { kind: 'wrong', receiptHash: hash })).toBeUndefined();
    }
    expect(status.verifier!.challenges.filter((c) => c.provider === honest.address)).toEqual([]);
  }, 600_000);

  it('a false token challenge (a margin claimed at a position where the receipt is honest) is judged innocent: the challenger loses its bond', async () => {
    const { receipt } = await chat(honest, CLIENT[2], 'Name three colours.', 300, { total: 0n });
    const stored = (await (
      await fetch(`${honest.url}/v1/receipts/${receipt.receipt.requestId}`)
    ).json()) as StoredReceipt;
    const evidence: EvidenceResponse = { inputs: stored.inputs!, outputs: stored.outputs! };
    const inputsUri = `data:application/json;base64,${Buffer.from(JSON.stringify(evidence)).toString('base64')}`;
    const [stake, before] = [
      await stakeOf(honest),
      await getTokenBalance(chain.as(0), chain.address(FALSE_CHALLENGER)),
    ];
    const { challengeId, drawBlock } = await openChallenge(chain.as(FALSE_CHALLENGER), {
      ...receipt,
      inputsUri,
      token: { position: 3, check: 'margin' },
    });
    while ((await chain.as(0).publicClient.getBlockNumber()) <= drawBlock) await chain.increaseTime(1000);
    await drawCommittee(chain.as(FALSE_CHALLENGER), challengeId);
    const [settled] = await settle([challengeId], [honest]);
    expect(settled).toMatchObject({
      status: 'rejected',
      innocent: 3,
      guilty: 0,
      token: { position: 3, check: 'margin' },
    });
    for (const m of members) {
      const duties = ((await (await fetch(`${m.url}/v1/status`)).json()) as NodeStatus).committee!.duties;
      expect(duties.find((d) => d.challengeId === challengeId.toString())).toMatchObject({
        decision: 'vote',
        guilty: false,
        detail: 'the claim does not hold: margin passes through position 3',
      });
    }
    expect(await stakeOf(honest)).toBe(stake);
    expect(await getTokenBalance(chain.as(0), chain.address(FALSE_CHALLENGER))).toBe(before - BOND);
  }, 600_000);
});
