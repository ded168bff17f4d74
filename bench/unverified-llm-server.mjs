/*
 * A plain, unverified OpenAI-style chat server: fastify and Glassbox's own LLM engine, nothing else
 * (no session key, no receipt, no signature, no disk write, no voucher). The baseline a verified
 * provider's /v1/chat/completions is measured against: what streaming a model's tokens over HTTP
 * costs anyway. Run by bench/llm.bench.ts in its own process:
 * `node bench/unverified-llm-server.mjs <model folder>`; prints its port, then serves
 *
 *   POST /v1/chat/completions  {messages, max_tokens, temperature, seed, stream: true}: the same
 *                              chat.completion.chunk SSE a provider sends, then `data: [DONE]`.
 *
 * The engine, the request normalization and the sampler are the project's (dist/: `npm run build`
 * first), under the engine's default profile, so the difference to a provider is the verification.
 */
import Fastify from 'fastify';
import { completeLlmRequest, parseLlmRequest } from '../dist/protocol/llm.js';
import { defaultEngines } from '../dist/runtime/index.js';
import { createMemoryStore, loadModel, packModelFolder } from '../dist/store/index.js';

const [dir] = process.argv.slice(2);
if (!dir) throw new Error('usage: node bench/unverified-llm-server.mjs <model folder>');
const store = createMemoryStore();
const pkg = await loadModel(store, (await packModelFolder(store, dir)).id);
const engines = defaultEngines();
const engine = engines.tokens(pkg);
await engine.load(pkg);

const app = Fastify({ bodyLimit: 1 << 20 });
app.post('/v1/chat/completions', async (request, reply) => {
  const body = /** @type {any} */ (request.body);
  const draft = parseLlmRequest({
    kind: 'chat',
    model: pkg.id,
    messages: body.messages,
    max_tokens: body.max_tokens,
    temperature: body.temperature,
    seed: body.seed,
  });
  const prompt = await engine.prompt(pkg, { kind: 'chat', messages: draft.messages });
  const llm = completeLlmRequest(draft, {
    promptTokens: prompt.ids.length,
    contextLength: pkg.manifest.llm.contextLength,
  });
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const id = `chatcmpl-${Date.now()}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (choices) =>
    res.write(
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: pkg.id, choices })}\n\n`,
    );
  chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]);
  for await (const event of engine.generate(pkg, prompt.ids, { params: llm.params })) {
    if (event.type === 'token') {
      if (event.text) chunk([{ index: 0, delta: { content: event.text }, finish_reason: null }]);
    } else chunk([{ index: 0, delta: {}, finish_reason: event.finishReason }]);
  }
  res.end('data: [DONE]\n\n');
});
await app.listen({ port: 0, host: '127.0.0.1' });
console.log(app.server.address().port);
