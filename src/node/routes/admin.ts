import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { routes } from '../../api/routes.js';
import { GlassboxError } from '../../protocol/errors.js';
import type { ModelId } from '../../protocol/manifest.js';
import { isAdminToken } from '../admin-token.js';
import type { NodeContext } from '../context.js';
import { serve } from '../../api/serve.js';

/*
 * The admin API (src/protocol/admin.ts, docs/node.md): add and remove model offers while the node
 * runs. Every route checks the bearer token in `onRequest`, before the body is even read, so an
 * unauthenticated caller costs one hash and learns nothing but 401.
 */

export async function adminRoutes(app: FastifyInstance, { ctx }: { ctx: NodeContext }): Promise<void> {
  const guarded = {
    onRequest: (request: FastifyRequest, reply: FastifyReply) => authorize(ctx, request, reply),
  };

  serve(
    app,
    routes.offerModel,
    async ({ body }) => {
      ready(ctx);
      const { pkg, price, inputPrice, actions } = await ctx.offers.add({
        model: body.model as ModelId,
        ...(body.price === undefined ? {} : { price: BigInt(body.price) }),
        ...(body.inputPrice === undefined ? {} : { inputPrice: BigInt(body.inputPrice) }),
        ...(body.from === undefined ? {} : { from: body.from }),
      });
      return {
        model: pkg.id,
        name: pkg.manifest.name,
        version: pkg.manifest.version,
        price: price.toString(),
        inputPrice: inputPrice.toString(),
        actions,
      };
    },
    guarded,
  );

  serve(
    app,
    routes.withdrawModel,
    async ({ params }) => {
      ready(ctx);
      const model = params.model as ModelId;
      return { model, actions: await ctx.offers.remove(model) };
    },
    guarded,
  );
}

async function authorize(ctx: NodeContext, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Bearer +(\S+) *$/i.exec(header) : null;
  if (match && isAdminToken(ctx.adminToken, match[1]!)) return;
  reply.header('www-authenticate', 'Bearer realm="glassbox-admin"');
  throw new GlassboxError(
    'ADMIN_UNAUTHORIZED',
    match
      ? "wrong admin token: send the node's token (its data dir's admin-token file, or its config's adminToken)"
      : "no admin token: send 'authorization: Bearer <token>' with the node's token (its data dir's admin-token file, or its config's adminToken)",
    { field: 'authorization' },
  );
}

/**
 * Offers are a provider's, and change the chain: only once the node's own chain setup is done, and
 * not while it stops.
 */
function ready(ctx: NodeContext): void {
  if (!ctx.roles.includes('provider'))
    throw new GlassboxError(
      'REQUEST_INVALID',
      `this node is not a provider (roles: ${ctx.roles.join(', ')})`,
      {
        field: 'roles',
      },
    );
  if (ctx.state() !== 'ready')
    throw new GlassboxError('NODE_UNAVAILABLE', `the node is ${ctx.state()}; retry when it is ready`);
}
