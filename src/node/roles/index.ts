import type { Address } from 'viem';
import type { EvidenceResponse } from '../../protocol/api.js';
import type { NodeRole } from '../config.js';
import type { AvailabilityAnswerer } from './availability.js';
import type { CommitteeMember, CommitteeStatus } from './committee.js';
import type { Sampler, SamplerStatus } from './sampler.js';

/*
 * The node's roles beside answering requests, one small service each (src/node/node.ts starts
 * only those its config names): the verifier samples (`sampler.ts`), the committee member judges
 * (`committee.ts`), and a provider answers availability challenges against it (`availability.ts`).
 */

export type RoleServices = {
  readonly availability?: AvailabilityAnswerer;
  readonly sampler?: Sampler;
  readonly committee?: CommitteeMember;
};

/** What GET /v1/status reports of the roles. */
export type RolesStatus = {
  readonly roles: readonly NodeRole[];
  readonly address: Address;
  readonly verifier?: SamplerStatus;
  readonly committee?: CommitteeStatus;
};

/** What the HTTP routes see of the role services. */
export type RoleViews = {
  status(): RolesStatus;
  /** The evidence this node's verifier serves for its challenge of a receipt (by struct hash). */
  evidence(receiptHash: string): EvidenceResponse | undefined;
};

export function roleViews(services: RoleServices, roles: readonly NodeRole[], address: Address): RoleViews {
  return {
    status: () => ({
      roles,
      address,
      ...(services.sampler ? { verifier: services.sampler.status() } : {}),
      ...(services.committee ? { committee: services.committee.status() } : {}),
    }),
    evidence: (hash) => services.sampler?.evidence(hash),
  };
}

/** One pass of each role the node has, in turn: answering, then sampling, then judging. */
export async function tickRoles(services: RoleServices): Promise<void> {
  await services.availability?.tick();
  await services.sampler?.tick();
  await services.committee?.tick();
}

export { availabilityAnswerer, availabilityDataOf, type AvailabilityData } from './availability.js';
export { committeeMember, type CommitteeStatus } from './committee.js';
export { createProviderFetches, type ProviderFetches } from './providers.js';
export { defaultSampleRate, sampler, type SamplerStatus } from './sampler.js';
export { openRoleStore, type RoleStore } from './store.js';
