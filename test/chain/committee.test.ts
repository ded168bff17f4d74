import { encodeAbiParameters, hexToBigInt, keccak256, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  addStake,
  commitVote,
  drawCommittee,
  getCommitteePool,
  getChallenge,
  getEligibleVoters,
  getProvider,
  getTokenBalance,
  openChallenge,
  registerModel,
  registerProvider,
  reportUnadmittedRuntime,
  resolveChallenge,
  revealVote,
  setRuntimes,
  setVoter,
  type GlassboxClient,
} from '../../src/chain/index.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { signReceipt, type Receipt } from '../../src/protocol/receipt.js';
import {
  E18,
  expectRevert,
  h,
  makeReceipt,
  mineTo,
  modelOf,
  openAndDraw,
  registerVoter,
  TEST_PARAMS,
  TEST_RUNTIME,
  useTestChain,
} from './support.js';

/*
 * The committee draw against a challenger who wants to pick its committee (audit C-2), and
 * receipts under runtimes nobody can check (audit C-3), played against the real contracts.
 */

const chain = useTestChain(TEST_PARAMS, 12);

const ACCUSED = 1;
const HONEST = [2, 3, 4, 5, 6, 7];
const PUPPETS = [8, 9];
const ATTACKER = 10;
const PENALTY = TEST_PARAMS.votePenalty!;
const BOND = TEST_PARAMS.challengeBond!;
let model: Hex;

const idx = (a: Address) => chain().anvil.accounts.findIndex((x) => x.address === a);
const as = (a: Address): GlassboxClient => chain().as(idx(a));
const chainNowMs = async () => (await chain().as(0).publicClient.getBlock()).timestamp * 1000n;
const stakeOf = async (i: number) => {
  const p = await getProvider(chain().as(0), chain().address(i));
  return p.stake + p.unbonding;
};
const signed = async (over: Partial<Receipt> = {}) =>
  signReceipt(
    privateKeyToAccount(chain().key(ACCUSED)),
    makeReceipt({ provider: chain().address(ACCUSED), model, timestamp: await chainNowMs(), ...over }),
    { chainId: chain().anvil.chainId, verifyingContract: chain().deployment.contracts.receiptLedger },
  );

beforeEach(async () => {
  model = modelDigest(modelOf('exact'));
  await registerModel(chain().as(0), { model, exact: true });
  await registerProvider(chain().as(ACCUSED), {
    endpoint: 'http://accused',
    signer: chain().address(ACCUSED),
    stake: 200n * E18,
  });
  await setRuntimes(chain().as(ACCUSED), [h(TEST_RUNTIME)]);
  for (const v of HONEST)
    await registerVoter(chain().as(v), {
      endpoint: `http://v${v}`,
      signer: chain().address(v),
      stake: 5000n * E18,
    });
  for (const v of PUPPETS)
    await registerVoter(chain().as(v), {
      endpoint: `http://p${v}`,
      signer: chain().address(v),
      stake: 100n * E18,
    });
});

/** The committee DisputeManager draws from `seed`: stake-weighted, without replacement (the spec). */
function expectedCommittee(pool: { address: Address; stake: bigint }[], seed: Hex, size: number): Address[] {
  const stakes = pool.map((p) => p.stake);
  let total = stakes.reduce((a, b) => a + b, 0n);
  const out: Address[] = [];
  for (let j = 0; j < Math.min(size, pool.length); j++) {
    let r =
      hexToBigInt(
        keccak256(encodeAbiParameters([{ type: 'bytes32' }, { type: 'uint256' }], [seed, BigInt(j)])),
      ) % total;
    let i = 0;
    while (r >= stakes[i]!) r -= stakes[i++]!;
    out.push(pool[i]!.address);
    total -= stakes[i]!;
    stakes[i] = 0n;
  }
  return out;
}

describe('C-2 committee grinding', () => {
  it('the challenger cannot see or choose its committee: it comes from a later block, with nothing of the challenger in the seed, and puppets gain nothing', async () => {
    const ROUNDS = 6;
    const accusedStake = await stakeOf(ACCUSED);
    const puppetStakes = await Promise.all(PUPPETS.map(stakeOf));
    let puppetSeats = 0;
    for (let round = 0; round < ROUNDS; round++) {
      await setVoter(chain().as(PUPPETS[0]!), true); // back in the pool (lever 2 below takes it out)
      const receipt = await signed({ requestId: h(`grind-${round}`) });
      const { challengeId, drawBlock, blockNumber } = await openChallenge(chain().as(ATTACKER), {
        ...receipt,
        inputsUri: 'http://attacker/evidence',
      });
      expect(drawBlock).toBe(blockNumber + 1n);
      // Lever 1: learn the committee in the block that opens the challenge (what a grinding
      // contract did in one transaction): the draw does not exist yet, for anyone.
      await expectRevert(drawCommittee(chain().as(ATTACKER), challengeId), 'NotDrawnYet');
      // the pool is frozen now: the voters of the runtime as they are before the draw block exists
      const pool = await getCommitteePool(chain().as(0), challengeId);
      expect(pool).toEqual(
        await getEligibleVoters(chain().as(0), {
          runtime: h(TEST_RUNTIME),
          exclude: [chain().address(ACCUSED), chain().address(ATTACKER)],
        }),
      );
      await mineTo(chain(), drawBlock + 1n);
      const { hash } = await chain().as(0).publicClient.getBlock({ blockNumber: drawBlock });
      const seed = keccak256(
        encodeAbiParameters([{ type: 'bytes32' }, { type: 'uint256' }], [hash!, challengeId]),
      );
      // Lever 2: seeing the draw block, reshape the pool to steer the draw (the audit's review
      // found this): one puppet opts out, the other doubles its stake. The draw walks the frozen pool.
      await setVoter(chain().as(PUPPETS[0]!), false);
      await addStake(chain().as(PUPPETS[1]!), 100n * E18);
      // Lever 3: not draw an unfavourable committee: the accused draws.
      const { committee } = await drawCommittee(chain().as(ACCUSED), challengeId);
      // the seed is the draw block's hash and the id: no challenger address, no receipt
      expect(committee).toEqual(expectedCommittee(pool, seed, TEST_PARAMS.committeeSize!));
      // the puppets vote guilty whatever the evidence, the honest members judge (innocent)
      for (const m of committee) {
        const guilty = PUPPETS.map((p) => chain().address(p)).includes(m);
        if (guilty) puppetSeats++;
        await commitVote(as(m), { challengeId, guilty, salt: h(`${m}${round}`) });
      }
      for (const m of committee) {
        const guilty = PUPPETS.map((p) => chain().address(p)).includes(m);
        await revealVote(as(m), { challengeId, guilty, salt: h(`${m}${round}`) });
      }
      // 200 of 30,200 voting stake: two puppet seats of three come up about once in 7,500 draws
      expect((await resolveChallenge(chain().as(0), challengeId)).status).toBe('rejected');
    }
    // the honest provider kept its stake; each seat a puppet got cost it the vote penalty
    expect(await stakeOf(ACCUSED)).toBe(accusedStake);
    const added = BigInt(ROUNDS) * 100n * E18; // what lever 2 staked
    const lost =
      puppetStakes[0]! +
      puppetStakes[1]! +
      added -
      (await stakeOf(PUPPETS[0]!)) -
      (await stakeOf(PUPPETS[1]!));
    expect(lost).toBe(BigInt(puppetSeats) * PENALTY);
  });

  it('wrong votes cost: a member voting against the verdict pays, the members voting with it are paid', async () => {
    const { challengeId, committee } = await openAndDraw(chain(), chain().as(ATTACKER), {
      ...(await signed()),
      inputsUri: 'x',
    });
    const [blind, ...judges] = committee as [Address, ...Address[]];
    const before = await Promise.all(committee.map((m) => getTokenBalance(chain().as(0), m)));
    const blindStake = await stakeOf(idx(blind));
    // one member votes innocent without judging; the others re-executed and found the receipt wrong
    await commitVote(as(blind), { challengeId, guilty: false, salt: h('b') });
    for (const m of judges) await commitVote(as(m), { challengeId, guilty: true, salt: h(m) });
    await revealVote(as(blind), { challengeId, guilty: false, salt: h('b') });
    for (const m of judges) await revealVote(as(m), { challengeId, guilty: true, salt: h(m) });
    expect((await resolveChallenge(chain().as(0), challengeId)).status).toBe('upheld');
    expect(await stakeOf(idx(blind))).toBe(blindStake - PENALTY);
    for (const [i, m] of judges.entries())
      expect(await getTokenBalance(chain().as(0), m)).toBe(before[i + 1]! + PENALTY / BigInt(judges.length));
  });

  it('a verdict needs an absolute majority of the committee: one puppet revealing alone decides nothing', async () => {
    const { challengeId, committee } = await openAndDraw(chain(), chain().as(ATTACKER), {
      ...(await signed()),
      inputsUri: 'x',
    });
    await commitVote(as(committee[0]!), { challengeId, guilty: true, salt: h('s') });
    await chain().increaseTime(TEST_PARAMS.commitPeriodMs!);
    await revealVote(as(committee[0]!), { challengeId, guilty: true, salt: h('s') });
    await chain().increaseTime(TEST_PARAMS.revealPeriodMs!);
    const before = await getTokenBalance(chain().as(0), chain().address(ATTACKER));
    expect((await resolveChallenge(chain().as(0), challengeId)).status).toBe('void');
    expect(await getTokenBalance(chain().as(0), chain().address(ATTACKER))).toBe(before + BOND);
    expect(await stakeOf(ACCUSED)).toBe(200n * E18);
  });

  it('a draw block whose hash is gone (over 256 blocks) re-targets a later block instead of drawing from nothing', async () => {
    const receipt = await signed();
    const { challengeId, drawBlock } = await openChallenge(chain().as(ATTACKER), {
      ...receipt,
      inputsUri: 'x',
    });
    await mineTo(chain(), drawBlock + 300n);
    const deferred = await drawCommittee(chain().as(ACCUSED), challengeId);
    expect(deferred.deferred).toBe(true);
    const c = await getChallenge(chain().as(0), challengeId);
    expect(c.drawBlock).toBe(deferred.blockNumber);
    await mineTo(chain(), c.drawBlock + 1n);
    expect((await drawCommittee(chain().as(ACCUSED), challengeId)).committee).toHaveLength(3);
    await expectRevert(drawCommittee(chain().as(ACCUSED), challengeId), 'AlreadyDrawn');
  });
});

describe('C-3 runtime profiles nobody runs', () => {
  const UNKNOWN = keccak256(new TextEncoder().encode('{"arch":"arm64","engine":"onnxruntime-node"}'));

  it('a receipt under an unadmitted runtime is slashable on sight, each receipt once; it cannot go to a committee', async () => {
    const receipt = await signed({ runtime: UNKNOWN });
    await expectRevert(
      openChallenge(chain().as(ATTACKER), { ...receipt, inputsUri: 'x' }),
      'RuntimeNotAdmitted',
    );
    const before = await getTokenBalance(chain().as(0), chain().address(ATTACKER));
    const { slashed, reward } = await reportUnadmittedRuntime(chain().as(ATTACKER), receipt);
    expect(slashed).toBe(100n * E18);
    expect(await getTokenBalance(chain().as(0), chain().address(ATTACKER))).toBe(before + reward);
    await expectRevert(reportUnadmittedRuntime(chain().as(ATTACKER), receipt), 'AlreadyReported');
    // another answer under it is another offence
    const again = await reportUnadmittedRuntime(chain().as(ATTACKER), await signed({ runtime: UNKNOWN }));
    expect(again.slashed).toBe(50n * E18);
    await expectRevert(reportUnadmittedRuntime(chain().as(ATTACKER), await signed()), 'RuntimeIsAdmitted');
    await expectRevert(setRuntimes(chain().as(ACCUSED), [UNKNOWN]), 'RuntimeNotAdmitted');
  });

  it('L-5: receipts are challengeable and reportable only within the challenge window', async () => {
    const old = await signed({
      timestamp: (await chainNowMs()) - BigInt(TEST_PARAMS.challengeWindowMs!) - 5000n,
    });
    await expectRevert(openChallenge(chain().as(ATTACKER), { ...old, inputsUri: 'x' }), 'ReceiptTooOld');
    await expectRevert(
      reportUnadmittedRuntime(
        chain().as(ATTACKER),
        await signed({ runtime: UNKNOWN, timestamp: old.receipt.timestamp }),
      ),
      'ReceiptTooOld',
    );
  });
});
