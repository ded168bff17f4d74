import type { Logger } from 'pino';
import { getAddress, type Address, type Hex } from 'viem';
import { accountOf, type EventReader, type GlassboxClient } from '../../chain/index.js';
import type { ModelPackage } from '../../protocol/manifest.js';
import type { NodeRole } from '../config.js';
import type { Serial } from '../serial.js';
import { createWorker, type Worker } from '../worker.js';
import type { RoleStore } from './store.js';

/*
 * The components the role services share (libp2p's shape: a service is `init => components =>
 * service` and names only the components it uses). createNode builds them once and hands each
 * service its few.
 */

export type RoleComponents = {
  /** The chain, acting as this node's staking account. */
  readonly chain: GlassboxClient;
  /** The node's lane for multi-step chain actions (src/node/serial.ts). */
  readonly serial: Serial;
  readonly log: Logger;
  /** Every role's chain events come through here, its cursors kept in `store`. */
  readonly events: EventReader;
  readonly store: RoleStore;
};

/**
 * The package of a model by its on-chain digest: one this node loaded, else fetched from `peers`
 * (GET /v1/blobs/:cid; every blob re-hashed). Undefined when nobody serves it.
 */
export type ModelSource = (digest: Hex, peers: readonly string[]) => Promise<ModelPackage | undefined>;

/** The address the node acts as on chain (checksummed, as the chain's events give addresses). */
export const addressOf = (chain: GlassboxClient): Address => getAddress(accountOf(chain).address);

/**
 * A role's background loop: one pass every `intervalMs` (src/node/worker.ts). A pass that fails is
 * logged and retried on the next one; it never rejects, so `tick()` callers (node.tickRoles, tests)
 * see the role's work done or logged.
 */
export function roleWorker(
  log: Logger,
  role: NodeRole,
  intervalMs: number,
  pass: () => Promise<void>,
): Worker<void> {
  const logged = (error: unknown) => log.error({ err: error, role }, 'role pass failed; retrying');
  return createWorker({ intervalMs, work: () => pass().catch(logged), onError: logged });
}

/** Runs `work` on each item; one that throws is logged and holds up none of the others. */
export async function eachGuarded<T>(
  log: Logger,
  items: readonly T[],
  describe: (item: T) => object,
  message: string,
  work: (item: T) => Promise<void>,
): Promise<void> {
  for (const item of items)
    await work(item).catch((error: unknown) => log.error({ err: error, ...describe(item) }, message));
}
