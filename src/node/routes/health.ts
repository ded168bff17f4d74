import type { FastifyInstance } from 'fastify';
import { routes } from '../../api/routes.js';
import type { NodeContext } from '../context.js';
import { serve } from '../../api/serve.js';

/** GET /health: 200 while serving, 503 while starting or stopping; GET /metrics: Prometheus text. */
export async function healthRoutes(app: FastifyInstance, { ctx }: { ctx: NodeContext }): Promise<void> {
  serve(app, routes.health, async (_request, reply) => {
    const state = ctx.state();
    return reply.status(state === 'ready' ? 200 : 503).send({
      ok: state === 'ready',
      state,
      provider: ctx.provider,
      models: ctx.models.size,
      openReceipts: ctx.db.countOpen(),
      uptimeMs: Date.now() - ctx.startedAt,
    });
  });
  serve(app, routes.metrics, async (_request, reply) => {
    ctx.metrics.openReceipts.set(ctx.db.countOpen());
    return reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });
}
