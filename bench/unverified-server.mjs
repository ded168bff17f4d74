/*
 * A plain, unverified HTTP inference server: fastify and onnxruntime-node, nothing else (no
 * receipt, no voucher, no signature, no disk write). The baseline a verified provider is measured
 * against: what serving a model over HTTP costs anyway. Run by bench/unverified-server.ts in its
 * own process: `node bench/unverified-server.mjs <model.onnx>`; prints its port, then serves
 *
 *   POST /infer  JSON {inputs: {name: {dtype, shape, data}}} or the canonical tensor encoding
 *                (application/octet-stream); answers {outputs} as JSON, or the outputs' canonical
 *                encoding with `accept: application/octet-stream`.
 *
 * The tensor codecs are the project's (dist/protocol/encoding.js: `npm run build` first), so both
 * transports carry exactly what a Glassbox provider's do.
 */
import Fastify from 'fastify';
import ort from 'onnxruntime-node';
import { decodeTensors, encodeTensors, tensorsFromJson, tensorsToJson } from '../dist/protocol/encoding.js';

const BINARY = 'application/octet-stream';
const BODY_LIMIT = 1 << 30;

const [modelPath] = process.argv.slice(2);
if (!modelPath) throw new Error('usage: node bench/unverified-server.mjs <model.onnx>');
// The engine's default profile (src/runtime/onnx/engine.ts): optimisation basic, sequential.
const session = await ort.InferenceSession.create(modelPath, {
  executionProviders: ['cpu'],
  graphOptimizationLevel: 'basic',
  executionMode: 'sequential',
  interOpNumThreads: 1,
});

const app = Fastify({ bodyLimit: BODY_LIMIT });
app.addContentTypeParser(BINARY, { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_r, body, done) =>
  done(null, body),
);
app.post('/infer', async (request, reply) => {
  const binary = (request.headers['content-type'] ?? '').startsWith(BINARY);
  const body = /** @type {any} */ (request.body);
  const inputs = binary
    ? decodeTensors(new Uint8Array(body.buffer, body.byteOffset, body.byteLength))
    : tensorsFromJson(body.inputs, 'inputs');
  const feeds = Object.fromEntries(
    Object.entries(inputs).map(([name, t]) => [name, new ort.Tensor(t.dtype, t.data, [...t.shape])]),
  );
  const raw = await session.run(feeds);
  const outputs = Object.fromEntries(
    Object.entries(raw).map(([name, v]) => [
      name,
      { dtype: v.type, shape: v.dims.map(Number), data: v.data },
    ]),
  );
  if ((request.headers.accept ?? '').includes(BINARY)) {
    const bytes = encodeTensors(outputs);
    return reply.type(BINARY).send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  return { outputs: tensorsToJson(outputs) };
});
await app.listen({ port: 0, host: '127.0.0.1' });
console.log(app.server.address().port);
