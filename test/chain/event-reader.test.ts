import { getAddress, keccak256, toHex, type Address } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createEventReader,
  mintDevTokens,
  type CursorStore,
  type EventReaderParameters,
} from '../../src/chain/index.js';
import { startTestChain, type TestChain } from './support.js';

/*
 * The chain-event reader against a real anvil: each mint to a fresh address is one Transfer event
 * in a block of its own (anvil mines one block per transaction), its amount numbering it, so a
 * tiny page size spreads a handful of them over many pages.
 */

let chain: TestChain;
const sink = (label: string): Address => getAddress(keccak256(toHex(`sink:${label}`)).slice(0, 42));

/** A cursor store kept in memory, as an explorer might keep its own. */
function memoryCursors(): CursorStore & { saved: Map<string, bigint> } {
  const saved = new Map<string, bigint>();
  return { saved, get: (name) => saved.get(name), set: (name, block) => void saved.set(name, block) };
}

async function mintEach(to: Address, amounts: readonly bigint[]): Promise<void> {
  for (const amount of amounts) await mintDevTokens(chain.as(0), { to, amount });
}

const reader = (cursors: CursorStore, over: Partial<EventReaderParameters> = {}) =>
  createEventReader({ client: chain.as(0), cursors, ...over });

const transfersTo = (to: Address) => ({ contract: 'token', eventName: 'Transfer', args: { to } }) as const;

beforeAll(async () => {
  chain = await startTestChain();
});

afterAll(async () => {
  await chain?.stop();
});

describe('the chain-event reader', () => {
  it('with a page of 2 blocks delivers every event exactly once and in order, then only new ones', async () => {
    const to = sink('pages');
    await mintEach(to, [1n, 2n, 3n, 4n, 5n, 6n, 7n]);
    const cursors = memoryCursors();
    const events = reader(cursors, { maxBlockRange: 2n });
    const seen: bigint[] = [];
    const pages: { fromBlock: bigint; toBlock: bigint }[] = [];
    const follow = () =>
      events.follow('pages', transfersTo(to), async (page) => {
        pages.push({ fromBlock: page.fromBlock, toBlock: page.toBlock });
        for (const e of page.events) {
          expect(e.args.to).toBe(to); // typed from the ABI: no casts
          expect(e.blockNumber >= page.fromBlock && e.blockNumber <= page.toBlock).toBe(true);
          seen.push(e.args.value);
        }
      });

    await follow();
    expect(seen).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n]);
    for (const page of pages) expect(page.toBlock - page.fromBlock).toBeLessThanOrEqual(1n);
    const head = await chain.as(0).publicClient.getBlockNumber();
    expect(cursors.saved.get('pages')).toBe(head + 1n);

    await follow(); // nothing new
    expect(seen).toHaveLength(7);
    await mintEach(to, [8n]);
    await follow();
    expect(seen).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
  });

  it('reads only blocks at least `confirmations` deep', async () => {
    const to = sink('depth');
    const cursors = memoryCursors();
    const events = reader(cursors, { confirmations: 3n });
    const seen: bigint[] = [];
    const follow = () =>
      events.follow('depth', transfersTo(to), async ({ events: page }) => {
        for (const e of page) seen.push(e.args.value);
      });
    await mintEach(to, [1n, 2n]); // the two newest blocks: not 3 deep yet
    const head = await chain.as(0).publicClient.getBlockNumber();
    expect(await events.confirmedHead()).toBe(head - 3n);
    await follow();
    expect(seen).toEqual([]);
    expect(cursors.saved.get('depth')).toBe(head - 2n); // the cursor stops below the unconfirmed blocks

    await chain.rpc('evm_mine');
    await follow();
    expect(seen).toEqual([]); // the first mint is 2 deep now
    await chain.rpc('evm_mine');
    await follow();
    expect(seen).toEqual([1n]);
    await chain.rpc('evm_mine');
    await follow();
    expect(seen).toEqual([1n, 2n]);
  });

  it('a handler that throws before its page is saved gets the same page again, and nothing is skipped', async () => {
    const to = sink('crash');
    await mintEach(to, [1n, 2n, 3n, 4n, 5n, 6n]);
    const cursors = memoryCursors();
    const events = reader(cursors, { maxBlockRange: 2n });
    const delivered: bigint[][] = [];
    let crashOn: bigint | undefined = 3n;
    const follow = () =>
      events.follow('crash', transfersTo(to), async ({ events: page }) => {
        const values = page.map((e) => e.args.value);
        delivered.push(values);
        if (crashOn !== undefined && values.includes(crashOn)) throw new Error('crash while handling');
      });

    await expect(follow()).rejects.toThrow('crash while handling');
    const crashed = delivered.length - 1;
    expect(delivered[crashed]).toContain(3n);
    const stoppedAt = cursors.saved.get('crash');
    crashOn = undefined;
    await follow();
    expect(cursors.saved.get('crash')).toBeGreaterThan(stoppedAt ?? 0n);
    expect(delivered[crashed + 1]).toEqual(delivered[crashed]); // the same page again, whole
    const handled = [...delivered.slice(0, crashed), ...delivered.slice(crashed + 1)].flat();
    expect(handled).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
  });

  it('finds the latest event by an indexed argument, paging back from the head', async () => {
    const to = sink('find');
    await mintEach(to, [10n, 20n]);
    for (let i = 0; i < 5; i++) await chain.rpc('evm_mine'); // beyond one page of 2 blocks
    const events = reader(memoryCursors(), { maxBlockRange: 2n });
    expect((await events.findLatest(transfersTo(to)))?.args.value).toBe(20n);
    expect(await events.findLatest(transfersTo(sink('nobody')))).toBeUndefined();
  });

  it('refuses a page size below one block and a negative depth, naming them', () => {
    expect(() => reader(memoryCursors(), { maxBlockRange: 0n })).toThrow(/maxBlockRange/);
    expect(() => reader(memoryCursors(), { confirmations: -1n })).toThrow(/confirmations/);
  });
});
