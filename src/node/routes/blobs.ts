import type { FastifyInstance } from 'fastify';
import { GlassboxError, isGlassboxError } from '../../protocol/errors.js';
import type { NodeContext } from '../context.js';

/** GET /v1/blobs/:cid: a blob of the node's store (model manifests and files), for peers and clients. */
export function blobsRoute(app: FastifyInstance, ctx: NodeContext): void {
  app.get<{ Params: { cid: string } }>('/v1/blobs/:cid', async (request, reply) => {
    let bytes: Uint8Array;
    try {
      bytes = await ctx.store.get(request.params.cid);
    } catch (error) {
      if (isGlassboxError(error, 'CID_INVALID'))
        throw new GlassboxError('REQUEST_INVALID', error.shortMessage, { field: 'cid' });
      if (isGlassboxError(error, 'BLOB_NOT_FOUND'))
        throw new GlassboxError('NOT_FOUND', `no blob ${request.params.cid} here`, { field: 'cid' });
      throw error;
    }
    return reply
      .type('application/octet-stream')
      .header('cache-control', 'public, max-age=31536000, immutable')
      .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  });
}
