import rateLimit from '@fastify/rate-limit';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
} from 'fastify';
import { validatorCompiler } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { openApiDocument } from '../api/openapi.js';
import { routes } from '../api/routes.js';
import { BINARY_TYPE, PROVIDER_HEADER } from '../protocol/api.js';
import { GlassboxError } from '../protocol/errors.js';
import type { NodeContext } from './context.js';
import { errorHandler, notFoundHandler } from './problem.js';
import { adminRoutes } from './routes/admin.js';
import { batchesRoutes } from './routes/batches.js';
import { blobsRoutes } from './routes/blobs.js';
import { healthRoutes } from './routes/health.js';
import { inferRoutes, provenClient } from './routes/infer.js';
import { modelsRoutes } from './routes/models.js';
import { openAiRoutes, sessionClient } from './routes/openai.js';
import { receiptsRoutes } from './routes/receipts.js';
import { rolesRoutes } from './routes/roles.js';
import { serve, wireSerializerCompiler, type Answer } from '../api/serve.js';
import { vouchersRoutes } from './routes/vouchers.js';

export type AppOptions = {
  readonly log: Logger;
  readonly bodyLimitBytes: number;
  readonly rateLimitPerMinute: number;
};

/**
 * The node's HTTP API: every route of the API's table (src/api/routes.ts), each feature a plugin,
 * validated and checked by the table's schemas; problem+json errors, body and rate limits, metrics.
 */
export async function buildApp(ctx: NodeContext, options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.log as FastifyBaseLogger,
    bodyLimit: options.bodyLimitBytes,
    // One line per request at info would dominate the log; errors and refusals are logged instead.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  app.addContentTypeParser(
    BINARY_TYPE,
    { parseAs: 'buffer', bodyLimit: options.bodyLimitBytes },
    (_r, body, done) => done(null, body),
  );
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(wireSerializerCompiler);
  app.setErrorHandler(errorHandler({ bodyLimitBytes: options.bodyLimitBytes }));
  app.setNotFoundHandler(notFoundHandler);

  // Every answer names this provider, errors included: a client that reached us at another
  // provider's stale endpoint tells so before it reads the body (src/api/client.ts).
  app.addHook('onRequest', async (_request, reply) => {
    reply.header(PROVIDER_HEADER, ctx.provider);
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    ctx.metrics.requests.inc({ route, method: request.method, status: String(reply.statusCode) });
    ctx.metrics.latency.observe({ route }, reply.elapsedTime / 1000);
  });

  await app.register(rateLimit, {
    global: true,
    max: options.rateLimitPerMinute,
    timeWindow: 60_000,
    // After the infer route's preValidation has proven the client (src/node/routes/infer.ts).
    hook: 'preHandler',
    keyGenerator: rateLimitKey,
    errorResponseBuilder: (_request, context) =>
      new GlassboxError(
        'RATE_LIMITED',
        `rate limit of ${context.max} requests a minute exceeded; retry in ${context.after}`,
        {
          details: { retryAfterMs: context.ttl },
        },
      ),
  });

  const v1 = [
    inferRoutes,
    openAiRoutes,
    vouchersRoutes,
    modelsRoutes,
    receiptsRoutes,
    batchesRoutes,
    blobsRoutes,
  ];
  for (const plugin of [...v1, rolesRoutes, adminRoutes, openApiRoutes])
    await app.register(plugin, { ctx, prefix: '/v1' }); // each a plugin: its routes in one place
  await app.register(healthRoutes, { ctx });
  return app;
}

/** GET /v1/openapi.json: the API's document, built once from the route table. */
async function openApiRoutes(app: FastifyInstance): Promise<void> {
  const document = openApiDocument() as unknown as Answer<typeof routes.openapi>;
  serve(app, routes.openapi, async () => document);
}

/**
 * The rate-limit key: the client a request to /v1/infer proved by its signature (or one to the
 * OpenAI routes by its session key), else the IP. A
 * claimed address is never a key (audit H-3): requests forged in a victim's name would use up the
 * victim's rate and lock it out.
 */
function rateLimitKey(request: FastifyRequest): string {
  const client = provenClient(request) ?? sessionClient(request);
  return client ? `client:${client.toLowerCase()}` : `ip:${request.ip}`;
}
