import { keccak256, toHex, type Hex } from 'viem';
import { describe, expect, it } from 'vitest';
import {
  addStake,
  deprecateModel,
  getOffer,
  getProvider,
  getTokenBalance,
  isProviderSigner,
  listProviders,
  pauseProvider,
  readFrom,
  registerProvider,
  setVoter,
  setRuntimes,
  admitRuntime,
  isRuntimeAdmitted,
  getAdmittedRuntimes,
  getEligibleVoters,
  getOfferEvents,
  removeOffer,
  requestUnstake,
  resumeProvider,
  sendTo,
  setEndpoint,
  setOffer,
  setSigner,
  toModelDigest,
  withdrawStake,
} from '../../src/chain/index.js';
import {
  E18,
  ENGINE_RUNTIME,
  expectRevert,
  h,
  modelOf,
  registerTestModel,
  signerAddress,
  TEST_RUNTIME,
  TEST_PARAMS,
  useTestChain,
} from './support.js';

const chain = useTestChain();

const MIN = TEST_PARAMS.minStake!;
const signerKey = `0x${'11'.repeat(32)}` as const;

async function register(i: number, stake = MIN, signer = chain().address(i)) {
  return registerProvider(chain().as(i), { endpoint: `http://127.0.0.1:${8000 + i}`, signer, stake });
}

describe('ProviderRegistry: stake', () => {
  it('registers with a signing key that differs from the staking account', async () => {
    const signer = signerAddress(signerKey);
    const before = await getTokenBalance(chain().as(1), chain().address(1));
    await register(1, 150n * E18, signer);
    const p = await getProvider(chain().as(0), chain().address(1));
    expect(p).toMatchObject({ registered: true, paused: false, active: true, stake: 150n * E18, signer });
    expect(p.endpoint).toBe('http://127.0.0.1:8001');
    expect(await getTokenBalance(chain().as(1), chain().address(1))).toBe(before - 150n * E18);
    expect(await isProviderSigner(chain().as(0), { provider: chain().address(1), key: signer })).toBe(true);
    expect(
      await isProviderSigner(chain().as(0), { provider: chain().address(1), key: chain().address(1) }),
    ).toBe(false);
    expect((await listProviders(chain().as(0))).map((x) => x.address)).toEqual([chain().address(1)]);
  });

  it('refuses a stake below the minimum, a second registration, an empty endpoint, a zero or taken signer', async () => {
    await expectRevert(register(1, MIN - 1n), 'StakeBelowMinimum');
    await register(1);
    await expectRevert(register(1), 'AlreadyRegistered');
    await expectRevert(
      registerProvider(chain().as(2), { endpoint: '', signer: chain().address(2), stake: MIN }),
      'EmptyEndpoint',
    );
    await expectRevert(register(2, MIN, '0x0000000000000000000000000000000000000000'), 'ZeroAddress');
    await expectRevert(register(2, MIN, chain().address(1)), 'SignerTaken');
  });

  it('adds stake; refuses zero and unregistered callers', async () => {
    await expectRevert(addStake(chain().as(1), E18), 'NotRegistered');
    await register(1);
    await addStake(chain().as(1), 5n * E18);
    expect((await getProvider(chain().as(0), chain().address(1))).stake).toBe(MIN + 5n * E18);
    await expectRevert(addStake(chain().as(1), 0n), 'ZeroAmount');
  });

  it('unstakes only after the unbonding delay', async () => {
    await register(1, MIN + 50n * E18);
    await expectRevert(requestUnstake(chain().as(1), 0n), 'ZeroAmount');
    await expectRevert(requestUnstake(chain().as(1), MIN + 51n * E18), 'InsufficientStake');
    await expectRevert(requestUnstake(chain().as(1), 51n * E18), 'StakeBelowMinimum'); // leaves 99
    await expectRevert(withdrawStake(chain().as(1)), 'NothingToWithdraw');
    await requestUnstake(chain().as(1), 50n * E18);
    const p = await getProvider(chain().as(0), chain().address(1));
    expect(p.stake).toBe(MIN);
    expect(p.unbonding).toBe(50n * E18);
    await expectRevert(withdrawStake(chain().as(1)), 'UnbondingNotOver');
    await chain().increaseTime(TEST_PARAMS.unbondingDelayMs! - 60_000);
    await expectRevert(withdrawStake(chain().as(1)), 'UnbondingNotOver');
    await chain().increaseTime(60_000);
    const before = await getTokenBalance(chain().as(1), chain().address(1));
    await withdrawStake(chain().as(1));
    expect(await getTokenBalance(chain().as(1), chain().address(1))).toBe(before + 50n * E18);
    // a full exit is allowed
    await requestUnstake(chain().as(1), MIN);
    expect((await getProvider(chain().as(0), chain().address(1))).active).toBe(false);
  });

  it('after a full exit, adding stake must reach the minimum again', async () => {
    await register(1);
    await requestUnstake(chain().as(1), MIN);
    await expectRevert(addStake(chain().as(1), MIN - 1n), 'StakeBelowMinimum');
    await addStake(chain().as(1), MIN);
    const p = await getProvider(chain().as(0), chain().address(1));
    expect(p).toMatchObject({ stake: MIN, unbonding: MIN, active: true });
  });

  it('refuses every provider action from an account that never registered', async () => {
    await expectRevert(requestUnstake(chain().as(4), E18), 'NotRegistered');
    await expectRevert(withdrawStake(chain().as(4)), 'NotRegistered');
    await expectRevert(setEndpoint(chain().as(4), 'http://x'), 'NotRegistered');
    await expectRevert(resumeProvider(chain().as(4)), 'NotRegistered');
  });

  it('slashing and the stake lock are callable by nobody but the DisputeManager', async () => {
    await register(1);
    for (const fn of ['lockStake', 'unlockStake'] as const)
      await expectRevert(
        sendTo(chain().as(1), 'providerRegistry', fn, [chain().address(1)]),
        'NotDisputeManager',
      );
  });

  it('slashing is callable by nobody but the DisputeManager', async () => {
    await register(1);
    for (const i of [0, 1, 2])
      await expectRevert(
        sendTo(chain().as(i), 'providerRegistry', 'slash', [chain().address(1), E18]),
        'NotDisputeManager',
      );
    expect((await getProvider(chain().as(0), chain().address(1))).stake).toBe(MIN);
  });

  it('wires the DisputeManager once, by the deployer only', async () => {
    await expectRevert(
      sendTo(chain().as(1), 'providerRegistry', 'setDisputeManager', [chain().address(1)]),
      'NotDeployer',
    );
    await expectRevert(
      sendTo(chain().as(0), 'providerRegistry', 'setDisputeManager', [chain().address(1)]),
      'AlreadyWired',
    );
  });
});

describe('ProviderRegistry: identity and availability', () => {
  it('changes endpoint and rotates the signing key; retired keys stay bound', async () => {
    await register(1);
    await setEndpoint(chain().as(1), 'https://p1.example');
    await expectRevert(setEndpoint(chain().as(1), ''), 'EmptyEndpoint');
    const key = signerAddress(signerKey);
    await setSigner(chain().as(1), key);
    const p = await getProvider(chain().as(0), chain().address(1));
    expect(p.endpoint).toBe('https://p1.example');
    expect(p.signer).toBe(key);
    expect(
      await isProviderSigner(chain().as(0), { provider: chain().address(1), key: chain().address(1) }),
    ).toBe(true);
    await register(2);
    await expectRevert(setSigner(chain().as(2), key), 'SignerTaken');
    await expectRevert(setSigner(chain().as(2), '0x0000000000000000000000000000000000000000'), 'ZeroAddress');
    await expectRevert(setSigner(chain().as(3), key), 'NotRegistered');
  });

  it('pauses and resumes', async () => {
    await register(1);
    await expectRevert(resumeProvider(chain().as(1)), 'NotPaused');
    await pauseProvider(chain().as(1));
    expect((await getProvider(chain().as(0), chain().address(1))).active).toBe(false);
    await expectRevert(pauseProvider(chain().as(1)), 'AlreadyPaused');
    await resumeProvider(chain().as(1));
    expect((await getProvider(chain().as(0), chain().address(1))).active).toBe(true);
    await expectRevert(pauseProvider(chain().as(2)), 'NotRegistered');
  });
});

describe('ProviderRegistry: runtime profiles and the committee pool', () => {
  const RUNTIME = h(TEST_RUNTIME);
  const pool = async (a: number, b: number, runtime: Hex = RUNTIME) =>
    (
      await getEligibleVoters(chain().as(0), { runtime, exclude: [chain().address(a), chain().address(b)] })
    ).map((v) => [v.address, v.stake]);

  it('eligibleVoters leaves out the two excluded accounts, non-voters, other runtimes, paused providers and those under the minimum', async () => {
    for (const i of [1, 2, 3, 4, 5, 6, 7]) await register(i, MIN + BigInt(i) * E18);
    for (const i of [1, 2, 3, 4, 5, 6, 7]) await setRuntimes(chain().as(i), [RUNTIME]);
    await setRuntimes(chain().as(7), [keccak256(toHex(ENGINE_RUNTIME))]); // judges another runtime
    for (const i of [1, 2, 3, 4, 5, 7]) await setVoter(chain().as(i), true); // 6 stays out of committee duty
    await pauseProvider(chain().as(3));
    await requestUnstake(chain().as(4), MIN + 4n * E18); // a full exit: staked 0
    expect(await pool(1, 9)).toEqual([
      [chain().address(2), MIN + 2n * E18],
      [chain().address(5), MIN + 5n * E18],
    ]);
    await resumeProvider(chain().as(3));
    expect((await pool(1, 2)).map(([a]) => a).sort()).toEqual(
      [chain().address(3), chain().address(5)].sort(),
    );
    expect(await pool(1, 2, keccak256(toHex(ENGINE_RUNTIME)))).toEqual([
      [chain().address(7), MIN + 7n * E18],
    ]);
  });

  it('a voter declaring two runtimes (a tensor and a token engine) sits in both pools; a re-declaration replaces the set', async () => {
    const OTHER = keccak256(toHex(ENGINE_RUNTIME));
    for (const i of [1, 2, 3]) await register(i);
    await setRuntimes(chain().as(3), [RUNTIME, OTHER]);
    await setVoter(chain().as(3), true);
    expect((await pool(1, 2)).map(([a]) => a)).toEqual([chain().address(3)]);
    expect((await pool(1, 2, OTHER)).map(([a]) => a)).toEqual([chain().address(3)]);
    expect(
      await readFrom(chain().as(0), 'providerRegistry', 'servesRuntime', [chain().address(3), OTHER]),
    ).toBe(true);
    await setRuntimes(chain().as(3), [OTHER]); // stops judging RUNTIME
    expect(await pool(1, 2)).toEqual([]);
    expect((await getProvider(chain().as(0), chain().address(3))).runtimes).toEqual([OTHER]);
    // a padded list would make every committee draw walk it: bounded, and no duplicates
    await expectRevert(setRuntimes(chain().as(3), [OTHER, OTHER]), 'DuplicateRuntime');
    await expectRevert(setRuntimes(chain().as(3), Array(9).fill(OTHER) as Hex[]), 'TooManyRuntimes');
    await expectRevert(setRuntimes(chain().as(3), [OTHER, h('never admitted')]), 'RuntimeNotAdmitted');
    expect((await getProvider(chain().as(0), chain().address(3))).runtimes).toEqual([OTHER]);
  });

  it('M-1: the pool holds only voters staked at least the minimum, so exited accounts cost the draw nothing', async () => {
    for (const i of [1, 2, 3]) {
      await register(i);
      await setRuntimes(chain().as(i), [RUNTIME]);
      await setVoter(chain().as(i), true);
    }
    const voters = () => readFrom(chain().as(0), 'providerRegistry', 'voterCount');
    expect(await voters()).toBe(3n);
    await requestUnstake(chain().as(1), MIN); // exits: out of the pool at once
    await setVoter(chain().as(2), false); // opts out
    expect(await voters()).toBe(1n);
    // recycling the stake into a fresh account adds one voter, not one more forever
    await chain().increaseTime(TEST_PARAMS.unbondingDelayMs!);
    await withdrawStake(chain().as(1));
    await register(4);
    await setRuntimes(chain().as(4), [RUNTIME]);
    await setVoter(chain().as(4), true);
    expect(await voters()).toBe(2n);
    await addStake(chain().as(1), MIN); // back above the minimum: back in the pool
    expect(await voters()).toBe(3n);
    expect((await pool(0, 0)).map(([a]) => a).sort()).toEqual(
      [chain().address(1), chain().address(3), chain().address(4)].sort(),
    );
  });

  it('only the owner admits runtime profiles; a provider declares only an admitted one', async () => {
    await register(1);
    const profile = '{"engine":"some-engine"}';
    await expectRevert(admitRuntime(chain().as(1), profile), 'OwnableUnauthorizedAccount');
    await expectRevert(setRuntimes(chain().as(1), [keccak256(toHex(profile))]), 'RuntimeNotAdmitted');
    const { runtime } = await admitRuntime(chain().as(0), profile);
    expect(runtime).toBe(keccak256(toHex(profile)));
    expect(await isRuntimeAdmitted(chain().as(0), runtime)).toBe(true);
    expect((await getAdmittedRuntimes(chain().as(0))).get(runtime)).toBe(profile);
    await setRuntimes(chain().as(1), [runtime]);
    expect((await getProvider(chain().as(0), chain().address(1))).runtimes).toEqual([runtime]);
    await expectRevert(setRuntimes(chain().as(2), [runtime]), 'NotRegistered');
  });
});

describe('ProviderRegistry: offers', () => {
  it('applies a new offer and a decrease at once, an increase only after the notice period', async () => {
    const model = await registerTestModel(chain(), 'm');
    await register(1);
    const p = chain().address(1);
    expect(await getOffer(chain().as(0), { provider: p, model })).toEqual({
      active: false,
      price: 0n,
      inputPrice: 0n,
      pending: undefined,
    });
    await setOffer(chain().as(1), { model, price: 100n });
    expect(await getOffer(chain().as(0), { provider: p, model })).toEqual({
      active: true,
      price: 100n,
      inputPrice: 0n,
      pending: undefined,
    });
    await setOffer(chain().as(1), { model, price: 80n });
    expect((await getOffer(chain().as(0), { provider: p, model })).price).toBe(80n);
    await setOffer(chain().as(1), { model, price: 120n });
    const pending = await getOffer(chain().as(0), { provider: p, model });
    expect(pending.price).toBe(80n);
    expect(pending.pending?.price).toBe(120n);
    await chain().increaseTime(TEST_PARAMS.priceNoticeMs! - 60_000);
    expect((await getOffer(chain().as(0), { provider: p, model })).price).toBe(80n);
    await chain().increaseTime(60_000);
    expect(await getOffer(chain().as(0), { provider: p, model })).toEqual({
      active: true,
      price: 120n,
      inputPrice: 0n,
      pending: undefined,
    });
    // a decrease cancels a pending increase
    await setOffer(chain().as(1), { model, price: 200n });
    await setOffer(chain().as(1), { model, price: 110n });
    expect(await getOffer(chain().as(0), { provider: p, model })).toEqual({
      active: true,
      price: 110n,
      inputPrice: 0n,
      pending: undefined,
    });
    await removeOffer(chain().as(1), model);
    expect((await getOffer(chain().as(0), { provider: p, model })).active).toBe(false);
    await expectRevert(removeOffer(chain().as(1), model), 'NoOffer');
  });

  it('a removed offer re-added at a higher price still waits the notice period', async () => {
    const model = await registerTestModel(chain(), 'm');
    await register(1);
    const p = chain().address(1);
    await setOffer(chain().as(1), { model, price: 100n });
    await removeOffer(chain().as(1), model);
    expect(await getOffer(chain().as(0), { provider: p, model })).toEqual({
      active: false,
      price: 0n,
      inputPrice: 0n,
      pending: undefined,
    });
    await setOffer(chain().as(1), { model, price: 10_000n });
    const back = await getOffer(chain().as(0), { provider: p, model });
    expect(back.active).toBe(true);
    expect(back.price).toBe(100n); // the last price in force, not the new one
    expect(back.pending?.price).toBe(10_000n);
    await chain().increaseTime(TEST_PARAMS.priceNoticeMs! - 60_000);
    expect((await getOffer(chain().as(0), { provider: p, model })).price).toBe(100n);
    await chain().increaseTime(60_000);
    expect((await getOffer(chain().as(0), { provider: p, model })).price).toBe(10_000n);
    // removing while an increase is pending drops it; the price remembered is the one in force
    await setOffer(chain().as(1), { model, price: 20_000n });
    await removeOffer(chain().as(1), model);
    await chain().increaseTime(TEST_PARAMS.priceNoticeMs!);
    await setOffer(chain().as(1), { model, price: 20_000n });
    expect((await getOffer(chain().as(0), { provider: p, model })).price).toBe(10_000n);
    // re-adding at or below the last price applies at once
    await removeOffer(chain().as(1), model);
    await setOffer(chain().as(1), { model, price: 50n });
    expect(await getOffer(chain().as(0), { provider: p, model })).toEqual({
      active: true,
      price: 50n,
      inputPrice: 0n,
      pending: undefined,
    });
  });

  it('refuses unknown and deprecated models, prices over uint128, and non-providers', async () => {
    const model = await registerTestModel(chain(), 'm');
    await expectRevert(setOffer(chain().as(1), { model, price: 1n }), 'NotRegistered');
    await register(1);
    await expectRevert(setOffer(chain().as(1), { model: modelOf('ghost'), price: 1n }), 'UnknownModel');
    await expectRevert(setOffer(chain().as(1), { model, price: 2n ** 128n }), 'PriceTooHigh');
    await expectRevert(setOffer(chain().as(1), { model, price: 1n, inputPrice: 2n ** 128n }), 'PriceTooHigh');
    await setOffer(chain().as(1), { model, price: 2n ** 128n - 1n, inputPrice: 2n ** 128n - 1n });
    expect(await getOffer(chain().as(0), { provider: chain().address(1), model })).toMatchObject({
      price: 2n ** 128n - 1n,
      inputPrice: 2n ** 128n - 1n,
    });
    await deprecateModel(chain().as(0), model);
    await expectRevert(setOffer(chain().as(1), { model, price: 1n }), 'ModelIsDeprecated');
    await expectRevert(removeOffer(chain().as(2), model), 'NotRegistered');
  });
});

/*
 * Per-token offers (an LLM): `price` per output token, `inputPrice` per input token, as one pair.
 * The attack these guard against: a provider lowering one price and raising the other in the same
 * call, so that the raise would ride on the decrease past the notice period.
 */
describe('ProviderRegistry: per-token offers (the pair)', () => {
  const NOTICE = TEST_PARAMS.priceNoticeMs!;

  async function pairOffer() {
    const model = await registerTestModel(chain(), 'llm');
    await register(1);
    await setOffer(chain().as(1), { model, price: 40n, inputPrice: 10n });
    return { model, p: chain().address(1) };
  }

  it('applies a new pair and a pair where neither rises at once, both together', async () => {
    const { model, p } = await pairOffer();
    expect(await getOffer(chain().as(0), { provider: p, model })).toEqual({
      active: true,
      price: 40n,
      inputPrice: 10n,
      pending: undefined,
    });
    await setOffer(chain().as(1), { model, price: 30n, inputPrice: 5n });
    expect(await getOffer(chain().as(0), { provider: p, model })).toMatchObject({
      price: 30n,
      inputPrice: 5n,
      pending: undefined,
    });
    // one lowered, the other unchanged: nothing rises, so at once
    await setOffer(chain().as(1), { model, price: 30n, inputPrice: 4n });
    expect(await readFrom(chain().as(0), 'providerRegistry', 'priceOf', [p, toModelDigest(model)])).toEqual([
      true,
      30n,
      4n,
    ]);
  });

  it('raising only the input price while lowering the output price makes BOTH wait the notice', async () => {
    const { model, p } = await pairOffer();
    const { blockNumber } = await setOffer(chain().as(1), { model, price: 1n, inputPrice: 500n });
    // the quote a client read before the call holds, output price included, until the notice ends
    const quote = await getOffer(chain().as(0), { provider: p, model });
    expect(quote).toMatchObject({ active: true, price: 40n, inputPrice: 10n });
    expect(quote.pending).toMatchObject({ price: 1n, inputPrice: 500n });
    const [event] = await getOfferEvents(chain().as(0), { provider: p, fromBlock: blockNumber });
    expect(event!.args).toMatchObject({ price: 1n, inputPrice: 500n });
    expect(secondsMs(event!.args.effectiveAt!)).toBe(quote.pending!.effectiveAtMs);
    await chain().increaseTime(NOTICE - 60_000);
    expect(await readFrom(chain().as(0), 'providerRegistry', 'priceOf', [p, toModelDigest(model)])).toEqual([
      true,
      40n,
      10n,
    ]);
    await chain().increaseTime(60_000);
    expect(await getOffer(chain().as(0), { provider: p, model })).toEqual({
      active: true,
      price: 1n,
      inputPrice: 500n,
      pending: undefined,
    });
  });

  it('raising only the output price while lowering the input price waits the notice too', async () => {
    const { model, p } = await pairOffer();
    await setOffer(chain().as(1), { model, price: 41n, inputPrice: 0n });
    expect(await getOffer(chain().as(0), { provider: p, model })).toMatchObject({
      price: 40n,
      inputPrice: 10n,
      pending: { price: 41n, inputPrice: 0n },
    });
    // a pair where neither rises over the one in force cancels the pending pair
    await setOffer(chain().as(1), { model, price: 40n, inputPrice: 9n });
    expect(await getOffer(chain().as(0), { provider: p, model })).toEqual({
      active: true,
      price: 40n,
      inputPrice: 9n,
      pending: undefined,
    });
  });

  it('a removed pair re-listed with one price raised comes back at the old pair, the new one pending', async () => {
    const { model, p } = await pairOffer();
    await removeOffer(chain().as(1), model);
    expect(await getOffer(chain().as(0), { provider: p, model })).toEqual({
      active: false,
      price: 0n,
      inputPrice: 0n,
      pending: undefined,
    });
    await setOffer(chain().as(1), { model, price: 1n, inputPrice: 11n });
    expect(await getOffer(chain().as(0), { provider: p, model })).toMatchObject({
      active: true,
      price: 40n,
      inputPrice: 10n,
      pending: { price: 1n, inputPrice: 11n },
    });
    // removal while a pair is pending drops it; the pair remembered is the one in force
    await removeOffer(chain().as(1), model);
    await chain().increaseTime(NOTICE);
    await setOffer(chain().as(1), { model, price: 40n, inputPrice: 10n });
    expect(await getOffer(chain().as(0), { provider: p, model })).toEqual({
      active: true,
      price: 40n,
      inputPrice: 10n,
      pending: undefined,
    });
    // re-listed with neither price above the remembered pair: at once
    await removeOffer(chain().as(1), model);
    await setOffer(chain().as(1), { model, price: 40n, inputPrice: 2n });
    expect(await getOffer(chain().as(0), { provider: p, model })).toMatchObject({
      active: true,
      price: 40n,
      inputPrice: 2n,
      pending: undefined,
    });
  });
});

function secondsMs(seconds: bigint): number {
  return Number(seconds) * 1000;
}
