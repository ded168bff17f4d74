import type { FastifyReply, FastifyRequest } from 'fastify';
import { PROBLEM_TYPE } from '../api/schemas.js';
import { statusOf, toGlassboxError, type ProblemLimits } from '../api/problem.js';
import { GlassboxError } from '../protocol/errors.js';

/*
 * Every error the node answers is problem+json `{code, message, field?, details?}` (docs/protocol.md,
 * Conventions). The status comes from the code (src/api/problem.ts); the code is the contract, the
 * status a courtesy.
 */

export function sendProblem(reply: FastifyReply, error: GlassboxError): FastifyReply {
  return reply.status(statusOf(error.code, error.field)).type(PROBLEM_TYPE).send(error.toProblem());
}

export const errorHandler =
  (limits: ProblemLimits) =>
  (error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const problem = toGlassboxError(error, limits, request.routeOptions.config.bodyName);
    if (reply.statusCode >= 500 || statusOf(problem.code, problem.field) >= 500)
      request.log.error({ err: error }, 'request failed');
    else request.log.info({ code: problem.code, field: problem.field }, 'request refused');
    return sendProblem(reply, problem);
  };

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendProblem(
    reply,
    new GlassboxError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`),
  );
}
