import { bytesToHex, encodePacked, hexToBytes, keccak256, type Hex } from 'viem';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  answerAvailability,
  answerAvailabilityChunk,
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
  getPublishedChunks,
  getPublishedData,
  getTokenBalance,
  openChallenge,
  registerModel,
  registerProvider,
  resolveChallenge,
  revealVote,
  sendTo,
  type DivergenceProof,
} from '../../src/chain/index.js';
import {
  CHUNK_BYTES,
  CHUNKS_TAG,
  chunkData,
  dataHash,
  MAX_CHUNKS,
  ZERO_ROOT,
  type DataChunk,
} from '../../src/protocol/data.js';
import {
  ANSWER_BASE_GAS,
  ANSWER_GAS_PER_BYTE,
  answerAvailabilityGas,
  answerBatchGas,
  answerChunkGas,
  batchCap,
  dataCap,
  MAX_DATA_BYTES,
} from '../../src/protocol/limits.js';
import { batchTree, traceRoot, traceTree } from '../../src/protocol/merkle.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { receiptHash, type Receipt } from '../../src/protocol/receipt.js';
import { seededBytes } from '../support/arbitraries.js';
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
    const [answered] = await getEvents(chain().as(0), {
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

/** `length` bytes that calldata pays full price for (no zero bytes), from a seed. */
const bytesOf = (length: number, seed: number) => seededBytes(length, seed, { nonZero: true });

describe('DisputeManager: availability answered in chunks', () => {
  /** A committed receipt whose inputs and outputs are these, challenged for availability. */
  async function challenged(data: { inputs: Uint8Array; outputs: Uint8Array }) {
    const { receipt, batchId, proof } = await committed({
      inputHash: dataHash(data.inputs),
      outputHash: dataHash(data.outputs),
    });
    const { challengeId } = await challengeAvailability(chain().as(CHALLENGER), {
      provider: chain().address(PROVIDER),
      batchId,
      receiptHash: receiptHash(receipt),
      proof,
    });
    return { receipt, challengeId };
  }

  it('C-1: large inputs are published chunk by chunk, each proven; the last settles it for the provider and refunds the bond', async () => {
    const challengerBefore = await getTokenBalance(chain().as(0), chain().address(CHALLENGER));
    const data = { inputs: bytesOf(2 * CHUNK_BYTES + 1000, 1), outputs };
    const { receipt, challengeId } = await challenged(data);
    const ins = chunkData(data.inputs);
    const outs = chunkData(data.outputs);
    expect([ins.count, outs.count, outs.root]).toEqual([3, 1, ZERO_ROOT]);
    const send = (side: 'inputs' | 'outputs', chunk: DataChunk, as = PROVIDER) =>
      answerAvailabilityChunk(chain().as(as), { challengeId, receipt, side, chunk });
    const stakeBefore = (await getProvider(chain().as(0), chain().address(PROVIDER))).stake;

    // too large for one answer: refused whole, and so are the 58 bytes whose keccak256 is the commitment
    await expectRevert(
      answerAvailability(chain().as(PROVIDER), { challengeId, receipt, ...data }),
      'InputsMismatch',
    );
    const header = hexToBytes(
      encodePacked(['string', 'uint64', 'bytes32'], [CHUNKS_TAG, BigInt(ins.length), ins.root]),
    );
    expect(keccak256(header)).toBe(receipt.inputHash);
    await expectRevert(
      answerAvailability(chain().as(PROVIDER), { challengeId, receipt, inputs: header, outputs }),
      'InputsMismatch',
    );
    await expectRevert(
      send('inputs', { length: header.length, root: ZERO_ROOT, index: 0, data: header, proof: [] }),
      'ChunkMismatch',
    );
    // a chunk at another index, with another length, with a changed byte, of the other side
    const first = ins.chunk(0);
    const last = ins.chunk(2);
    await expectRevert(send('inputs', { ...first, index: 1, proof: ins.chunk(1).proof }), 'ChunkMismatch');
    await expectRevert(send('inputs', { ...last, index: 0, proof: first.proof }), 'ChunkMismatch');
    await expectRevert(send('inputs', { ...first, length: first.length + 1 }), 'ChunkMismatch');
    const flipped = new Uint8Array(first.data);
    flipped[7]! ^= 2;
    await expectRevert(send('inputs', { ...first, data: flipped }), 'ChunkMismatch');
    await expectRevert(send('outputs', first), 'ChunkMismatch');
    await expectRevert(send('inputs', { ...first, root: h('root') }), 'ChunkMismatch');
    await expectRevert(
      answerAvailabilityChunk(chain().as(PROVIDER), {
        challengeId,
        receipt: { ...receipt, price: 1n },
        side: 'inputs',
        chunk: first,
      }),
      'ReceiptMismatch',
    );

    // in any order, by anyone (data is data); each once
    await send('inputs', last, CHALLENGER);
    await expectRevert(send('inputs', last), 'ChunkAlreadyPublished');
    await send('outputs', outs.chunk(0));
    await send('inputs', first);
    expect(await getPublishedChunks(chain().as(0), challengeId)).toEqual({
      inputs: { count: 3, bits: 0b101n },
      outputs: { count: 1, bits: 1n },
    });
    expect((await getChallenge(chain().as(0), challengeId)).status).toBe('open');
    expect(await getPublishedData(chain().as(0), challengeId)).toBeUndefined();
    const { gasUsed } = await send('inputs', ins.chunk(1)); // the last one: answered
    expect(Number(gasUsed)).toBeLessThanOrEqual(answerChunkGas());
    expect((await getChallenge(chain().as(0), challengeId)).status).toBe('answered');
    expect(await getTokenBalance(chain().as(0), chain().address(CHALLENGER))).toBe(challengerBefore);
    expect((await getProvider(chain().as(0), chain().address(PROVIDER))).stake).toBe(stakeBefore);
    expect((await getProvider(chain().as(0), chain().address(PROVIDER))).openChallenges).toBe(0);
    const published = await getPublishedData(chain().as(0), challengeId);
    expect(receiptHash(published!.receipt)).toBe(receiptHash(receipt));
    expect(Buffer.from(published!.inputs).equals(data.inputs)).toBe(true);
    expect(Buffer.from(published!.outputs).equals(data.outputs)).toBe(true);
    await expectRevert(send('inputs', first), 'ChallengeNotOpen');
  });

  it('the contract opens exactly what src/protocol/data.ts opens: every chunk at its index, none elsewhere, whole data through the chunk path too', async () => {
    const header = hexToBytes(
      encodePacked(['string', 'uint64', 'bytes32'], [CHUNKS_TAG, 123n, h('any root')]),
    ); // hashed in chunks (one), never whole
    for (const [inputs, outputs] of [
      [bytesOf(CHUNK_BYTES + 1, 2), bytesOf(CHUNK_BYTES, 3)],
      [header, bytesOf(3 * CHUNK_BYTES, 4)],
      [new Uint8Array(0), bytesOf(2 * CHUNK_BYTES, 5)],
    ] as const) {
      const { receipt, challengeId } = await challenged({ inputs, outputs });
      const sides = { inputs: chunkData(inputs), outputs: chunkData(outputs) };
      for (const side of ['outputs', 'inputs'] as const) {
        const d = sides[side];
        for (let i = 0; i < d.count; i++) {
          const chunk = d.chunk(i);
          if (d.count > 1) {
            const other = d.chunk((i + 1) % d.count);
            await expectRevert(
              answerAvailabilityChunk(chain().as(PROVIDER), {
                challengeId,
                receipt,
                side,
                chunk: { ...chunk, index: other.index, proof: other.proof },
              }),
              'ChunkMismatch',
            );
          }
          await answerAvailabilityChunk(chain().as(PROVIDER), { challengeId, receipt, side, chunk });
        }
      }
      expect((await getChallenge(chain().as(0), challengeId)).status).toBe('answered');
      const published = await getPublishedData(chain().as(0), challengeId);
      expect(Buffer.from(published!.inputs).equals(inputs)).toBe(true);
      expect(Buffer.from(published!.outputs).equals(outputs)).toBe(true);
    }
  });

  it('unanswered, or answered in part, it is upheld as before', async () => {
    const inputs = bytesOf(3 * CHUNK_BYTES, 6);
    const { receipt, challengeId } = await challenged({ inputs, outputs });
    const ins = chunkData(inputs);
    for (const i of [0, 1])
      await answerAvailabilityChunk(chain().as(PROVIDER), {
        challengeId,
        receipt,
        side: 'inputs',
        chunk: ins.chunk(i),
      });
    await chain().increaseTime(TEST_PARAMS.answerPeriodMs!);
    await expectRevert(
      answerAvailabilityChunk(chain().as(PROVIDER), {
        challengeId,
        receipt,
        side: 'inputs',
        chunk: ins.chunk(2),
      }),
      'AnswerClosed',
    );
    const res = await resolveChallenge(chain().as(0), challengeId);
    expect([res.status, res.slashed]).toEqual(['upheld', 100n * E18]);
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

describe('C-1 data too large for one transaction: what answering in chunks costs', () => {
  it('a full chunk of the largest datum (256 chunks, the deepest proof) fits the bound per chunk; a MiB costs 16 of them', async () => {
    const inputs = bytesOf(MAX_CHUNKS * CHUNK_BYTES, 11); // 16 MiB: proofs of 8 siblings
    const { receipt, batchId, proof } = await committed({
      inputHash: dataHash(inputs),
      outputHash: keccak256(outputs),
    });
    const { challengeId } = await challengeAvailability(chain().as(CHALLENGER), {
      provider: chain().address(PROVIDER),
      batchId,
      receiptHash: receiptHash(receipt),
      proof,
    });
    const ins = chunkData(inputs);
    expect(ins.chunk(0).proof).toHaveLength(8);
    let mib = 0;
    for (let i = 0; i < (1 << 20) / CHUNK_BYTES; i++) {
      const { gasUsed } = await answerAvailabilityChunk(chain().as(PROVIDER), {
        challengeId,
        receipt,
        side: 'inputs',
        chunk: ins.chunk(i),
      });
      expect(Number(gasUsed)).toBeLessThanOrEqual(answerChunkGas());
      // and the bound is tight enough to be worth something (within 25 %)
      expect(Number(gasUsed)).toBeGreaterThan(answerChunkGas() * 0.75);
      mib += Number(gasUsed);
    }
    // docs/chain.md quotes this: about 42.6M gas a MiB, 40 gas a byte under EIP-7623's floor
    expect(mib).toBeGreaterThan(40 * (1 << 20));
    expect(mib).toBeLessThan(44 * (1 << 20));
    const block = await chain().as(0).publicClient.getBlock();
    // a node's data cap on this chain (anvil: 30M gas blocks) is the chain's maxDataBytes: a chunk fits
    expect(answerChunkGas()).toBeLessThanOrEqual(Number(block.gasLimit) / 2);
    expect(dataCap({ maxDataBytes: MAX_DATA_BYTES, blockGasLimit: block.gasLimit })).toBe(MAX_DATA_BYTES);
    // where not even a chunk fits half a block, only what one answer can publish at once
    expect(dataCap({ maxDataBytes: MAX_DATA_BYTES, blockGasLimit: 4_000_000n })).toBe(
      Math.floor((2_000_000 - ANSWER_BASE_GAS) / ANSWER_GAS_PER_BYTE),
    );
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

describe('DisputeManager: token challenges (a generation re-checked by teacher forcing)', () => {
  const token = { position: 17, check: 'margin' } as const;

  it('records the claimed position and check, emits them, and is judged like any challenge: guilty slashes, the challenger is paid', async () => {
    const { receipt, batchId, proof } = await committed();
    const before = await getTokenBalance(chain().as(0), chain().address(CHALLENGER));
    const { challengeId, committee } = await openAndDraw(chain(), chain().as(CHALLENGER), {
      receipt,
      batchId,
      proof,
      inputsUri: 'http://challenger/evidence',
      token,
    });
    const c = await getChallenge(chain().as(0), challengeId);
    expect([c.kind, c.status, c.divergence, c.token]).toEqual(['wrong', 'open', undefined, token]);
    const [event] = await getEvents(chain().as(0), {
      contract: 'disputeManager',
      eventName: 'TokenDivergenceClaimed',
      args: { id: challengeId },
    });
    expect([event!.args.position, event!.args.check]).toEqual([17, 1]);
    expect(committee).toHaveLength(3);
    const i = (m: string) => chain().anvil.accounts.findIndex((a) => a.address === m);
    for (const m of committee) await commitVote(chain().as(i(m)), { challengeId, guilty: true, salt: h(m) });
    for (const m of committee) await revealVote(chain().as(i(m)), { challengeId, guilty: true, salt: h(m) });
    const res = await resolveChallenge(chain().as(0), challengeId);
    expect([res.status, res.slashed]).toEqual(['upheld', 100n * E18]);
    expect(await getTokenBalance(chain().as(0), chain().address(CHALLENGER))).toBe(before + res.reward);
    // an upheld receipt is not challenged again, in either form
    await expectRevert(
      openChallenge(chain().as(9), { receipt, batchId, proof, inputsUri: 'x', token }),
      'AlreadyChallenged',
    );
  });

  it('every check name round-trips; an ordinary challenge has no token claim', async () => {
    for (const [n, check] of (['prompt', 'termination', 'count'] as const).entries()) {
      const { receipt, batchId, proof } = await committed({ requestId: h(`round ${n}`) });
      const opened = await openChallenge(chain().as(CHALLENGER), {
        receipt,
        batchId,
        proof,
        inputsUri: 'x',
        token: { position: n, check },
      });
      expect((await getChallenge(chain().as(0), opened.challengeId)).token).toEqual({ position: n, check });
    }
    const plain = await committed({ requestId: h('plain') });
    const opened = await openChallenge(chain().as(CHALLENGER), { ...plain, inputsUri: 'x' });
    expect((await getChallenge(chain().as(0), opened.challengeId)).token).toBeUndefined();
  });

  it('refuses as openChallenge does: the provider itself, a receipt it never committed or signed, an unadmitted runtime, one already open; and a claim naming no check', async () => {
    const { receipt, batchId, proof } = await committed();
    const open = (i: number, at = { receipt, batchId, proof }) =>
      openChallenge(chain().as(i), { ...at, inputsUri: 'x', token });
    await expectRevert(open(PROVIDER), 'SelfChallenge');
    const altered = { receipt: { ...receipt, outputHash: h('not the committed one') }, batchId, proof };
    await expectRevert(open(CHALLENGER, altered), 'NotCommitted');
    await expectRevert(
      open(CHALLENGER, await committed({ runtime: h('a runtime nobody admitted') })),
      'RuntimeNotAdmitted',
    );
    // `none` is not a claim; a check past the enum does not even decode
    const raw = (check: number) =>
      sendTo(chain().as(CHALLENGER), 'disputeManager', 'openTokenChallenge', [
        receipt,
        '0x',
        batchId,
        proof,
        'x',
        3,
        check,
      ]);
    await expectRevert(raw(0), 'NoTokenCheck');
    await expect(raw(9)).rejects.toThrow();
    const opened = await open(CHALLENGER);
    await expectRevert(open(9), 'AlreadyChallenged');
    expect((await getChallenge(chain().as(0), opened.challengeId)).token).toEqual(token);
  });
});
