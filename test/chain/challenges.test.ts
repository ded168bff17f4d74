import { bytesToHex, keccak256, type Hex } from 'viem';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  answerAvailability,
  answerBatch,
  challengeBatch,
  getPublishedBatch,
  challengeAvailability,
  commitBatch,
  commitVote,
  getChallenge,
  getConvictedAt,
  getEvents,
  getProvider,
  getTokenBalance,
  openChallenge,
  registerModel,
  registerProvider,
  resolveChallenge,
  type DivergenceProof,
} from '../../src/chain/index.js';
import { answerAvailabilityGas, answerBatchGas, batchCap, dataCap } from '../../src/protocol/limits.js';
import { batchTree, traceRoot, traceTree } from '../../src/protocol/merkle.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { receiptHash, type Receipt } from '../../src/protocol/receipt.js';
import {
  E18,
  expectRevert,
  h,
  makeReceipt,
  modelOf,
  openAndDraw,
  registerVoter,
  TEST_PARAMS,
  useTestChain,
} from './support.js';

const chain = useTestChain(TEST_PARAMS, 10);

/*
 * The two kinds of challenge beyond a plain "this receipt is wrong": availability (publish the
 * data of a committed receipt in time, or be slashed) and trace bisection (a challenge that proves
 * the first step at which the provider's traced run and the challenger's part).
 */

const PROVIDER = 1;
const CHALLENGER = 8;
const BOND = TEST_PARAMS.challengeBond!;
let model: Hex;

beforeEach(async () => {
  model = modelDigest(modelOf('exact'));
  await registerModel(chain().as(0), { model, exact: true });
  await registerProvider(chain().as(PROVIDER), {
    endpoint: 'http://p',
    signer: chain().address(PROVIDER),
    stake: 200n * E18,
  });
  for (const v of [2, 3, 4])
    await registerVoter(chain().as(v), {
      endpoint: `http://v${v}`,
      signer: chain().address(v),
      stake: 100n * E18,
    });
});

const inputs = new TextEncoder().encode('the canonical encoding of some inputs');
const outputs = new TextEncoder().encode('the canonical encoding of its outputs');

/** Commits a batch of three receipts by the provider; the first has `inputs` as its inputs. */
async function committed(over: Partial<Receipt> = {}) {
  const receipts = [0, 1, 2].map((i) =>
    makeReceipt({
      provider: chain().address(PROVIDER),
      model,
      inputHash: keccak256(inputs),
      outputHash: keccak256(outputs),
      ...over,
      requestId: h(`r${i}`),
    }),
  );
  const tree = batchTree(receipts.map(receiptHash));
  const { batchId } = await commitBatch(chain().as(PROVIDER), { root: tree.root, count: 3, uri: 'http://p' });
  return { receipt: receipts[0]!, batchId, proof: tree.proof(0) };
}

describe('DisputeManager: availability', () => {
  it('an unanswered availability challenge slashes the provider after the answer period', async () => {
    const { receipt, batchId, proof } = await committed();
    const challengerBefore = await getTokenBalance(chain().as(0), chain().address(CHALLENGER));
    const { challengeId } = await challengeAvailability(chain().as(CHALLENGER), {
      provider: chain().address(PROVIDER),
      batchId,
      receiptHash: receiptHash(receipt),
      proof,
    });
    const c = await getChallenge(chain().as(0), challengeId);
    expect([c.kind, c.status, c.committee]).toEqual(['unavailable', 'open', []]);
    expect((await getProvider(chain().as(0), chain().address(PROVIDER))).openChallenges).toBe(1);
    await expectRevert(resolveChallenge(chain().as(0), challengeId), 'TooEarly');
    await expectRevert(
      commitVote(chain().as(2), { challengeId, guilty: true, salt: h('s') }),
      'NotWrongChallenge',
    );
    await chain().increaseTime(TEST_PARAMS.answerPeriodMs!);
    await expectRevert(
      answerAvailability(chain().as(PROVIDER), { challengeId, receipt, inputs, outputs }),
      'AnswerClosed',
    );
    const res = await resolveChallenge(chain().as(0), challengeId);
    expect([res.status, res.slashed, res.reward]).toEqual(['upheld', 100n * E18, 50n * E18]);
    expect(await getTokenBalance(chain().as(0), chain().address(CHALLENGER))).toBe(
      challengerBefore + 50n * E18,
    );
    expect(await getConvictedAt(chain().as(0), chain().address(PROVIDER))).toBeGreaterThan(0);
  });

  it('H-4: publishing the receipt, inputs and outputs settles it for the provider, and the challenger gets its bond back', async () => {
    const { receipt, batchId, proof } = await committed();
    const challengerBefore = await getTokenBalance(chain().as(0), chain().address(CHALLENGER));
    const { challengeId } = await challengeAvailability(chain().as(CHALLENGER), {
      provider: chain().address(PROVIDER),
      batchId,
      receiptHash: receiptHash(receipt),
      proof,
    });
    await expectRevert(
      answerAvailability(chain().as(PROVIDER), {
        challengeId,
        receipt,
        inputs: new Uint8Array([1, 2]),
        outputs,
      }),
      'InputsMismatch',
    );
    await expectRevert(
      answerAvailability(chain().as(PROVIDER), {
        challengeId,
        receipt,
        inputs,
        outputs: new Uint8Array([3]),
      }),
      'OutputsMismatch',
    );
    await expectRevert(
      answerAvailability(chain().as(PROVIDER), {
        challengeId,
        receipt: { ...receipt, price: 1n },
        inputs,
        outputs,
      }),
      'ReceiptMismatch',
    );
    const providerBefore = await getTokenBalance(chain().as(0), chain().address(PROVIDER));
    await answerAvailability(chain().as(PROVIDER), { challengeId, receipt, inputs, outputs });
    expect((await getChallenge(chain().as(0), challengeId)).status).toBe('answered');
    // the data was not served off chain, so asking for it costs the challenger nothing but gas,
    // and the provider earns nothing by withholding and then answering
    expect(await getTokenBalance(chain().as(0), chain().address(CHALLENGER))).toBe(challengerBefore);
    expect(await getTokenBalance(chain().as(0), chain().address(PROVIDER))).toBe(providerBefore);
    expect((await getProvider(chain().as(0), chain().address(PROVIDER))).openChallenges).toBe(0);
    expect(await getConvictedAt(chain().as(0), chain().address(PROVIDER))).toBe(0);
    const [answered] = await getEvents<{ inputs: Hex; outputs: Hex }>(chain().as(0), {
      contract: 'disputeManager',
      eventName: 'AvailabilityAnswered',
    });
    expect([answered!.args.inputs, answered!.args.outputs]).toEqual([
      bytesToHex(inputs),
      bytesToHex(outputs),
    ]);
  });

  it('refuses a receipt the provider never committed, and a second open challenge of one receipt', async () => {
    const { receipt, batchId, proof } = await committed();
    const base = { provider: chain().address(PROVIDER), batchId, receiptHash: receiptHash(receipt), proof };
    await expectRevert(
      challengeAvailability(chain().as(CHALLENGER), { ...base, receiptHash: h('other') }),
      'NotCommitted',
    );
    await expectRevert(
      challengeAvailability(chain().as(CHALLENGER), { ...base, provider: chain().address(2) }),
      'NotCommitted',
    );
    await expectRevert(challengeAvailability(chain().as(PROVIDER), base), 'SelfChallenge');
    await challengeAvailability(chain().as(CHALLENGER), base);
    await expectRevert(challengeAvailability(chain().as(CHALLENGER), base), 'AlreadyChallenged');
  });

  it('data can be challenged only within the challenge window, and a decided challenge is final', async () => {
    const { receipt, batchId, proof } = await committed();
    const base = { provider: chain().address(PROVIDER), batchId, receiptHash: receiptHash(receipt), proof };
    const { challengeId } = await challengeAvailability(chain().as(CHALLENGER), base);
    await chain().increaseTime(TEST_PARAMS.answerPeriodMs!);
    expect((await resolveChallenge(chain().as(0), challengeId)).status).toBe('upheld');
    // slashed once for this receipt: a second challenge would slash again for the same lapse
    await expectRevert(challengeAvailability(chain().as(CHALLENGER), base), 'AlreadyChallenged');
    const later = await committed({ price: 2n });
    await chain().increaseTime(TEST_PARAMS.challengeWindowMs! + 1000);
    // past the window the provider may have pruned the data: nobody can be slashed for it
    await expectRevert(
      challengeAvailability(chain().as(CHALLENGER), {
        ...base,
        batchId: later.batchId,
        receiptHash: receiptHash(later.receipt),
        proof: later.proof,
      }),
      'ChallengeWindowOver',
    );
    await expectRevert(challengeBatch(chain().as(CHALLENGER), later.batchId), 'ChallengeWindowOver');
  });
});

describe('C-1 data too large to publish: what an answer costs', () => {
  it('an availability answer with maxDataBytes of data, and a batch answer of the largest batch, fit the bounds the node derives its caps from', async () => {
    const data = TEST_PARAMS.maxDataBytes!;
    const random = (n: number) => crypto.getRandomValues(new Uint8Array(n)); // no zero-byte discount
    const bigInputs = random(data / 2);
    const bigOutputs = random(data / 2);
    const { receipt, batchId, proof } = await committed({
      inputHash: keccak256(bigInputs),
      outputHash: keccak256(bigOutputs),
    });
    const { challengeId } = await challengeAvailability(chain().as(CHALLENGER), {
      provider: chain().address(PROVIDER),
      batchId,
      receiptHash: receiptHash(receipt),
      proof,
    });
    const { gasUsed } = await answerAvailability(chain().as(PROVIDER), {
      challengeId,
      receipt,
      inputs: bigInputs,
      outputs: bigOutputs,
    });
    expect(Number(gasUsed)).toBeLessThanOrEqual(answerAvailabilityGas(data));
    // and the bound is tight enough to be worth something (within 25 %)
    expect(Number(gasUsed)).toBeGreaterThan(answerAvailabilityGas(data) * 0.75);

    const block = await chain().as(0).publicClient.getBlock();
    const n = Math.min(batchCap(block.gasLimit), 1000);
    const hashes = Array.from({ length: n }, (_, i) => h(`big${i}`));
    const tree = batchTree(hashes);
    const committedBatch = await commitBatch(chain().as(PROVIDER), {
      root: tree.root,
      count: n,
      uri: 'http://p',
    });
    const batchChallenge = await challengeBatch(chain().as(CHALLENGER), committedBatch.batchId);
    const answered = await answerBatch(chain().as(PROVIDER), {
      challengeId: batchChallenge.challengeId,
      batchId: committedBatch.batchId,
      receiptHashes: hashes,
    });
    expect(Number(answered.gasUsed)).toBeLessThanOrEqual(answerBatchGas(n));
    // the node's caps on this chain (anvil: 30M gas blocks) keep both within half a block
    expect(dataCap({ maxDataBytes: data, blockGasLimit: block.gasLimit })).toBe(data);
    expect(answerBatchGas(batchCap(block.gasLimit))).toBeLessThanOrEqual(Number(block.gasLimit) / 2);
  });
});

describe('DisputeManager: batch availability', () => {
  /** A committed batch of `n` receipts by the provider, and their struct hashes in batch order. */
  async function batchOf(n: number) {
    const hashes = Array.from({ length: n }, (_, i) =>
      receiptHash(makeReceipt({ provider: chain().address(PROVIDER), model, requestId: h(`b${n}-${i}`) })),
    );
    const tree = batchTree(hashes);
    const { batchId } = await commitBatch(chain().as(PROVIDER), {
      root: tree.root,
      count: n,
      uri: 'http://p',
    });
    return { batchId, hashes };
  }

  it('publishing the receipt hashes in order settles it; the hashes are then public on chain', async () => {
    for (const n of [1, 2, 3, 7, 64]) {
      const { batchId, hashes } = await batchOf(n);
      const { challengeId } = await challengeBatch(chain().as(CHALLENGER), batchId);
      expect((await getChallenge(chain().as(0), challengeId)).kind).toBe('unavailable-batch');
      // the set of hashes is bound, and their order up to swapping two siblings (pair hashing is
      // commutative); a foreign hash, or leaves from different subtrees swapped, rebuild another root
      const foreign = [h('not in the batch'), ...hashes.slice(1)];
      await expectRevert(
        answerBatch(chain().as(PROVIDER), { challengeId, batchId, receiptHashes: foreign }),
        'BatchMismatch',
      );
      if (n >= 3) {
        const swapped = [hashes[n - 1]!, ...hashes.slice(1, n - 1), hashes[0]!];
        await expectRevert(
          answerBatch(chain().as(PROVIDER), { challengeId, batchId, receiptHashes: swapped }),
          'BatchMismatch',
        );
      }
      await expectRevert(
        answerBatch(chain().as(PROVIDER), { challengeId, batchId, receiptHashes: hashes.slice(1) }),
        'BatchMismatch',
      );
      const before = await getTokenBalance(chain().as(0), chain().address(CHALLENGER));
      await answerBatch(chain().as(PROVIDER), { challengeId, batchId, receiptHashes: hashes });
      expect((await getChallenge(chain().as(0), challengeId)).status).toBe('answered');
      expect(await getTokenBalance(chain().as(0), chain().address(CHALLENGER))).toBe(before + BOND);
      expect(await getPublishedBatch(chain().as(0), batchId)).toEqual(hashes);
    }
  });

  it('an unanswered batch challenge slashes after the answer period; the provider cannot challenge itself', async () => {
    const { batchId } = await batchOf(3);
    await expectRevert(challengeBatch(chain().as(PROVIDER), batchId), 'SelfChallenge');
    const { challengeId } = await challengeBatch(chain().as(CHALLENGER), batchId);
    await expectRevert(challengeBatch(chain().as(CHALLENGER), batchId), 'AlreadyChallenged');
    await expectRevert(resolveChallenge(chain().as(0), challengeId), 'TooEarly');
    await chain().increaseTime(TEST_PARAMS.answerPeriodMs!);
    const res = await resolveChallenge(chain().as(0), challengeId);
    expect([res.status, res.slashed]).toEqual(['upheld', 100n * E18]);
    expect(await getConvictedAt(chain().as(0), chain().address(PROVIDER))).toBeGreaterThan(0);
  });
});

describe('DisputeManager: trace bisection', () => {
  // the provider's trace and the challenger's agree on steps 0-2 and part at step 3
  const ours = [h('s0'), h('s1'), h('s2'), h('s3-right'), h('s4-right')];
  const theirs = [h('s0'), h('s1'), h('s2'), h('s3-wrong'), h('s4-wrong')];

  function divergence(step: number, over: Partial<DivergenceProof> = {}): DivergenceProof {
    const t = traceTree(theirs);
    const o = traceTree(ours);
    return {
      step,
      providerHash: theirs[step]!,
      providerProof: t.proof(step),
      challengerRoot: o.root,
      challengerHash: ours[step]!,
      challengerProof: o.proof(step),
      priorHash: step > 0 ? theirs[step - 1]! : h('none'),
      priorProviderProof: step > 0 ? t.proof(step - 1) : [],
      priorChallengerProof: step > 0 ? o.proof(step - 1) : [],
      ...over,
    };
  }

  it('records the first divergent step with both hashes, proven against the two trace roots', async () => {
    const { receipt, batchId, proof } = await committed({ traceRoot: traceRoot(theirs) });
    const { challengeId } = await openAndDraw(chain(), chain().as(CHALLENGER), {
      receipt,
      batchId,
      proof,
      inputsUri: 'http://challenger/evidence',
      divergence: divergence(3),
    });
    const c = await getChallenge(chain().as(0), challengeId);
    expect(c.kind).toBe('wrong');
    expect(c.divergence).toEqual({ step: 3, providerHash: theirs[3], challengerHash: ours[3] });
    expect(c.committee).toHaveLength(3);
  });

  it('refuses proofs that do not hold, a step where both agree, and an untraced receipt', async () => {
    const { receipt, batchId, proof } = await committed({ traceRoot: traceRoot(theirs) });
    const open = (d: DivergenceProof, r: Receipt = receipt) =>
      openChallenge(chain().as(CHALLENGER), { receipt: r, batchId, proof, inputsUri: 'x', divergence: d });
    await expectRevert(open(divergence(3, { providerHash: h('made up') })), 'InvalidTraceProof');
    await expectRevert(open(divergence(3, { challengerRoot: h('other root') })), 'InvalidTraceProof');
    // the step before must be shared: claiming step 4 while step 3 differs fails its prior proof
    await expectRevert(open(divergence(4, { priorHash: theirs[3]! })), 'InvalidTraceProof');
    await expectRevert(open(divergence(2, { challengerHash: theirs[2]! })), 'NoDivergence');
    const untraced = await committed();
    await expectRevert(
      openChallenge(chain().as(CHALLENGER), { ...untraced, inputsUri: 'x', divergence: divergence(3) }),
      'NoTrace',
    );
    expect(await open(divergence(3))).toMatchObject({ challengeId: 0n });
  });
});
