import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifySerializerCompiler,
  RouteShorthandOptions,
} from 'fastify';
import type { z } from 'zod';
import { isJsonAnswer, type ApiRoute, type RawContent } from './routes.js';
import { parseWith } from '../protocol/validate.js';

/*
 * Registers a server's handlers against a route table (the provider's, src/api/routes.ts, or the
 * gateway's, src/api/gateway.ts): the entry's schemas validate the request
 * (fastify-type-provider-zod's validatorCompiler, set by the app) and check the answer
 * (wireSerializerCompiler), so a server can neither take nor give what its table does not declare.
 * Here, not in src/node, because the provider and the gateway (src/gateway) both serve tables.
 */

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What the route's body is called in error fields (src/node/problem.ts). */
    bodyName?: string;
  }
}

type Parsed<S> = S extends z.ZodType ? z.output<S> : undefined;

/** A request as the handler sees it: params, query and body parsed by the route's schemas. */
export type ApiRequest<R extends ApiRoute> = Omit<FastifyRequest, 'params' | 'query' | 'body'> & {
  readonly params: Parsed<R['params']>;
  readonly query: Parsed<R['query']>;
  /** A route that also takes raw bytes validates its body itself. */
  readonly body: R['rawBody'] extends RawContent ? unknown : Parsed<R['body']>;
};

/** What a JSON route answers: its schema's wire form. */
export type Answer<R extends ApiRoute> = R['response'] extends z.ZodType ? z.input<R['response']> : never;

export type Handler<R extends ApiRoute> = (
  request: ApiRequest<R>,
  reply: FastifyReply,
) => Promise<Answer<R> | FastifyReply>;

export type RouteHooks = Pick<RouteShorthandOptions, 'onRequest' | 'preValidation' | 'onResponse'>;

/** Registers `handler` for `route` in `app`, whose prefix (`/v1`) the route's path starts with. */
export function serve<R extends ApiRoute>(
  app: FastifyInstance,
  route: R,
  handler: Handler<R>,
  hooks: RouteHooks = {},
): void {
  if (!route.path.startsWith(app.prefix))
    throw new Error(`${route.path} can't be served under the prefix ${app.prefix}`);
  const answer = isJsonAnswer(route) ? route.response : undefined;
  const statuses = [200, ...(route.alsoAnswers ?? [])];
  app.route({
    method: route.method,
    url: route.path.slice(app.prefix.length),
    schema: {
      ...(route.params ? { params: route.params } : {}),
      ...(route.query ? { querystring: route.query } : {}),
      ...(route.body && !route.rawBody ? { body: route.body } : {}),
      ...(answer ? { response: Object.fromEntries(statuses.map((status) => [status, answer])) } : {}),
    },
    config: { bodyName: route.bodyName ?? 'body', ...(route.unlimited ? { rateLimit: false } : {}) },
    ...hooks,
    handler: handler as unknown as (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
  });
}

/**
 * Checks every JSON answer against its route's schema before it leaves: one that does not follow
 * it is an INTERNAL error naming the field (`response.receipts.3.inputs`), answered as 500, never
 * sent. The check parses the wire form the handler built (our schemas decode wire to domain, with
 * transforms that cannot run backwards, so fastify-type-provider-zod's encoding serializer does
 * not apply) and sends that form as it is.
 */
export const wireSerializerCompiler: FastifySerializerCompiler<z.ZodType> =
  ({ schema, method, url }) =>
  (data) => {
    parseWith(schema, data, { code: 'INTERNAL', root: 'response', label: `the answer of ${method} ${url}:` });
    return JSON.stringify(data);
  };
