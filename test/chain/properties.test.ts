import fc from 'fast-check';
import type { Address } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  addStake,
  commitVote,
  deposit,
  getChallenge,
  getDeposit,
  getHold,
  getProvider,
  getTokenBalance,
  readFrom,
  redeemVoucher,
  registerModel,
  reportEquivocation,
  requestUnstake,
  requestWithdrawal,
  resolveChallenge,
  revealVote,
  withdrawDeposit,
  withdrawStake,
} from '../../src/chain/index.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { signReceipt } from '../../src/protocol/receipt.js';
import { signVoucher } from '../../src/protocol/voucher.js';
import {
  E18,
  h,
  makeReceipt,
  modelOf,
  openAndDraw,
  registerVoter,
  TEST_PARAMS,
  useTestChain,
} from './support.js';

const chain = useTestChain(TEST_PARAMS, 8, { resetEach: false });

/*
 * Random sequences of deposits, redemptions, withdrawals, staking, unstaking, time jumps,
 * equivocation reports and challenges (false ones against honest providers, true ones against
 * the cheater), with every committee member voting truthfully. After every step:
 * - each contract's token balance equals the sum of what it owes (stakes + unbonding; deposits;
 *   open bonds),
 * - the chain agrees with a model of what each account should have, and nothing is negative,
 * - honest providers (who never sign a wrong result) have lost no stake.
 */

const HONEST = [1, 2, 3];
const CHEATER = 4;
const PROVIDERS = [...HONEST, CHEATER];
const CLIENTS = [5, 6];
const CHALLENGER = 7;
const MIN = TEST_PARAMS.minStake!;
const INITIAL_DEPOSIT = 500n * E18;
let model: `0x${string}`;

beforeAll(async () => {
  model = modelDigest(modelOf('prop'));
  await registerModel(chain().as(0), { model, exact: true });
  for (const p of PROVIDERS)
    await registerVoter(chain().as(p), {
      endpoint: `http://p${p}`,
      signer: chain().address(p),
      stake: 2n * MIN,
    });
  for (const c of CLIENTS) await deposit(chain().as(c), INITIAL_DEPOSIT);
  await chain().rebase();
});

type Action =
  | { kind: 'deposit'; client: number; amount: bigint }
  | { kind: 'redeem'; client: number; provider: number; amount: bigint }
  | { kind: 'requestWithdrawal'; client: number; amount: bigint }
  | { kind: 'withdraw'; client: number }
  | { kind: 'exit'; client: number; amount: bigint }
  | { kind: 'addStake'; provider: number; amount: bigint }
  | { kind: 'unstake'; provider: number; amount: bigint }
  | { kind: 'withdrawStake'; provider: number }
  | { kind: 'leave'; provider: number }
  | { kind: 'time'; ms: number }
  | { kind: 'equivocate' }
  | { kind: 'challenge'; provider: number };

const amount = fc.bigInt({ min: 1n, max: 300n }).map((n) => n * E18);
const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ kind: fc.constant('deposit' as const), client: fc.constantFrom(...CLIENTS), amount }),
  fc.record({
    kind: fc.constant('redeem' as const),
    client: fc.constantFrom(...CLIENTS),
    provider: fc.constantFrom(...PROVIDERS),
    amount,
  }),
  fc.record({ kind: fc.constant('requestWithdrawal' as const), client: fc.constantFrom(...CLIENTS), amount }),
  fc.record({ kind: fc.constant('withdraw' as const), client: fc.constantFrom(...CLIENTS) }),
  fc.record({ kind: fc.constant('exit' as const), client: fc.constantFrom(...CLIENTS), amount }),
  fc.record({ kind: fc.constant('addStake' as const), provider: fc.constantFrom(...PROVIDERS), amount }),
  fc.record({ kind: fc.constant('unstake' as const), provider: fc.constantFrom(...PROVIDERS), amount }),
  fc.record({ kind: fc.constant('withdrawStake' as const), provider: fc.constantFrom(...PROVIDERS) }),
  fc.record({ kind: fc.constant('leave' as const), provider: fc.constantFrom(...PROVIDERS) }),
  fc.record({
    kind: fc.constant('time' as const),
    ms: fc.constantFrom(3_600_000, 86_400_000, TEST_PARAMS.unbondingDelayMs!),
  }),
  fc.constant({ kind: 'equivocate' as const }),
  fc.record({ kind: fc.constant('challenge' as const), provider: fc.constantFrom(...PROVIDERS) }),
);

/** Runs `f`; a revert (a refused action) is fine, anything else is a failure. */
async function attemptAs<T>(f: () => Promise<T>, kind: string): Promise<T | undefined> {
  try {
    const result = await f();
    tally(kind);
    return result;
  } catch (error) {
    if (isGlassboxError(error, 'CHAIN_REVERTED')) return undefined;
    throw error;
  }
}

/** How many actions of each kind went through, so the property is known to exercise them. */
const done = new Map<string, number>();
const tally = (kind: string) => done.set(kind, (done.get(kind) ?? 0) + 1);

const bal = (a: Address) => getTokenBalance(chain().as(0), a);
/** Chain time in ms: receipts are made fresh, inside the challenge window, after time jumps. */
const chainNowMs = async () => (await chain().as(0).publicClient.getBlock()).timestamp * 1000n;

describe('chain invariants over random action sequences', () => {
  it('balances equal obligations, nothing goes negative, honest providers keep their stake', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 25 }), async (actions) => {
        await chain().reset();
        const staked = new Map(PROVIDERS.map((p) => [p, 2n * MIN])); // put in minus taken out
        const owed = new Map<string, bigint>(); // cumulative voucher per client->provider
        const deposits = new Map(CLIENTS.map((c) => [c, INITIAL_DEPOSIT]));
        let nonce = 0;
        for (const a of actions) {
          const attempt = <T>(f: () => Promise<T>) => attemptAs(f, a.kind);
          switch (a.kind) {
            case 'deposit':
              if (await attempt(() => deposit(chain().as(a.client), a.amount)))
                deposits.set(a.client, deposits.get(a.client)! + a.amount);
              break;
            case 'redeem': {
              const key = `${a.client}:${a.provider}`;
              const cumulative = (owed.get(key) ?? 0n) + a.amount;
              owed.set(key, cumulative);
              const signed = await signVoucher(
                privateKeyToAccount(chain().key(a.client)),
                {
                  client: chain().address(a.client),
                  provider: chain().address(a.provider),
                  amount: cumulative,
                },
                {
                  chainId: chain().anvil.chainId,
                  verifyingContract: chain().deployment.contracts.paymentEscrow,
                },
              );
              const r = await attempt(() => redeemVoucher(chain().as(a.provider), signed));
              // held unless a conviction refunded it; an earlier hold may have come back too
              if (r)
                deposits.set(a.client, deposits.get(a.client)! - (r.refunded ? 0n : r.paid) + r.returned);
              break;
            }
            case 'requestWithdrawal':
              await attempt(() => requestWithdrawal(chain().as(a.client), a.amount));
              break;
            case 'exit': {
              // request up to the whole deposit, wait out the delay, withdraw
              const d = await getDeposit(chain().as(0), chain().address(a.client));
              const want = a.amount < d ? a.amount : d;
              if (want > 0n) await attempt(() => requestWithdrawal(chain().as(a.client), want));
              await chain().increaseTime(TEST_PARAMS.withdrawalDelayMs!);
            }
            // falls through
            case 'withdraw': {
              const r = await attempt(() => withdrawDeposit(chain().as(a.client)));
              if (r) deposits.set(a.client, deposits.get(a.client)! - r.amount);
              break;
            }
            case 'addStake':
              if (await attempt(() => addStake(chain().as(a.provider), a.amount)))
                staked.set(a.provider, staked.get(a.provider)! + a.amount);
              break;
            case 'unstake':
              await attempt(() => requestUnstake(chain().as(a.provider), a.amount));
              break;
            case 'leave': {
              // unstake down to the minimum (or everything), wait out the delay, withdraw
              const { stake } = await getProvider(chain().as(0), chain().address(a.provider));
              if (stake > 0n)
                await attempt(() =>
                  requestUnstake(chain().as(a.provider), stake > MIN ? stake - MIN : stake),
                );
              await chain().increaseTime(TEST_PARAMS.unbondingDelayMs!);
            }
            // falls through
            case 'withdrawStake': {
              const before = await bal(chain().address(a.provider));
              if (await attempt(() => withdrawStake(chain().as(a.provider))))
                staked.set(
                  a.provider,
                  staked.get(a.provider)! - ((await bal(chain().address(a.provider))) - before),
                );
              break;
            }
            case 'time':
              await chain().increaseTime(a.ms);
              break;
            case 'equivocate': {
              // the cheater signs two outputs for one input; anyone can prove it
              const domain = {
                chainId: chain().anvil.chainId,
                verifyingContract: chain().deployment.contracts.receiptLedger,
              };
              const base = makeReceipt({
                provider: chain().address(CHEATER),
                model,
                inputHash: h(`in${nonce++}`),
                timestamp: await chainNowMs(),
              });
              const signer = privateKeyToAccount(chain().key(CHEATER));
              const x = await signReceipt(signer, { ...base, outputHash: h('x') }, domain);
              const y = await signReceipt(signer, { ...base, outputHash: h('y') }, domain);
              await attempt(() => reportEquivocation(chain().as(CHALLENGER), { a: x, b: y }));
              break;
            }
            case 'challenge': {
              // a receipt signed by the provider; only the cheater's receipts are wrong
              const domain = {
                chainId: chain().anvil.chainId,
                verifyingContract: chain().deployment.contracts.receiptLedger,
              };
              const r = makeReceipt({
                provider: chain().address(a.provider),
                model,
                requestId: h(`c${nonce++}`),
                timestamp: await chainNowMs(),
              });
              const signed = await signReceipt(privateKeyToAccount(chain().key(a.provider)), r, domain);
              const opened = await attempt(() =>
                openAndDraw(chain(), chain().as(CHALLENGER), { ...signed, inputsUri: 'ipfs://in' }),
              );
              if (!opened) break;
              const guilty = a.provider === CHEATER;
              for (const m of opened.committee)
                await commitVote(chain().as(chain().anvil.accounts.findIndex((x) => x.address === m)), {
                  challengeId: opened.challengeId,
                  guilty,
                  salt: h(m),
                });
              for (const m of opened.committee)
                await revealVote(chain().as(chain().anvil.accounts.findIndex((x) => x.address === m)), {
                  challengeId: opened.challengeId,
                  guilty,
                  salt: h(m),
                });
              // members vote truthfully and always reveal (disputes.test.ts covers the rest)
              const res = await resolveChallenge(chain().as(0), opened.challengeId);
              expect(res.status).toBe(guilty ? 'upheld' : 'rejected');
              expect((await getChallenge(chain().as(0), opened.challengeId)).status).toBe(res.status);
              break;
            }
          }
          await checkInvariants(staked, deposits);
        }
      }),
      { numRuns: 30 },
    );
    for (const kind of [
      'deposit',
      'redeem',
      'exit',
      'addStake',
      'unstake',
      'leave',
      'equivocate',
      'challenge',
    ])
      expect(done.get(kind) ?? 0, `no successful ${kind}`).toBeGreaterThan(0);
  });
});

async function checkInvariants(staked: Map<number, bigint>, deposits: Map<number, bigint>) {
  const { providerRegistry, paymentEscrow, disputeManager } = chain().deployment.contracts;
  let stakes = 0n;
  for (const p of PROVIDERS) {
    const info = await getProvider(chain().as(0), chain().address(p));
    expect(info.stake >= 0n && info.unbonding >= 0n).toBe(true);
    stakes += info.stake + info.unbonding;
    if (HONEST.includes(p))
      expect(info.stake + info.unbonding, `honest provider ${p} lost stake`).toBe(staked.get(p));
    else expect(info.stake + info.unbonding <= staked.get(p)!).toBe(true);
  }
  expect(await bal(providerRegistry)).toBe(stakes);

  let held = 0n;
  for (const c of CLIENTS) {
    const d = await getDeposit(chain().as(0), chain().address(c));
    expect(d).toBe(deposits.get(c));
    expect(d >= 0n).toBe(true);
    held += d;
    for (const p of PROVIDERS)
      held +=
        (await getHold(chain().as(0), { client: chain().address(c), provider: chain().address(p) }))
          ?.amount ?? 0n;
  }
  expect(await bal(paymentEscrow)).toBe(held); // deposits and payments on hold, nothing else

  const count = await readFrom(chain().as(0), 'disputeManager', 'challengeCount');
  let bonds = 0n;
  for (let i = 0n; i < count; i++) {
    const c = await getChallenge(chain().as(0), i);
    if (c.status === 'open') bonds += c.bond;
  }
  expect(await bal(disputeManager)).toBe(bonds);
}
