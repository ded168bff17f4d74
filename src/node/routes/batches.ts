import type { FastifyInstance } from 'fastify';
import type { Hex } from 'viem';
import type { BatchResponse } from '../../protocol/api.js';
import { GlassboxError } from '../../protocol/errors.js';
import type { NodeContext } from '../context.js';
import { storedReceipt } from './receipts.js';

const params = {
  type: 'object',
  properties: { root: { type: 'string', pattern: '^0x[0-9a-fA-F]{64}$' } },
  required: ['root'],
} as const;

/** GET /v1/batches/:root: a committed batch's receipts, proofs and inputs, for verifiers. */
export function batchesRoute(app: FastifyInstance, ctx: NodeContext): void {
  app.get<{ Params: { root: string } }>('/v1/batches/:root', { schema: { params } }, async (request) => {
    const batch = ctx.db.getBatch(request.params.root);
    if (!batch || batch.batchId === undefined || ctx.withhold === 'batches' || ctx.withhold === 'listing')
      throw new GlassboxError('NOT_FOUND', `no committed batch with root ${request.params.root}`, {
        field: 'root',
      });
    const receipts = ctx.db.batchReceipts(batch.root).map((r) => storedReceipt(r, ctx));
    const response: BatchResponse = { root: batch.root as Hex, count: batch.count, receipts };
    return response;
  });
}
