import { privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import {
  ABIS,
  eventsOf,
  getProvider,
  getTokenBalance,
  registerModel,
  registerProvider,
  requestUnstake,
  resolveChallenge,
} from '../../src/chain/index.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { signReceipt } from '../../src/protocol/receipt.js';
import {
  E18,
  makeReceipt,
  modelOf,
  openAndDraw,
  registerVoter,
  TEST_PARAMS,
  useTestChain,
} from './support.js';

/* A deployment whose vote penalty (150) exceeds what a member has staked (~100). */
const PENALTY = 150n * E18;
const chain = useTestChain({ ...TEST_PARAMS, votePenalty: PENALTY }, 6, { resetEach: false });

describe('DisputeManager: a vote penalty larger than the stake', () => {
  it('takes what the silent member has, staked and unbonding, and no more', async () => {
    const model = modelDigest(modelOf('m'));
    await registerModel(chain().as(0), { model, exact: true });
    await registerProvider(chain().as(1), {
      endpoint: 'http://p',
      signer: chain().address(1),
      stake: 200n * E18,
    });
    for (const v of [2, 3, 4])
      await registerVoter(chain().as(v), {
        endpoint: `http://v${v}`,
        signer: chain().address(v),
        stake: 100n * E18 + BigInt(v) * E18,
      });
    const signed = await signReceipt(
      privateKeyToAccount(chain().key(1)),
      makeReceipt({ provider: chain().address(1), model }),
      { chainId: chain().anvil.chainId, verifyingContract: chain().deployment.contracts.receiptLedger },
    );
    const { challengeId, committee } = await openAndDraw(chain(), chain().as(5), {
      ...signed,
      inputsUri: 'x',
    });
    expect([...committee].sort()).toEqual(
      [chain().address(2), chain().address(3), chain().address(4)].sort(),
    );
    await requestUnstake(chain().as(3), 3n * E18); // member 3: staked 100, unbonding 3
    const treasury = await getTokenBalance(chain().as(0), chain().address(0));
    await chain().increaseTime(TEST_PARAMS.commitPeriodMs! + TEST_PARAMS.revealPeriodMs!);
    const { status, receipt } = await resolveChallenge(chain().as(0), challengeId);
    expect(status).toBe('void');
    const taken = eventsOf(ABIS.disputeManager, 'VotePenalised', receipt.logs);
    const expected = [2, 3, 4].map((v) => [chain().address(v), 100n * E18 + BigInt(v) * E18]);
    expect(taken.map((e) => [e.member, e.amount]).sort()).toEqual(expected.sort());
    for (const v of [2, 3, 4]) {
      const p = await getProvider(chain().as(0), chain().address(v));
      expect(p.stake + p.unbonding).toBe(0n);
    }
    expect(await getTokenBalance(chain().as(0), chain().address(0))).toBe(treasury + 309n * E18);
  });
});
