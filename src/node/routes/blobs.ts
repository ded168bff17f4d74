import type { FastifyInstance } from 'fastify';
import { routes } from '../../api/routes.js';
import { BINARY_TYPE } from '../../protocol/api.js';
import { GlassboxError, isGlassboxError } from '../../protocol/errors.js';
import type { NodeContext } from '../context.js';
import { serve } from '../../api/serve.js';

/** GET /v1/blobs/:cid: a blob of the node's store (model manifests and files), for peers and clients. */
export async function blobsRoutes(app: FastifyInstance, { ctx }: { ctx: NodeContext }): Promise<void> {
  serve(app, routes.blob, async (request, reply) => {
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
      .type(BINARY_TYPE)
      .header('cache-control', 'public, max-age=31536000, immutable')
      .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  });
}
