import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Address } from 'viem';
import { routes } from '../../api/routes.js';
import {
  BINARY_TYPE,
  inferHeadSchema,
  inferRequestSchema,
  parseWire,
  RECEIPT_HEADER,
  REQUEST_HEADER,
  type InferResponse,
} from '../../protocol/api.js';
import { decodeTensors, tensorsToJson } from '../../protocol/encoding.js';
import { GlassboxError } from '../../protocol/errors.js';
import { inputsFromJson } from '../../protocol/inputs.js';
import type { NodeContext } from '../context.js';
import type { ProvenRequest } from '../infer.js';
import { serve } from '../../api/serve.js';

/*
 * POST /v1/infer (src/api/routes.ts). JSON: an InferRequest. Binary: the canonical encoding of the
 * inputs as an application/octet-stream body, the rest of the request as JSON in the
 * `glassbox-request` header; with `accept: application/octet-stream` the outputs come back the same
 * way and the receipt in the `glassbox-receipt` header. The route's two body forms are validated
 * here, in `preValidation`, with the route table's schemas (they name the offending field): the
 * validator can't pick a schema by content type.
 *
 * The client's signature is checked in `preValidation`, before the rate limiter (a `preHandler`,
 * src/node/app.ts) computes its key: the limiter counts a request against the client only once the
 * client is proven, and against the sender's IP otherwise, so requests forged in a victim's name
 * never use up the victim's rate. A request that fails here is refused in the handler, after the
 * limiter has counted it against the IP.
 */

type Outcome = { readonly proven: ProvenRequest } | { readonly error: unknown };
const outcomes = new WeakMap<FastifyRequest, Outcome>();

/** The client a request to /v1/infer proved with its signature, if it did. */
export function provenClient(request: FastifyRequest): Address | undefined {
  const outcome = outcomes.get(request);
  return outcome && 'proven' in outcome ? outcome.proven.client : undefined;
}

export async function inferRoutes(app: FastifyInstance, { ctx }: { ctx: NodeContext }): Promise<void> {
  // A voucher that came with a request answered without a receipt is written once the answer has
  // left; the others were written with the receipts (src/node/payments.ts).
  const onResponse = (request: FastifyRequest, _reply: unknown, done: () => void) => {
    try {
      ctx.payments.flush();
    } catch (error) {
      request.log.error({ err: error }, 'could not write the vouchers received with requests');
    }
    done();
  };
  const preValidation = async (request: FastifyRequest) => {
    try {
      outcomes.set(request, { proven: await authenticate(ctx, request) });
    } catch (error) {
      outcomes.set(request, { error });
    }
  };
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const outcome = outcomes.get(request);
    if (!outcome || 'error' in outcome)
      throw outcome?.error ?? new Error('the request was not authenticated');
    const answer = await ctx.service.infer(outcome.proven);
    if (answer.replayed) reply.header('glassbox-replayed', 'true');
    if (wantsBinary(request)) {
      const bytes = answer.outputBytes;
      return reply
        .type(BINARY_TYPE)
        .header(RECEIPT_HEADER, JSON.stringify(answer.receipt))
        .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    }
    const response: InferResponse = { outputs: tensorsToJson(answer.outputs), receipt: answer.receipt };
    return reply.send(response);
  };
  serve(app, routes.infer, handler, { preValidation, onResponse });
}

/** Parses the request (either transport), decodes its inputs and proves its client. */
async function authenticate(ctx: NodeContext, request: FastifyRequest): Promise<ProvenRequest> {
  if (ctx.state() !== 'ready')
    throw new GlassboxError('NODE_UNAVAILABLE', `the provider is ${ctx.state()}; retry later`);
  if (isBinary(request)) {
    const head = parseWire(inferHeadSchema, parseHeader(request), REQUEST_HEADER);
    const body = request.body as Buffer;
    const bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    // decodeTensors takes only a canonical encoding, whole: the body is the inputs' encoding as is
    return ctx.service.authenticate(head, () => ({ tensors: decodeTensors(bytes), bytes }));
  }
  const body = parseWire(inferRequestSchema, request.body, 'request');
  return ctx.service.authenticate(body, (pkg) => ({
    tensors: inputsFromJson(pkg.manifest.inputs, body.inputs),
  }));
}

function isBinary(request: FastifyRequest): boolean {
  return (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase() === BINARY_TYPE;
}

function wantsBinary(request: FastifyRequest): boolean {
  return (request.headers.accept ?? '').toLowerCase().includes(BINARY_TYPE);
}

function parseHeader(request: FastifyRequest): unknown {
  const raw = request.headers[REQUEST_HEADER];
  if (typeof raw !== 'string')
    throw new GlassboxError(
      'REQUEST_INVALID',
      `binary requests carry the request as JSON in the ${REQUEST_HEADER} header`,
      {
        field: REQUEST_HEADER,
      },
    );
  try {
    return JSON.parse(raw);
  } catch {
    throw new GlassboxError('REQUEST_INVALID', `the ${REQUEST_HEADER} header is not valid JSON`, {
      field: REQUEST_HEADER,
    });
  }
}
