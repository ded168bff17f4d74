import type { FastifyInstance } from 'fastify';
import { routes } from '../../api/routes.js';
import { BATCH_PAGE_DATA_BYTES } from '../../protocol/api.js';
import { GlassboxError } from '../../protocol/errors.js';
import type { NodeContext } from '../context.js';
import { storedReceipt } from './receipts.js';
import { serve } from '../../api/serve.js';

/**
 * GET /v1/batches/:root?offset=0&limit=64: one page of a committed batch's receipts, with their
 * proofs and data, for verifiers. Pages keep one answer bounded (audit M-3: a whole batch, up to
 * batch.maxReceipts receipts with their data, was one JSON document): at most `limit` receipts,
 * and no more than BATCH_PAGE_DATA_BYTES of data unless one receipt carries more. `count` is the
 * whole batch's, so a reader knows when it has all of them; it asks again from
 * `offset + receipts.length`.
 */
export async function batchesRoutes(app: FastifyInstance, { ctx }: { ctx: NodeContext }): Promise<void> {
  serve(app, routes.batch, async (request) => {
    const { offset, limit } = request.query;
    const batch = ctx.db.getBatch(request.params.root);
    if (!batch || batch.batchId === undefined)
      throw new GlassboxError('NOT_FOUND', `no committed batch with root ${request.params.root}`, {
        field: 'root',
      });
    if (offset > batch.count)
      throw new GlassboxError(
        'REQUEST_INVALID',
        `query.offset: ${offset} is past the batch's ${batch.count} receipts`,
        { field: 'query.offset' },
      );
    const rows = ctx.db.batchPage(batch.root, { offset, limit, maxDataBytes: BATCH_PAGE_DATA_BYTES });
    return {
      root: batch.root,
      count: batch.count,
      offset,
      receipts: rows.map((r) => storedReceipt(r, ctx)),
    };
  });
}
