import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  BINARY_TYPE,
  inferHeadSchema,
  inferRequestSchema,
  parseWire,
  RECEIPT_HEADER,
  REQUEST_HEADER,
  type InferHead,
  type InferResponse,
} from '../../protocol/api.js';
import { decodeTensors, encodeTensors, tensorsToJson } from '../../protocol/encoding.js';
import { GlassboxError } from '../../protocol/errors.js';
import { inputsFromJson } from '../../protocol/inputs.js';
import type { NodeContext } from '../context.js';

/*
 * POST /v1/infer (src/protocol/api.ts). JSON: an InferRequest. Binary: the canonical encoding of the
 * inputs as an application/octet-stream body, the rest of the request as JSON in the
 * `glassbox-request` header; with `accept: application/octet-stream` the outputs come back the same
 * way and the receipt in the `glassbox-receipt` header. The zod schemas of src/protocol/api.ts are
 * the validation (they name the offending field), so the route declares no body schema of its own.
 */

export function inferRoute(app: FastifyInstance, ctx: NodeContext): void {
  // A voucher that came with the request is written once the answer has left (src/node/payments.ts).
  const onResponse = (request: FastifyRequest, _reply: unknown, done: () => void) => {
    try {
      ctx.payments.flush();
    } catch (error) {
      request.log.error({ err: error }, 'could not write the vouchers received with requests');
    }
    done();
  };
  app.post('/v1/infer', { onResponse }, async (request, reply) => {
    if (ctx.state() !== 'ready')
      throw new GlassboxError('NODE_UNAVAILABLE', `the provider is ${ctx.state()}; retry later`);
    const binary = isBinary(request);
    let head: InferHead;
    let read: Parameters<NodeContext['service']['infer']>[1];
    if (binary) {
      head = parseWire(inferHeadSchema, parseHeader(request), REQUEST_HEADER);
      const body = request.body as Buffer;
      read = () => decodeTensors(new Uint8Array(body.buffer, body.byteOffset, body.byteLength));
    } else {
      const body = parseWire(inferRequestSchema, request.body, 'request');
      head = body;
      read = (pkg) => inputsFromJson(pkg.manifest.inputs, body.inputs);
    }
    const answer = await ctx.service.infer(head, read);
    if (answer.replayed) reply.header('glassbox-replayed', 'true');
    if (wantsBinary(request)) {
      const bytes = encodeTensors(answer.outputs);
      return reply
        .type(BINARY_TYPE)
        .header(RECEIPT_HEADER, JSON.stringify(answer.receipt))
        .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    }
    const response: InferResponse = { outputs: tensorsToJson(answer.outputs), receipt: answer.receipt };
    return reply.send(response);
  });
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
