import type { FastifyInstance } from 'fastify';
import { routes } from '../../api/routes.js';
import type { NodeStatus } from '../../api/schemas.js';
import { GlassboxError } from '../../protocol/errors.js';
import type { NodeContext } from '../context.js';
import type { RolesStatus } from '../roles/index.js';
import { serve } from '../../api/serve.js';

/**
 * GET /v1/evidence/:hash: what this node (as a challenger) serves its committee for the receipt
 * with that struct hash. GET /v1/status?limit=100: the node's roles, counts of what its verifier and
 * committee member did, and the latest `limit` samples, challenges and duties
 * (`glassbox node status`). It is rate limited like every route (it reads whole tables of the role
 * store, the most expensive read the node serves) and its lists are bounded, since they grow with
 * every batch the node ever saw (audit M-3).
 */
export async function rolesRoutes(app: FastifyInstance, { ctx }: { ctx: NodeContext }): Promise<void> {
  serve(app, routes.evidence, async (request) => {
    const evidence = ctx.roleViews()?.evidence(request.params.hash);
    if (!evidence)
      throw new GlassboxError('NOT_FOUND', `no evidence for receipt ${request.params.hash} here`, {
        field: 'hash',
      });
    return evidence;
  });
  serve(app, routes.status, async (request) => {
    const { limit } = request.query;
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
