import type { FastifyInstance } from 'fastify';
import { routes } from '../../api/routes.js';
import type { NodeContext } from '../context.js';
import { serve } from '../../api/serve.js';

/** POST /v1/vouchers: a client's cumulative voucher, kept if it is its best; answers what is paid and owed. */
export async function vouchersRoutes(app: FastifyInstance, { ctx }: { ctx: NodeContext }): Promise<void> {
  serve(app, routes.vouchers, async (request) => {
    const account = await ctx.payments.acceptVoucher(request.body);
    const paid = await ctx.payments.paid(account);
    const owed = account.delivered > paid ? account.delivered - paid : 0n;
    return { amount: paid.toString(), owed: owed.toString() };
  });
}
