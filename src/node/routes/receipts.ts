import type { FastifyInstance } from 'fastify';
import { routes } from '../../api/routes.js';
import type { StoredReceipt } from '../../protocol/api.js';
import { GlassboxError } from '../../protocol/errors.js';
import type { NodeContext } from '../context.js';
import type { ReceiptRow } from '../db.js';
import { serve } from '../../api/serve.js';

/** GET /v1/receipts/:id: a receipt by request id, with its batch proof once committed and its inputs. */
export async function receiptsRoutes(app: FastifyInstance, { ctx }: { ctx: NodeContext }): Promise<void> {
  serve(app, routes.receipt, async (request) => {
    const row = ctx.db.getReceipt(request.params.id);
    if (!row)
      throw new GlassboxError(
        'NOT_FOUND',
        `no receipt for request ${request.params.id} (never answered, or pruned)`,
        {
          field: 'id',
        },
      );
    return storedReceipt(row, ctx);
  });
}

/** A receipt with what a verifier needs. */
export function storedReceipt(row: ReceiptRow, ctx: NodeContext): StoredReceipt {
  const batch = row.batch && ctx.db.getBatch(row.batch.root);
  const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
  return {
    receipt: row.receipt,
    ...(row.batch && batch?.batchId !== undefined
      ? { batch: { root: row.batch.root, proof: row.batch.proof, id: batch.batchId.toString() } }
      : {}),
    ...(row.inputs ? { inputs: base64(row.inputs) } : {}),
    ...(row.outputs ? { outputs: base64(row.outputs) } : {}),
    ...(row.trace ? { trace: row.trace } : {}),
  };
}
