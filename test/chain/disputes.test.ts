import { keccak256, toHex, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  ABIS,
  eventsOf,
  commitBatch,
  commitVote,
  getChallenge,
  getChallengeCount,
  getChallengesOpened,
  getProvider,
  getTokenBalance,
  getVote,
  addStake,
  openChallenge,
  drawCommittee,
  requestUnstake,
  withdrawStake,
  readFrom,
  registerModel,
  registerProvider,
  reportEquivocation,
  resolveChallenge,
  revealVote,
  sendTo,
  setSigner,
  voteCommitment,
  type GlassboxClient,
} from '../../src/chain/index.js';
import { batchTree } from '../../src/protocol/merkle.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { receiptHash, signReceipt, type Receipt, type SignedReceipt } from '../../src/protocol/receipt.js';
import {
  E18,
  ENGINE_RUNTIME,
  expectRevert,
  h,
  makeReceipt,
  mineTo,
  modelOf,
  openAndDraw,
  registerVoter,
  TEST_PARAMS,
  useTestChain,
} from './support.js';

const chain = useTestChain(TEST_PARAMS, 12);

const MIN = TEST_PARAMS.minStake!;
const BOND = TEST_PARAMS.challengeBond!;
const PENALTY = TEST_PARAMS.votePenalty!;
const ACCUSED = 1;
const VOTERS = [2, 3, 4, 5, 6];
const CHALLENGER = 9;
const REPORTER = 10;
const signingKey = `0x${'42'.repeat(32)}` as Hex;
let exactModel: Hex;
let looseModel: Hex;

const idx = (address: Address) => chain().anvil.accounts.findIndex((a) => a.address === address);
const asAddr = (address: Address): GlassboxClient => chain().as(idx(address));
const bal = (i: number | Address) =>
  getTokenBalance(chain().as(0), typeof i === 'number' ? chain().address(i) : i);
const stakeOf = async (i: number | Address) => {
  const p = await getProvider(chain().as(0), typeof i === 'number' ? chain().address(i) : i);
  return p.stake + p.unbonding;
};
const domain = () => ({
  chainId: chain().anvil.chainId,
  verifyingContract: chain().deployment.contracts.receiptLedger,
});
const sign = (r: Receipt, key: Hex = signingKey): Promise<SignedReceipt> =>
  signReceipt(privateKeyToAccount(key), r, domain());
const receipt = (over: Partial<Receipt> = {}) =>
  makeReceipt({
    provider: chain().address(ACCUSED),
    model: exactModel,
    requestId: h(`req${Math.random()}`),
    ...over,
  });

beforeEach(async () => {
  exactModel = modelDigest(modelOf('exact'));
  looseModel = modelDigest(modelOf('loose'));
  await registerModel(chain().as(0), { model: exactModel, exact: true });
  await registerModel(chain().as(0), { model: looseModel, exact: false });
  await registerProvider(chain().as(ACCUSED), {
    endpoint: 'http://accused',
    signer: privateKeyToAccount(signingKey).address,
    stake: 200n * E18,
  });
  for (const v of VOTERS)
    await registerVoter(chain().as(v), {
      endpoint: `http://v${v}`,
      signer: chain().address(v),
      stake: MIN + BigInt(v) * E18,
    });
});

describe('DisputeManager: equivocation', () => {
  it('slashes at once for two outputs of one input on an exact model; rewards the reporter; once', async () => {
    const a = await sign(receipt({ outputHash: h('out-a') }));
    const b = await sign(receipt({ outputHash: h('out-b') }));
    const [reporterBefore, treasuryBefore] = [await bal(REPORTER), await bal(0)];
    const { slashed, reward } = await reportEquivocation(chain().as(REPORTER), { a, b });
    expect(slashed).toBe(100n * E18); // slashBps 50% of 200
    expect(reward).toBe(50n * E18);
    expect(await stakeOf(ACCUSED)).toBe(100n * E18);
    expect(await bal(REPORTER)).toBe(reporterBefore + reward);
    expect(await bal(0)).toBe(treasuryBefore + slashed - reward);
    await expectRevert(reportEquivocation(chain().as(REPORTER), { a, b }), 'AlreadyReported');
    const c = await sign(receipt({ outputHash: h('out-c') }));
    await expectRevert(reportEquivocation(chain().as(REPORTER), { a, b: c }), 'AlreadyReported');
  });

  it('slashes unbonding stake too, once the staked part is gone', async () => {
    await addStake(chain().as(ACCUSED), 50n * E18);
    await requestUnstake(chain().as(ACCUSED), 150n * E18); // staked 100, unbonding 150
    const a = await sign(receipt({ outputHash: h('out-a') }));
    const b = await sign(receipt({ outputHash: h('out-b') }));
    expect((await reportEquivocation(chain().as(REPORTER), { a, b })).slashed).toBe(125n * E18);
    const p = await getProvider(chain().as(0), chain().address(ACCUSED));
    expect(p.stake).toBe(0n);
    expect(p.unbonding).toBe(125n * E18); // 100 from stake, 25 from unbonding
  });

  it('binds receipts signed with a retired key', async () => {
    const a = await sign(receipt({ outputHash: h('out-a') }));
    const b = await sign(receipt({ outputHash: h('out-b') }));
    await setSigner(chain().as(ACCUSED), chain().address(11));
    expect((await reportEquivocation(chain().as(REPORTER), { a, b })).slashed).toBe(100n * E18);
  });

  it('refuses what is not equivocation', async () => {
    const base = receipt({ outputHash: h('out-a') });
    const a = await sign(base);
    const other = async (over: Partial<Receipt>) => sign({ ...base, outputHash: h('out-b'), ...over });
    await expectRevert(
      reportEquivocation(chain().as(REPORTER), { a, b: await other({ inputHash: h('x') }) }),
      'NotEquivocation',
    );
    await expectRevert(
      reportEquivocation(chain().as(REPORTER), { a, b: await other({ paramsHash: h('p') }) }),
      'NotEquivocation',
    );
    await expectRevert(
      reportEquivocation(chain().as(REPORTER), { a, b: await other({ runtime: h('rt') }) }),
      'NotEquivocation',
    );
    await expectRevert(
      reportEquivocation(chain().as(REPORTER), { a, b: await other({ model: looseModel }) }),
      'NotEquivocation',
    );
    await expectRevert(
      reportEquivocation(chain().as(REPORTER), { a, b: await other({ provider: chain().address(2) }) }),
      'NotEquivocation',
    );
    await expectRevert(
      reportEquivocation(chain().as(REPORTER), {
        a,
        b: await sign({ ...base, requestId: h('other-request') }),
      }),
      'SameOutput',
    );
    const la = await sign({ ...base, model: looseModel });
    const lb = await sign({ ...base, model: looseModel, outputHash: h('out-b') });
    await expectRevert(reportEquivocation(chain().as(REPORTER), { a: la, b: lb }), 'ModelNotExact');
    // signed by a key that is not the provider's, or over another domain
    const forged = await sign({ ...base, outputHash: h('out-b') }, chain().key(REPORTER));
    await expectRevert(reportEquivocation(chain().as(REPORTER), { a, b: forged }), 'InvalidReceiptSignature');
    const foreign = await signReceipt(
      privateKeyToAccount(signingKey),
      { ...base, outputHash: h('out-b') },
      { chainId: chain().anvil.chainId, verifyingContract: chain().deployment.contracts.paymentEscrow },
    );
    await expectRevert(
      reportEquivocation(chain().as(REPORTER), { a, b: foreign }),
      'InvalidReceiptSignature',
    );
    expect(await stakeOf(ACCUSED)).toBe(200n * E18);
  });
});

async function vote(
  id: bigint,
  member: Address,
  guilty: boolean,
  phase: 'commit' | 'reveal' | 'both' = 'both',
) {
  const salt = h(`salt-${member}-${id}`);
  if (phase !== 'reveal') await commitVote(asAddr(member), { challengeId: id, guilty, salt });
  if (phase !== 'commit') await revealVote(asAddr(member), { challengeId: id, guilty, salt });
}

async function openSigned(over: Partial<Receipt> = {}) {
  const signed = await sign(receipt(over));
  return openAndDraw(chain(), chain().as(CHALLENGER), { ...signed, inputsUri: 'ipfs://inputs' });
}

describe('DisputeManager: challenges', () => {
  it('draws a stake-weighted committee of distinct eligible providers and records the challenge', async () => {
    const { challengeId, committee } = await openSigned();
    expect(committee).toHaveLength(3);
    expect(new Set(committee).size).toBe(3);
    for (const m of committee) expect(VOTERS.map((v) => chain().address(v))).toContain(m);
    const c = await getChallenge(chain().as(0), challengeId);
    expect(c).toMatchObject({
      challenger: chain().address(CHALLENGER),
      provider: chain().address(ACCUSED),
      status: 'open',
      bond: BOND,
      committee,
    });
    expect(c.revealDeadlineMs - c.commitDeadlineMs).toBe(TEST_PARAMS.revealPeriodMs);
    expect(await getChallengeCount(chain().as(0))).toBe(1n);
    expect((await getChallengesOpened(chain().as(0)))[0]!.args.inputsUri).toBe('ipfs://inputs');
  });

  it('a guilty majority slashes the provider; the challenger gets its bond and the reward', async () => {
    const before = { challenger: await bal(CHALLENGER), treasury: await bal(0) };
    const { challengeId, committee } = await openSigned();
    expect(await bal(CHALLENGER)).toBe(before.challenger - BOND);
    for (const m of committee) await vote(challengeId, m, true, 'commit');
    for (const m of committee) await vote(challengeId, m, true, 'reveal');
    const { status, slashed, reward } = await resolveChallenge(chain().as(11), challengeId);
    expect(status).toBe('upheld');
    expect(slashed).toBe(100n * E18);
    expect(reward).toBe(50n * E18);
    expect(await stakeOf(ACCUSED)).toBe(100n * E18);
    expect(await bal(CHALLENGER)).toBe(before.challenger + reward);
    expect(await bal(0)).toBe(before.treasury + slashed - reward);
    expect(await bal(chain().deployment.contracts.disputeManager)).toBe(0n);
    await expectRevert(resolveChallenge(chain().as(11), challengeId), 'ChallengeNotOpen');
  });

  it('an innocent majority (from a batch inclusion proof) costs the challenger its bond; the dissenter pays the majority', async () => {
    const rs = [receipt(), receipt(), receipt()];
    const tree = batchTree(rs.map(receiptHash));
    const { batchId } = await commitBatch(chain().as(ACCUSED), { root: tree.root, count: 3, uri: 'x' });
    const before = {
      challenger: await bal(CHALLENGER),
      provider: await bal(ACCUSED),
      treasury: await bal(0),
    };
    const { challengeId, committee } = await openAndDraw(chain(), chain().as(CHALLENGER), {
      receipt: rs[1]!,
      batchId,
      proof: tree.proof(1),
      inputsUri: 'ipfs://in',
    });
    const [m0, m1, m2] = committee as [Address, Address, Address];
    const balances = await Promise.all(committee.map((m) => bal(m)));
    const stakes = await Promise.all(committee.map(stakeOf));
    await vote(challengeId, m0, false, 'commit');
    await vote(challengeId, m1, true, 'commit');
    await vote(challengeId, m2, false, 'commit');
    await vote(challengeId, m0, false, 'reveal');
    await vote(challengeId, m1, true, 'reveal'); // against the verdict: it pays
    await vote(challengeId, m2, false, 'reveal');
    const { status, reward } = await resolveChallenge(chain().as(CHALLENGER), challengeId);
    expect(status).toBe('rejected');
    expect(reward).toBe(BOND / 2n);
    expect(await stakeOf(ACCUSED)).toBe(200n * E18);
    expect(await bal(ACCUSED)).toBe(before.provider + reward);
    expect(await bal(CHALLENGER)).toBe(before.challenger - BOND);
    expect(await bal(0)).toBe(before.treasury + BOND - reward);
    expect(await stakeOf(m1)).toBe(stakes[1]! - PENALTY);
    expect(await bal(m0)).toBe(balances[0]! + PENALTY / 2n);
    expect(await bal(m2)).toBe(balances[2]! + PENALTY / 2n);
  });

  it('refuses challenges without evidence, twice for one receipt, by the provider itself, or with nobody to vote', async () => {
    const signed = await sign(receipt());
    const open = (i: number, p: Parameters<typeof openChallenge>[1]) => openChallenge(chain().as(i), p);
    await expectRevert(
      open(CHALLENGER, {
        ...signed,
        receipt: { ...signed.receipt, provider: chain().address(11) },
        inputsUri: 'x',
      }),
      'UnknownProvider',
    );
    await expectRevert(open(ACCUSED, { ...signed, inputsUri: 'x' }), 'SelfChallenge');
    const forged = await sign(receipt(), chain().key(CHALLENGER));
    await expectRevert(open(CHALLENGER, { ...forged, inputsUri: 'x' }), 'InvalidReceiptSignature');
    const tree = batchTree([receiptHash(signed.receipt), h('other')]);
    const { batchId } = await commitBatch(chain().as(2), { root: tree.root, count: 2, uri: 'x' }); // someone else's batch
    await expectRevert(
      open(CHALLENGER, { receipt: signed.receipt, batchId, proof: tree.proof(0), inputsUri: 'x' }),
      'NotCommitted',
    );
    await expectRevert(
      open(CHALLENGER, { receipt: signed.receipt, batchId: 99n, proof: [], inputsUri: 'x' }),
      'UnknownBatch',
    );
    await open(CHALLENGER, { ...signed, inputsUri: 'x' });
    await expectRevert(open(REPORTER, { ...signed, inputsUri: 'x' }), 'AlreadyChallenged');
  });

  it("refuses a challenge when no other voter judges under the receipt's runtime", async () => {
    await chain().reset();
    exactModel = modelDigest(modelOf('exact'));
    await registerProvider(chain().as(ACCUSED), {
      endpoint: 'http://accused',
      signer: privateKeyToAccount(signingKey).address,
      stake: 200n * E18,
    });
    await registerVoter(chain().as(2), { endpoint: 'http://v2', signer: chain().address(2), stake: MIN });
    // a voter of another runtime is not in this receipt's pool
    await registerVoter(
      chain().as(3),
      { endpoint: 'http://v3', signer: chain().address(3), stake: MIN },
      keccak256(toHex(ENGINE_RUNTIME)),
    );
    const signed = await sign(receipt());
    // the only voter of the runtime is the challenger itself
    await expectRevert(openChallenge(chain().as(2), { ...signed, inputsUri: 'x' }), 'NoEligibleVoters');
  });

  it('a committee is drawn in the first half of the commit period, or the challenge voids', async () => {
    const before = await bal(CHALLENGER);
    const { challengeId, drawBlock } = await openChallenge(chain().as(CHALLENGER), {
      ...(await sign(receipt())),
      inputsUri: 'x',
    });
    await mineTo(chain(), drawBlock + 1n);
    await chain().increaseTime(TEST_PARAMS.commitPeriodMs! / 2);
    await expectRevert(drawCommittee(chain().as(CHALLENGER), challengeId), 'DrawClosed');
    await chain().increaseTime(TEST_PARAMS.commitPeriodMs! + TEST_PARAMS.revealPeriodMs!);
    expect((await resolveChallenge(chain().as(0), challengeId)).status).toBe('void');
    expect(await bal(CHALLENGER)).toBe(before);
  });

  it('a member can neither vote twice nor reveal a different vote; outsiders cannot vote', async () => {
    const { challengeId, committee } = await openSigned();
    const [m0, m1, m2] = committee as [Address, Address, Address];
    const outsider = VOTERS.map((v) => chain().address(v)).find((a) => !committee.includes(a))!;
    await expectRevert(
      commitVote(asAddr(outsider), { challengeId, guilty: true, salt: h('s') }),
      'NotCommitteeMember',
    );
    await expectRevert(revealVote(asAddr(m0), { challengeId, guilty: true, salt: h('s') }), 'NoCommitment');
    await vote(challengeId, m0, true, 'commit');
    await expectRevert(vote(challengeId, m0, false, 'commit'), 'AlreadyVoted');
    await expectRevert(vote(challengeId, m0, true, 'reveal'), 'RevealNotOpen'); // others have not committed yet
    await vote(challengeId, m1, true, 'commit');
    await vote(challengeId, m2, false, 'commit');
    await expectRevert(
      revealVote(asAddr(m0), { challengeId, guilty: false, salt: h(`salt-${m0}-${challengeId}`) }),
      'CommitmentMismatch',
    );
    await expectRevert(
      revealVote(asAddr(m0), { challengeId, guilty: true, salt: h('wrong salt') }),
      'CommitmentMismatch',
    );
    await vote(challengeId, m0, true, 'reveal');
    await expectRevert(vote(challengeId, m0, true, 'reveal'), 'AlreadyRevealed');
    const v = await getVote(chain().as(0), { challengeId, member: m0 });
    expect(v).toEqual({
      commitment: voteCommitment({
        challengeId,
        member: m0,
        guilty: true,
        salt: h(`salt-${m0}-${challengeId}`),
      }),
      committed: true,
      revealed: true,
      guilty: true,
    });
    expect(
      await readFrom(chain().as(0), 'disputeManager', 'voteCommitment', [
        challengeId,
        m0,
        true,
        h(`salt-${m0}-${challengeId}`),
      ]),
    ).toBe(v.commitment);
    await expectRevert(resolveChallenge(chain().as(0), challengeId), 'TooEarly');
  });

  it('refuses a zero commitment, so one member cannot fill the commit count and open reveals early', async () => {
    const { challengeId, committee } = await openSigned();
    const [m0, m1] = committee as [Address, Address, Address];
    const zero = `0x${'0'.repeat(64)}` as Hex;
    for (let i = 0; i < 3; i++)
      await expectRevert(
        sendTo(asAddr(m0), 'disputeManager', 'commitVote', [challengeId, zero]),
        'ZeroCommitment',
      );
    expect((await getChallenge(chain().as(0), challengeId)).committed).toBe(0);
    expect((await getVote(chain().as(0), { challengeId, member: m0 })).committed).toBe(false);
    await vote(challengeId, m0, true, 'commit');
    await expectRevert(
      sendTo(asAddr(m0), 'disputeManager', 'commitVote', [challengeId, zero]),
      'ZeroCommitment',
    );
    await expectRevert(vote(challengeId, m0, true, 'commit'), 'AlreadyVoted');
    await vote(challengeId, m1, true, 'commit');
    expect((await getChallenge(chain().as(0), challengeId)).committed).toBe(2);
    await expectRevert(vote(challengeId, m0, true, 'reveal'), 'RevealNotOpen'); // one member still to commit
  });

  it('every stage times out: late commits and reveals are refused, and a tie voids the challenge', async () => {
    const before = await bal(CHALLENGER);
    const { challengeId, committee } = await openSigned();
    const [m0, m1, m2] = committee as [Address, Address, Address];
    await vote(challengeId, m0, true, 'commit');
    await vote(challengeId, m1, false, 'commit');
    await chain().increaseTime(TEST_PARAMS.commitPeriodMs!);
    await expectRevert(vote(challengeId, m2, true, 'commit'), 'CommitClosed');
    await vote(challengeId, m0, true, 'reveal');
    await vote(challengeId, m1, false, 'reveal');
    await expectRevert(resolveChallenge(chain().as(0), challengeId), 'TooEarly');
    const stakes = await Promise.all(committee.map(stakeOf));
    await chain().increaseTime(TEST_PARAMS.revealPeriodMs!);
    const { status } = await resolveChallenge(chain().as(0), challengeId);
    expect(status).toBe('void');
    expect(await bal(CHALLENGER)).toBe(before); // bond refunded
    expect(await stakeOf(ACCUSED)).toBe(200n * E18);
    expect(await stakeOf(m0)).toBe(stakes[0]);
    expect(await stakeOf(m1)).toBe(stakes[1]);
    expect(await stakeOf(m2)).toBe(stakes[2]! - PENALTY); // never revealed
    await expectRevert(vote(challengeId, m2, true, 'reveal'), 'ChallengeNotOpen');
  });

  it('locks the stake while a challenge is open: an unbonding provider cannot withdraw ahead of the verdict', async () => {
    await requestUnstake(chain().as(ACCUSED), 200n * E18); // a full exit: all 200 unbonding
    await chain().increaseTime(TEST_PARAMS.unbondingDelayMs! - 100_000); // 100 s before unbonding ends
    const { timestamp } = await chain().as(0).publicClient.getBlock();
    const { challengeId, committee } = await openSigned({ timestamp: timestamp * 1000n }); // a fresh receipt
    expect((await getProvider(chain().as(0), chain().address(ACCUSED))).openChallenges).toBe(1);
    await chain().increaseTime(200_000); // unbonding over, challenge still open
    await expectRevert(withdrawStake(chain().as(ACCUSED)), 'StakeLocked');
    for (const m of committee) await vote(challengeId, m, true, 'commit');
    for (const m of committee) await vote(challengeId, m, true, 'reveal');
    const { status, slashed } = await resolveChallenge(chain().as(0), challengeId);
    expect(status).toBe('upheld');
    expect(slashed).toBe(100n * E18); // half of what was unbonding
    const p = await getProvider(chain().as(0), chain().address(ACCUSED));
    expect(p.openChallenges).toBe(0);
    expect(p.unbonding).toBe(100n * E18);
    const before = await bal(ACCUSED);
    await withdrawStake(chain().as(ACCUSED)); // the lock is gone with the verdict
    expect(await bal(ACCUSED)).toBe(before + 100n * E18);
  });

  it('counts overlapping challenges: the lock lasts until the last one is resolved', async () => {
    await requestUnstake(chain().as(ACCUSED), 200n * E18);
    const first = await openSigned();
    const second = await openSigned();
    expect((await getProvider(chain().as(0), chain().address(ACCUSED))).openChallenges).toBe(2);
    await chain().increaseTime(TEST_PARAMS.unbondingDelayMs!);
    await resolveChallenge(chain().as(0), first.challengeId); // void: nobody voted
    await expectRevert(withdrawStake(chain().as(ACCUSED)), 'StakeLocked');
    await resolveChallenge(chain().as(0), second.challengeId);
    await withdrawStake(chain().as(ACCUSED));
    expect(await stakeOf(ACCUSED)).toBe(0n);
  });

  it('a voided or rejected challenge leaves the receipt challengeable; an upheld one does not', async () => {
    const signed = await sign(receipt());
    const hash = receiptHash(signed.receipt);
    const first = await openChallenge(chain().as(CHALLENGER), { ...signed, inputsUri: 'x' });
    await expectRevert(
      openChallenge(chain().as(REPORTER), { ...signed, inputsUri: 'x' }),
      'AlreadyChallenged', // still open
    );
    await chain().increaseTime(TEST_PARAMS.commitPeriodMs! + TEST_PARAMS.revealPeriodMs!);
    expect((await resolveChallenge(chain().as(0), first.challengeId)).status).toBe('void');
    const second = await openAndDraw(chain(), chain().as(REPORTER), { ...signed, inputsUri: 'x' });
    expect(second.challengeId).toBe(first.challengeId + 1n);
    expect(await readFrom(chain().as(0), 'disputeManager', 'challengeOfReceipt', [hash])).toBe(
      second.challengeId + 1n,
    );
    for (const m of second.committee) await vote(second.challengeId, m, false, 'commit');
    for (const m of second.committee) await vote(second.challengeId, m, false, 'reveal');
    expect((await resolveChallenge(chain().as(0), second.challengeId)).status).toBe('rejected');
    // A rejection is the failure of that challenger's case (a sock puppet with no evidence, say):
    // an honest verifier can still bring the receipt; once upheld, it is final.
    const third = await openAndDraw(chain(), chain().as(CHALLENGER), { ...signed, inputsUri: 'x' });
    for (const m of third.committee) await vote(third.challengeId, m, true, 'commit');
    for (const m of third.committee) await vote(third.challengeId, m, true, 'reveal');
    expect((await resolveChallenge(chain().as(0), third.challengeId)).status).toBe('upheld');
    await expectRevert(
      openChallenge(chain().as(REPORTER), { ...signed, inputsUri: 'x' }),
      'AlreadyChallenged',
    );
  });

  it('refuses votes on unknown or settled challenges', async () => {
    const salt = h('s');
    await expectRevert(
      commitVote(chain().as(2), { challengeId: 7n, guilty: true, salt }),
      'UnknownChallenge',
    );
    await expectRevert(
      revealVote(chain().as(2), { challengeId: 7n, guilty: true, salt }),
      'UnknownChallenge',
    );
    const { challengeId, committee } = await openSigned();
    await chain().increaseTime(TEST_PARAMS.commitPeriodMs! + TEST_PARAMS.revealPeriodMs!);
    await resolveChallenge(chain().as(0), challengeId);
    await expectRevert(
      commitVote(asAddr(committee[0]!), { challengeId, guilty: true, salt }),
      'ChallengeNotOpen',
    );
  });

  it('penalises a member who committed but never revealed, and only that member', async () => {
    const { challengeId, committee } = await openSigned();
    const [m0, m1, m2] = committee as [Address, Address, Address];
    const stakes = await Promise.all(committee.map(stakeOf));
    const treasury = await bal(0);
    for (const m of committee) await vote(challengeId, m, true, 'commit');
    await vote(challengeId, m0, true, 'reveal');
    await vote(challengeId, m1, true, 'reveal'); // m2 committed, then went silent
    await chain().increaseTime(TEST_PARAMS.commitPeriodMs! + TEST_PARAMS.revealPeriodMs!);
    const { status, receipt: tx } = await resolveChallenge(chain().as(0), challengeId);
    expect(status).toBe('upheld');
    expect(await stakeOf(m0)).toBe(stakes[0]);
    expect(await stakeOf(m1)).toBe(stakes[1]);
    expect(await stakeOf(m2)).toBe(stakes[2]! - PENALTY);
    const penalties = eventsOf(ABIS.disputeManager, 'VotePenalised', tx.logs);
    expect(penalties.map((e) => [e.member, e.amount])).toEqual([[m2, PENALTY]]);
    const rewards = eventsOf(ABIS.disputeManager, 'VoteRewarded', tx.logs);
    expect(rewards.map((e) => [e.member, e.amount])).toEqual([
      [m0, PENALTY / 2n],
      [m1, PENALTY / 2n],
    ]);
    expect(await bal(0)).toBe(treasury + 50n * E18); // half the slash; the penalty went to m0 and m1
  });

  it('draws committee seats by stake: one large stake among small ones sits on nearly every committee', async () => {
    const BIG = 2;
    await addStake(chain().as(BIG), 9000n * E18); // ~9,100 against ~100 for each of six others
    for (const v of [7, 8])
      await registerVoter(chain().as(v), {
        endpoint: `http://v${v}`,
        signer: chain().address(v),
        stake: MIN,
      });
    const seats = new Map<Address, number>();
    const ROUNDS = 10;
    for (let i = 0; i < ROUNDS; i++) {
      const { committee } = await openSigned();
      expect(new Set(committee).size).toBe(3);
      for (const m of committee) seats.set(m, (seats.get(m) ?? 0) + 1);
    }
    // uniform draws would seat it in 3 of 7 committees; by stake, it misses one in ~7,000
    expect(seats.get(chain().address(BIG))).toBeGreaterThanOrEqual(ROUNDS - 1);
  });

  it('refuses a reveal after the reveal deadline', async () => {
    const { challengeId, committee } = await openSigned();
    for (const m of committee) await vote(challengeId, m, true, 'commit');
    await chain().increaseTime(TEST_PARAMS.commitPeriodMs! + TEST_PARAMS.revealPeriodMs!);
    await expectRevert(vote(challengeId, committee[0]!, true, 'reveal'), 'RevealClosed');
  });

  it('a dispute that nobody votes on or resolves stays safe: anyone settles it later, silent members pay', async () => {
    const before = { challenger: await bal(CHALLENGER), treasury: await bal(0) };
    const { challengeId, committee } = await openSigned();
    const stakes = await Promise.all(committee.map(stakeOf));
    await chain().increaseTime(30 * 86_400_000); // long after every deadline
    expect((await getChallenge(chain().as(0), challengeId)).status).toBe('open');
    expect(await bal(chain().deployment.contracts.disputeManager)).toBe(BOND); // the bond is held, not lost
    const { status } = await resolveChallenge(chain().as(REPORTER), challengeId);
    expect(status).toBe('void');
    expect(await bal(CHALLENGER)).toBe(before.challenger);
    for (let i = 0; i < committee.length; i++)
      expect(await stakeOf(committee[i]!)).toBe(stakes[i]! - PENALTY);
    expect(await bal(0)).toBe(before.treasury + PENALTY * BigInt(committee.length));
    expect(await stakeOf(ACCUSED)).toBe(200n * E18);
    await expectRevert(getChallenge(chain().as(0), 5n), 'UnknownChallenge');
    await expectRevert(resolveChallenge(chain().as(0), 5n), 'UnknownChallenge');
  });
});
