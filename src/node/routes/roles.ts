import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { parseWire } from '../../protocol/api.js';
import { GlassboxError } from '../../protocol/errors.js';
import type { NodeContext } from '../context.js';
import type { RolesStatus } from '../roles/index.js';
import { queryInteger } from './query.js';

const params = {
  type: 'object',
  properties: { hash: { type: 'string', pattern: '^0x[0-9a-fA-F]{64}$' } },
  required: ['hash'],
} as const;

/** How many of the latest samples, challenges and duties /v1/status lists, by default and at most. */
export const STATUS_LIMIT = 100;
export const STATUS_LIMIT_MAX = 1000;

const statusQuery = z.strictObject({
  limit: queryInteger({ min: 1, max: STATUS_LIMIT_MAX, fallback: STATUS_LIMIT }),
});

/** GET /v1/status: the roles' counts, and only the latest `limit` of each list. */
export type NodeStatus = Omit<RolesStatus, 'verifier' | 'committee'> & {
  readonly state: string;
  readonly provider: string;
  readonly uptimeMs: number;
  /** How many of each list are shown: the latest. */
  readonly limit: number;
  readonly verifier?: NonNullable<RolesStatus['verifier']> & { readonly challengeCount: number };
  readonly committee?: NonNullable<RolesStatus['committee']> & { readonly dutyCount: number };
};

/**
 * GET /v1/evidence/:hash: what this node (as a challenger) serves its committee for the receipt
 * with that struct hash. GET /v1/status?limit=100: the node's roles, counts of what its verifier and
 * committee member did, and the latest `limit` samples, challenges and duties
 * (`glassbox node status`). It is rate limited like every route (it reads whole tables of the role
 * store, the most expensive read the node serves) and its lists are bounded, since they grow with
 * every batch the node ever saw (audit M-3).
 */
export function rolesRoutes(app: FastifyInstance, ctx: NodeContext): void {
  app.get<{ Params: { hash: string } }>('/v1/evidence/:hash', { schema: { params } }, async (request) => {
    const evidence = ctx.roleViews()?.evidence(request.params.hash);
    if (!evidence)
      throw new GlassboxError('NOT_FOUND', `no evidence for receipt ${request.params.hash} here`, {
        field: 'hash',
      });
    return evidence;
  });
  app.get('/v1/status', async (request): Promise<NodeStatus> => {
    const { limit } = parseWire(statusQuery, request.query, 'query');
    const roles = ctx.roleViews()?.status();
    return {
      ...(roles ? latest(roles, limit) : { address: ctx.provider }),
      state: ctx.state(),
      provider: ctx.provider,
      roles: ctx.roles,
      uptimeMs: Date.now() - ctx.startedAt,
      limit,
    };
  });
}

function latest(
  status: RolesStatus,
  limit: number,
): Omit<NodeStatus, 'state' | 'provider' | 'uptimeMs' | 'limit'> {
  const { verifier, committee, ...rest } = status;
  const tail = <T>(list: readonly T[]) => list.slice(-limit);
  return {
    ...rest,
    ...(verifier
      ? {
          verifier: {
            ...verifier,
            challengeCount: verifier.challenges.length,
            challenges: tail(verifier.challenges),
            samples: tail(verifier.samples),
          },
        }
      : {}),
    ...(committee
      ? { committee: { dutyCount: committee.duties.length, duties: tail(committee.duties) } }
      : {}),
  };
}
