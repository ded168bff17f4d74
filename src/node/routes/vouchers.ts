import type { FastifyInstance } from 'fastify';
import { parseWire, signedVoucherJsonSchema, type VoucherAccepted } from '../../protocol/api.js';
import type { NodeContext } from '../context.js';

/** POST /v1/vouchers: a client's cumulative voucher, kept if it is its best; answers what is paid and owed. */
export function vouchersRoute(app: FastifyInstance, ctx: NodeContext): void {
  app.post('/v1/vouchers', async (request): Promise<VoucherAccepted> => {
    const json = parseWire(signedVoucherJsonSchema, request.body, 'voucher');
    const account = await ctx.payments.acceptVoucher(json);
    const paid = await ctx.payments.paid(account);
    const owed = account.delivered > paid ? account.delivered - paid : 0n;
    return { amount: paid.toString(), owed: owed.toString() };
  });
}
