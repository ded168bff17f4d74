import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { BATCH_PAGE_DATA_BYTES, BATCH_PAGE_MAX, parseWire, type BatchResponse } from '../../protocol/api.js';
import { GlassboxError } from '../../protocol/errors.js';
import type { NodeContext } from '../context.js';
import { queryInteger } from './query.js';
import { storedReceipt } from './receipts.js';

const params = {
  type: 'object',
  properties: { root: { type: 'string', pattern: '^0x[0-9a-fA-F]{64}$' } },
  required: ['root'],
} as const;

const pageQuery = z.strictObject({
  offset: queryInteger({ min: 0, max: Number.MAX_SAFE_INTEGER, fallback: 0 }),
  limit: queryInteger({ min: 1, max: BATCH_PAGE_MAX, fallback: BATCH_PAGE_MAX }),
});

/**
 * GET /v1/batches/:root?offset=0&limit=64: one page of a committed batch's receipts, with their
 * proofs and data, for verifiers. Pages keep one answer bounded (audit M-3: a whole batch, up to
 * batch.maxReceipts receipts with their data, was one JSON document): at most `limit` receipts,
 * and no more than BATCH_PAGE_DATA_BYTES of data unless one receipt carries more. `count` is the
 * whole batch's, so a reader knows when it has all of them; it asks again from
 * `offset + receipts.length`.
 */
export function batchesRoute(app: FastifyInstance, ctx: NodeContext): void {
  app.get<{ Params: { root: string } }>('/v1/batches/:root', { schema: { params } }, async (request) => {
    const { offset, limit } = parseWire(pageQuery, request.query, 'query');
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
    const response: BatchResponse = {
      root: batch.root,
      count: batch.count,
      offset,
      receipts: rows.map((r) => storedReceipt(r, ctx)),
    };
    return response;
  });
}
