import type { ContractEventArgs, ContractEventName, GetContractEventsReturnType } from 'viem';
import type { GlassboxClient } from './client.js';
import { ABIS, type AbiOf, type ContractName } from './contracts.js';
import { toChainError } from './errors.js';

/*
 * One reader of the Glassbox contracts' events for every consumer (the node's roles today, an
 * explorer later). Three rules make it safe on any EVM chain:
 *
 * - Paginated: one `eth_getLogs` covers at most `maxBlockRange` blocks, since public RPC endpoints
 *   refuse (or time out on) wide ranges, and a consumer far behind must catch up in bounded steps.
 * - Confirmed: only blocks at least `confirmations` deep are read, so a consumer never acts on
 *   events a reorganisation can take back. 0 on the devnet, where blocks are made on demand.
 * - Saved after handling: a followed stream's cursor (the next block to read) is saved only after
 *   the handler of a page resolved. A crash, or a handler that throws, leaves the cursor where it
 *   was: the page is delivered again (handlers must be idempotent), never skipped.
 *
 * Cursors live wherever the consumer keeps its state (the node: its SQLite role store), behind
 * `CursorStore`.
 */

/** Where a reader keeps how far each followed stream has read. */
export type CursorStore = {
  /** The next block to read for stream `name`; undefined before its first page. */
  get(name: string): bigint | undefined;
  set(name: string, nextBlock: bigint): void | Promise<void>;
};

/** Which events to read: one event of one Glassbox contract, optionally filtered on indexed arguments. */
export type EventQuery<C extends ContractName, E extends ContractEventName<AbiOf<C>>> = {
  readonly contract: C;
  readonly eventName: E;
  /** Filters on indexed arguments, e.g. `{ provider }`; typed from the contract's ABI. */
  readonly args?: ContractEventArgs<AbiOf<C>, E>;
};

/** One decoded event, its arguments typed from the contract's ABI. */
export type ChainLog<
  C extends ContractName,
  E extends ContractEventName<AbiOf<C>>,
> = GetContractEventsReturnType<AbiOf<C>, E, true, bigint, bigint>[number];

/** The events of one page, oldest first, and the blocks it covered (both ends included). */
export type EventPage<C extends ContractName, E extends ContractEventName<AbiOf<C>>> = {
  readonly events: readonly ChainLog<C, E>[];
  readonly fromBlock: bigint;
  readonly toBlock: bigint;
};

export type EventReaderParameters = {
  readonly client: GlassboxClient;
  readonly cursors: CursorStore;
  /** The most blocks one getLogs call covers (default `DEFAULT_MAX_BLOCK_RANGE`). */
  readonly maxBlockRange?: bigint;
  /** How deep a block must be to be read: 0 reads the latest block (default 0). */
  readonly confirmations?: bigint;
};

/**
 * A range most public RPC providers accept for a filtered getLogs (several cap at 10,000 blocks,
 * some at 5,000); a consumer that is behind catches up in as many pages as it takes.
 */
export const DEFAULT_MAX_BLOCK_RANGE = 5_000n;

export type EventReader = {
  /** The newest block deep enough to read, or undefined while the chain is shorter than the depth. */
  confirmedHead(): Promise<bigint | undefined>;
  /**
   * Delivers the events of `query` from stream `name`'s cursor (the deployment's start block at
   * first) up to the confirmed head, one page at a time, saving the cursor past each page once
   * `handle` resolved for it. A throw from `handle` propagates and leaves the cursor before that
   * page. Pages without events are not delivered (their cursor still moves).
   */
  follow<C extends ContractName, E extends ContractEventName<AbiOf<C>>>(
    name: string,
    query: EventQuery<C, E>,
    handle: (page: EventPage<C, E>) => Promise<void>,
  ): Promise<void>;
  /**
   * The latest event matching `query` up to the confirmed head, searched page by page from the
   * head back to the start block: a lookup by an indexed key (a challenge's id) that finds recent
   * events in one call and old ones without a single unbounded getLogs.
   */
  findLatest<C extends ContractName, E extends ContractEventName<AbiOf<C>>>(
    query: EventQuery<C, E>,
  ): Promise<ChainLog<C, E> | undefined>;
};

export function createEventReader(params: EventReaderParameters): EventReader {
  const { client, cursors } = params;
  const maxBlockRange = params.maxBlockRange ?? DEFAULT_MAX_BLOCK_RANGE;
  const confirmations = params.confirmations ?? 0n;
  if (maxBlockRange < 1n)
    throw new RangeError(`maxBlockRange must be at least 1 block, not ${maxBlockRange}`);
  if (confirmations < 0n) throw new RangeError(`confirmations must not be negative, not ${confirmations}`);
  const startBlock = client.deployment.startBlock;

  async function confirmedHead(): Promise<bigint | undefined> {
    const latest = await client.publicClient.getBlockNumber().catch((error: unknown) => {
      throw toChainError(error, 'getBlockNumber');
    });
    return latest < confirmations ? undefined : latest - confirmations;
  }

  async function read<C extends ContractName, E extends ContractEventName<AbiOf<C>>>(
    query: EventQuery<C, E>,
    fromBlock: bigint,
    toBlock: bigint,
  ): Promise<ChainLog<C, E>[]> {
    const abi: AbiOf<C> = ABIS[query.contract];
    try {
      return await client.publicClient.getContractEvents<AbiOf<C>, E, true, bigint, bigint>({
        address: client.deployment.contracts[query.contract],
        abi,
        eventName: query.eventName,
        ...(query.args === undefined ? {} : { args: query.args }),
        fromBlock,
        toBlock,
        strict: true,
      });
    } catch (error) {
      throw toChainError(error, `getLogs(${query.contract}.${query.eventName}, ${fromBlock}..${toBlock})`);
    }
  }

  return {
    confirmedHead,
    async follow(name, query, handle) {
      const head = await confirmedHead();
      if (head === undefined) return;
      for (let from = cursors.get(name) ?? startBlock; from <= head;) {
        const to = from + maxBlockRange - 1n < head ? from + maxBlockRange - 1n : head;
        const events = await read(query, from, to);
        if (events.length > 0) await handle({ events, fromBlock: from, toBlock: to });
        await cursors.set(name, to + 1n);
        from = to + 1n;
      }
    },
    async findLatest(query) {
      const head = await confirmedHead();
      if (head === undefined) return undefined;
      for (let to = head; to >= startBlock;) {
        const from = to - maxBlockRange + 1n > startBlock ? to - maxBlockRange + 1n : startBlock;
        const events = await read(query, from, to);
        if (events.length > 0) return events[events.length - 1];
        to = from - 1n;
      }
      return undefined;
    },
  };
}
