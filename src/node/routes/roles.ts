import type { FastifyInstance } from 'fastify';
import { GlassboxError } from '../../protocol/errors.js';
import type { NodeContext } from '../context.js';

const params = {
  type: 'object',
  properties: { hash: { type: 'string', pattern: '^0x[0-9a-fA-F]{64}$' } },
  required: ['hash'],
} as const;

/**
 * GET /v1/evidence/:hash: what this node (as a challenger) serves its committee for the receipt
 * with that struct hash. GET /v1/status: the node's roles and what its verifier and committee
 * member did (`glassbox node status`).
 */
export function rolesRoutes(app: FastifyInstance, ctx: NodeContext): void {
  app.get<{ Params: { hash: string } }>('/v1/evidence/:hash', { schema: { params } }, async (request) => {
    const evidence = ctx.verifier()?.evidence(request.params.hash);
    if (!evidence)
      throw new GlassboxError('NOT_FOUND', `no evidence for receipt ${request.params.hash} here`, {
        field: 'hash',
      });
    return evidence;
  });
  app.get('/v1/status', { config: { rateLimit: false } }, async () => ({
    state: ctx.state(),
    provider: ctx.provider,
    roles: ctx.roles,
    uptimeMs: Date.now() - ctx.startedAt,
    ...ctx.verifier()?.status(),
  }));
}
