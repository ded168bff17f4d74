import { request as httpRequest } from 'node:http';
import OpenAI from 'openai';
import pino from 'pino';
import type { Address } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatCompletionChunk } from '../../src/api/openai.js';
import { admitRuntime } from '../../src/chain/index.js';
import { createGateway, GATEWAY_HEADERS, type Gateway, type GatewayExtra } from '../../src/gateway/index.js';
import { createNode, parseNodeConfig, type GlassboxNode } from '../../src/node/index.js';
import { dataHash } from '../../src/protocol/data.js';
import {
  llmInputData,
  llmOutputData,
  llmParamsHash,
  tokenPrice,
  type LlmRequest,
} from '../../src/protocol/llm.js';
import { modelDigest, type ModelPackage } from '../../src/protocol/manifest.js';
import { recoverReceiptSigner, signedReceiptFromJson } from '../../src/protocol/receipt.js';
import { runtimeProfileJson } from '../../src/protocol/runtime-profile.js';
import { defaultEngines, type TokenEngine } from '../../src/runtime/index.js';
import { createEngines } from '../../src/runtime/registry.js';
import { closeClient, createClient, type Client } from '../../src/sdk/index.js';
import { llmExample } from '../support/examples.js';
import {
  CLIENT,
  fundClients,
  nodeConfig,
  PROVIDER,
  startTestChain,
  tempDir,
  type TestChain,
} from '../node/support.js';

/*
 * The gateway (issue 14, D4) with the official `openai` client, in front of two real providers on
 * anvil serving the real tiny-chat model (onnxruntime on 1 thread, SQLite, HTTP on loopback): the
 * same list the provider's OpenAI routes pass (test/node/openai.test.ts), and what the gateway
 * adds: every receipt behind the tokens in the answer, verified here again from the token ids it
 * carries; the x-glassbox-* headers; a quorum of 2.
 */

const TOKEN_PRICE = 20_000n;
const INPUT_PRICE = 3_000n;
const PRICES = { inputPrice: INPUT_PRICE, outputPrice: TOKEN_PRICE };
const MILLION = 1_000_000n;
/** Twice both prices: every provider is under it. */
const CAP = { input: 2n * INPUT_PRICE * MILLION, output: 2n * TOKEN_PRICE * MILLION };

let chain: TestChain;
const nodes: GlassboxNode[] = [];
const dirs: { remove(): Promise<void> }[] = [];
let client: Client;
let gateway: Gateway;
let quorum: Gateway;
let pkg: ModelPackage;
let openai: OpenAI;
/** Tokens the providers' engines generated, per generation. */
const generated: number[] = [];

/** The real engines on one thread, the token engine's generate counted. */
function countingEngines() {
  const engines = defaultEngines({ onnx: { intraOpNumThreads: 1 }, llm: { intraOpNumThreads: 1 } });
  return createEngines(engines.list.map((e) => (e.kind === 'tokens' ? counted(e) : e)));
}

function counted(engine: TokenEngine): TokenEngine {
  return {
    ...engine,
    async *generate(p, promptIds, options) {
      const at = generated.push(0) - 1;
      for await (const event of engine.generate(p, promptIds, options)) {
        if (event.type === 'token') generated[at]! += 1;
        yield event;
      }
    },
  };
}

const silent = () => pino({ level: 'silent' });

beforeAll(async () => {
  chain = await startTestChain();
  await fundClients(chain);
  const llm = defaultEngines().list.find((e) => e.kind === 'tokens')!;
  await admitRuntime(chain.as(0), runtimeProfileJson(llm.profile));
  const tiny = await llmExample('tiny-chat');
  pkg = tiny.pkg;
  const models = [{ model: tiny.dir, price: TOKEN_PRICE.toString(), inputPrice: INPUT_PRICE.toString() }];
  for (const i of [PROVIDER[0], PROVIDER[1]]) {
    const dir = await tempDir();
    dirs.push(dir);
    const config = parseNodeConfig(nodeConfig(chain, i, dir.dir, { models }));
    nodes.push(await (await createNode(config, { engines: countingEngines() })).start());
  }
  client = await createClient({
    rpcUrl: chain.anvil.rpcUrl,
    chainId: chain.anvil.chainId,
    deployment: chain.deployment,
    account: chain.key(CLIENT[0]),
  });
  gateway = await createGateway({ client, maxPrice: CAP, logger: silent(), port: 0 });
  quorum = await createGateway({ client, maxPrice: CAP, mode: { quorum: 2 }, logger: silent(), port: 0 });
  openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await quorum?.close();
  if (client) await closeClient(client);
  await Promise.all(nodes.map((n) => n.stop().catch(() => undefined)));
  await chain?.stop();
  await Promise.all(dirs.map((d) => d.remove()));
});

const MESSAGES = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'Name three colours.' },
];

const extraOf = (answer: unknown) => (answer as { glassbox: GatewayExtra }).glassbox;
const providers = (): Address[] => nodes.map((n) => n.address);

function chat(over: Partial<OpenAI.ChatCompletionCreateParamsNonStreaming> = {}, ai = openai) {
  return ai.chat.completions.create({
    model: pkg.manifest.name,
    messages: MESSAGES,
    max_tokens: 24,
    seed: 7,
    temperature: 0.8,
    ...over,
  });
}

async function streamChat(over: Partial<OpenAI.ChatCompletionCreateParamsStreaming> = {}) {
  const stream = await openai.chat.completions.create({
    model: pkg.manifest.name,
    messages: MESSAGES,
    max_tokens: 24,
    seed: 7,
    temperature: 0.8,
    ...over,
    stream: true,
  });
  const chunks: ChatCompletionChunk<GatewayExtra>[] = [];
  for await (const chunk of stream) chunks.push(chunk as unknown as ChatCompletionChunk<GatewayExtra>);
  return chunks;
}

const textOf = (chunks: ChatCompletionChunk<GatewayExtra>[]) =>
  chunks.flatMap((c) => c.choices.map((choice) => choice.delta.content ?? '')).join('');

/** The request the provider hashed, rebuilt from what the client sent and the disclosed seed. */
function normalizedChat(body: { max_tokens: number; temperature: number }, seed: string): LlmRequest {
  return {
    kind: 'chat',
    messages: MESSAGES,
    model: pkg.id,
    params: {
      temperature: body.temperature,
      topP: 1,
      topK: 0,
      seed: BigInt(seed),
      maxTokens: body.max_tokens,
      stop: [],
    },
  } as LlmRequest;
}

/** Every receipt of an answer checked from scratch: signer, client, model, hashes of the ids, price. */
async function expectReceiptsVerify(extra: GatewayExtra, request?: LlmRequest): Promise<void> {
  const signers = nodes.map((n) => n.signer);
  expect(extra.receipts.length).toBeGreaterThan(0);
  expect(extra.report.ok).toBe(true);
  for (const json of extra.receipts) {
    const signed = signedReceiptFromJson(json);
    const r = signed.receipt;
    const signer = await recoverReceiptSigner(signed, {
      chainId: chain.anvil.chainId,
      verifyingContract: chain.deployment.contracts.receiptLedger,
    });
    expect(signers).toContain(signer);
    expect(r.client).toBe(client.address);
    expect(providers()).toContain(r.provider);
    expect(r.model).toBe(modelDigest(pkg.id));
    expect(r.outputHash).toBe(dataHash(llmOutputData(extra.outputTokenIds)));
    if (request) {
      expect(r.inputHash).toBe(dataHash(llmInputData(request, extra.promptTokenIds)));
      expect(r.paramsHash).toBe(llmParamsHash(request.params));
    }
    expect(r.price).toBe(
      tokenPrice(
        { promptTokens: extra.promptTokenIds.length, completionTokens: extra.outputTokenIds.length },
        PRICES,
      ),
    );
  }
}

describe('the gateway: the official client', () => {
  it('chat, non-stream: a ChatCompletion whose receipt verifies, and the x-glassbox-* headers', async () => {
    const { data: answer, response } = await chat().withResponse();
    expect(answer.object).toBe('chat.completion');
    const choice = answer.choices[0]!;
    expect(choice.message.role).toBe('assistant');
    expect(['stop', 'length']).toContain(choice.finish_reason);
    const extra = extraOf(answer);
    expect(extra.seed).toBe('7');
    expect(answer.usage).toEqual({
      prompt_tokens: extra.promptTokenIds.length,
      completion_tokens: extra.outputTokenIds.length,
      total_tokens: extra.promptTokenIds.length + extra.outputTokenIds.length,
    });
    await expectReceiptsVerify(extra, normalizedChat({ max_tokens: 24, temperature: 0.8 }, '7'));
    expect(extra.receipts).toHaveLength(1);
    expect(extra.segments).toEqual([
      expect.objectContaining({ fromToken: 0, toToken: extra.outputTokenIds.length }),
    ]);
    expect(extra.report.receipts.map((r) => r.requestId)).toEqual([extra.receipts[0]!.receipt.requestId]);
    expect(response.headers.get(GATEWAY_HEADERS.providers)).toBe(extra.segments[0]!.provider);
    expect(response.headers.get(GATEWAY_HEADERS.receipts)).toBe('1');
    expect(response.headers.get(GATEWAY_HEADERS.verified)).toBe('true');
    expect(response.headers.get(GATEWAY_HEADERS.mode)).toBe('receipt');
  });

  it('stream: role first, finish_reason last, the receipts in a final chunk; the text equals the non-stream text for the seed', async () => {
    const whole = await chat({ seed: 11 });
    const chunks = await streamChat({ seed: 11 });
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const choiceChunks = chunks.filter((c) => c.choices.length > 0);
    expect(choiceChunks.at(-1)!.choices[0]!.finish_reason).toBe(whole.choices[0]!.finish_reason);
    expect(choiceChunks.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null)).toBe(true);
    expect(textOf(chunks)).toBe(whole.choices[0]!.message.content);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.glassbox?.seed).toBe('11');
    expect(last.glassbox?.outputTokenIds).toEqual(extraOf(whole).outputTokenIds);
    await expectReceiptsVerify(last.glassbox!, normalizedChat({ max_tokens: 24, temperature: 0.8 }, '11'));
    expect(chunks.every((c) => !('usage' in c))).toBe(true);
  });

  it("chat.completions.stream() (openai-node's strict stream helper): its final completion is the non-stream answer", async () => {
    const whole = await chat({ seed: 12, logprobs: true, top_logprobs: 2 });
    const runner = openai.chat.completions.stream({
      model: pkg.manifest.name,
      messages: MESSAGES,
      max_tokens: 24,
      seed: 12,
      temperature: 0.8,
      logprobs: true,
      top_logprobs: 2,
    });
    const final = await runner.finalChatCompletion();
    expect(final.choices[0]!.message.content).toBe(whole.choices[0]!.message.content);
    expect(final.choices[0]!.finish_reason).toBe(whole.choices[0]!.finish_reason);
    expect(final.choices[0]!.logprobs?.content?.map((t) => t.token)).toEqual(
      whole.choices[0]!.logprobs!.content!.map((t) => t.token),
    );
  });

  it('the raw stream: text/event-stream with x-glassbox-mode, data lines, the glassbox chunk just before data: [DONE]', async () => {
    const res = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: pkg.id, messages: MESSAGES, max_tokens: 4, stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.headers.get(GATEWAY_HEADERS.mode)).toBe('receipt');
    const events = (await res.text()).split('\n\n').filter(Boolean);
    expect(events.every((e) => e.startsWith('data: '))).toBe(true);
    expect(events.at(-1)).toBe('data: [DONE]');
    const last = JSON.parse(events.at(-2)!.slice(6)) as ChatCompletionChunk<GatewayExtra>;
    expect(last.choices).toEqual([]);
    expect(last.glassbox?.receipts).toHaveLength(1);
    expect(last.glassbox?.seed).toMatch(/^\d+$/); // none sent: the SDK picked one and says which
    expect(events.some((e) => e.includes('"error"'))).toBe(false);
  });

  it('stream_options.include_usage: a usage chunk with choices [], usage null on every other', async () => {
    const chunks = await streamChat({ stream_options: { include_usage: true } });
    const withUsage = chunks.filter((c) => c.usage);
    expect(withUsage).toHaveLength(1);
    expect(withUsage[0]!.choices).toEqual([]);
    expect(chunks.filter((c) => !c.usage).every((c) => c.usage === null)).toBe(true);
    expect(withUsage[0]!.usage!.completion_tokens).toBe(chunks.at(-1)!.glassbox!.outputTokenIds.length);
  });

  it('stop: the text ends before the stop string, finish_reason stop', async () => {
    const free = await chat({ max_tokens: 40, temperature: 0 });
    const text = free.choices[0]!.message.content!;
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
    expect(stop.length).toBe(2);
    const stopped = await chat({ max_tokens: 40, temperature: 0, stop: [stop] });
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    expect(stopped.choices[0]!.message.content).toBe(text.slice(0, text.indexOf(stop)));
    expect(extraOf(stopped).outputTokenIds.length).toBeLessThan(extraOf(free).outputTokenIds.length);
  });

  it('max_tokens (and max_completion_tokens): finish_reason length at exactly that many tokens', async () => {
    const a = await chat({ max_tokens: 5, temperature: 0 });
    expect(a.choices[0]!.finish_reason).toBe('length');
    expect(a.usage!.completion_tokens).toBe(5);
    const b = await chat({ max_tokens: undefined, max_completion_tokens: 6, temperature: 0 });
    expect(b.choices[0]!.finish_reason).toBe('length');
    expect(b.usage!.completion_tokens).toBe(6);
  });

  it('seed: the same seed gives the same text, another seed another; none: the gateway discloses the one picked', async () => {
    const [a, b, c] = await Promise.all([
      chat({ seed: 99, temperature: 1 }),
      chat({ seed: 99, temperature: 1 }),
      chat({ seed: 100, temperature: 1 }),
    ]);
    expect(a.choices[0]!.message.content).toBe(b.choices[0]!.message.content);
    expect(extraOf(a).outputTokenIds).not.toEqual(extraOf(c).outputTokenIds);
    const picked = await chat({ seed: undefined, temperature: 1 });
    const seed = extraOf(picked).seed;
    expect(seed).toMatch(/^\d+$/);
    const again = await chat({ seed: seed as unknown as number, temperature: 1 });
    expect(extraOf(again).outputTokenIds).toEqual(extraOf(picked).outputTokenIds);
  });

  it('models.list and models.retrieve: the LLM models on chain, with their providers and prices', async () => {
    const list = await openai.models.list();
    expect(list.data.map((m) => m.id)).toEqual([pkg.id]); // iris is no LLM; only tiny-chat is offered
    const entry = list.data[0]! as OpenAI.Model & {
      glassbox: { providers: number; pricePerMillion: object };
    };
    expect(entry.object).toBe('model');
    expect(entry.glassbox.providers).toBe(2);
    expect(entry.glassbox.pricePerMillion).toEqual({
      input: (INPUT_PRICE * MILLION).toString(),
      output: (TOKEN_PRICE * MILLION).toString(),
    });
    expect((await openai.models.retrieve(pkg.id)).id).toBe(pkg.id);
    expect((await openai.models.retrieve(pkg.manifest.name)).id).toBe(pkg.id);
    await expect(openai.models.retrieve('no-such-model')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('logprobs in the chat format: token, logprob, bytes, top_logprobs', async () => {
    const answer = await chat({ logprobs: true, top_logprobs: 3, max_tokens: 6, temperature: 0 });
    const content = answer.choices[0]!.logprobs!.content!;
    expect(content.length).toBe(6);
    for (const t of content) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(Array.isArray(t.bytes)).toBe(true);
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.logprob).toBeCloseTo(t.top_logprobs[0]!.logprob, 5); // greedy: the most likely token
    }
    const streamed = await streamChat({ logprobs: true, top_logprobs: 3, max_tokens: 6, temperature: 0 });
    const tokens = streamed.flatMap((c) => c.choices.flatMap((ch) => ch.logprobs?.content ?? []));
    expect(tokens.map((t) => t.token)).toEqual(content.map((t) => t.token));
  });

  it('completions: text_completion, whole and streamed alike, with a receipt', async () => {
    const body = { model: pkg.id, prompt: 'Once upon a time', max_tokens: 12, seed: 3, temperature: 0.7 };
    const whole = await openai.completions.create(body);
    expect(whole.object).toBe('text_completion');
    expect(whole.choices[0]!.finish_reason).toBe('length');
    await expectReceiptsVerify(extraOf(whole));
    const stream = await openai.completions.create({ ...body, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(whole.choices[0]!.text);
  });
});

describe('the gateway: quorum', () => {
  it('--quorum 2, non-stream: two receipts from two providers with the same token ids', async () => {
    const ai = new OpenAI({ baseURL: `${quorum.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const { data: answer, response } = await chat({ seed: 21 }, ai).withResponse();
    const extra = extraOf(answer);
    expect(extra.receipts).toHaveLength(2);
    expect(new Set(extra.receipts.map((r) => r.receipt.provider)).size).toBe(2);
    await expectReceiptsVerify(extra, normalizedChat({ max_tokens: 24, temperature: 0.8 }, '21'));
    expect(extra.report.mode).toBe('quorum');
    expect(response.headers.get(GATEWAY_HEADERS.receipts)).toBe('2');
    expect(response.headers.get(GATEWAY_HEADERS.mode)).toBe('quorum');
    expect(response.headers.get(GATEWAY_HEADERS.providers)?.split(',').sort()).toEqual(
      [...new Set(extra.receipts.map((r) => r.receipt.provider))].sort(),
    );
  });

  it('a stream under a quorum: 400 naming stream, before any provider is asked', async () => {
    const ai = new OpenAI({ baseURL: `${quorum.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const before = generated.length;
    const error = await ai.chat.completions
      .create({ model: pkg.id, messages: MESSAGES, max_tokens: 4, stream: true })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('stream');
    expect(generated.length).toBe(before);
  });
});

describe('the gateway: errors in OpenAI shape', () => {
  it('an unknown model: 404 NotFoundError, code model_not_found, param model', async () => {
    const error = await chat({ model: 'no-such-model' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    const e = error as InstanceType<typeof OpenAI.NotFoundError>;
    expect(e.code).toBe('model_not_found');
    expect(e.param).toBe('model');
  });

  it('bad input: 400 naming the field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ messages: [{ role: 'user', content: { text: 'hi' } }] }, 'messages.0.content'],
      [{ max_tokens: 0 }, 'max_tokens'],
      [{ tools: [{ type: 'web_search_preview' }] }, 'tools.0.type'],
      [{ n: 3 }, 'n'],
      [{ temperature: 3 }, 'temperature'],
    ];
    for (const [over, param] of cases) {
      const error = await chat(over as never).catch((e: unknown) => e);
      expect(error, param).toBeInstanceOf(OpenAI.BadRequestError);
      expect((error as InstanceType<typeof OpenAI.BadRequestError>).param, param).toBe(param);
    }
  });

  it('a prompt over the context: every provider refuses it, and so does the gateway, with a 400', async () => {
    const error = await chat({ messages: [{ role: 'user', content: 'word '.repeat(5000) }] }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as Error).message).toMatch(/context/);
  });

  it('a 10 MB body: 413 naming the body', async () => {
    const res = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: pkg.id,
        messages: [{ role: 'user', content: 'x'.repeat(10 * 1024 * 1024) }],
      }),
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { param: string } }).error.param).toBe('body');
  });

  it('a price cap under every offer: 503 naming why, and no provider is asked', async () => {
    const cheap = await createGateway({
      client,
      maxPrice: { input: INPUT_PRICE * MILLION, output: TOKEN_PRICE * MILLION - 1n },
      logger: silent(),
      port: 0,
    });
    try {
      const before = generated.length;
      const ai = new OpenAI({ baseURL: `${cheap.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const error = await chat({}, ai).catch((e: unknown) => e);
      expect((error as { status?: number }).status).toBe(503);
      expect((error as Error).message).toMatch(/price/);
      expect(generated.length).toBe(before);
    } finally {
      await cheap.close();
    }
  });

  it('--api-key: 401 without it or with another, served with it', async () => {
    const locked = await createGateway({
      client,
      maxPrice: CAP,
      apiKey: 'sesame',
      logger: silent(),
      port: 0,
    });
    try {
      for (const key of ['wrong', 'sesam']) {
        const ai = new OpenAI({ baseURL: `${locked.url}/v1`, apiKey: key, maxRetries: 0 });
        await expect(ai.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
      }
      expect((await fetch(`${locked.url}/v1/models`)).status).toBe(401);
      const ai = new OpenAI({ baseURL: `${locked.url}/v1`, apiKey: 'sesame', maxRetries: 0 });
      expect((await ai.models.list()).data.map((m) => m.id)).toEqual([pkg.id]);
    } finally {
      await locked.close();
    }
  });
});

describe('the gateway: disconnects', () => {
  it('a client that goes away mid-stream stops the generation at the provider', async () => {
    const maxTokens = 1500;
    const before = generated.length;
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
      });
      req.on('error', () => undefined);
      req.on('response', (res) => {
        let events = 0;
        res.on('data', (data: Buffer) => {
          events += data
            .toString()
            .split('\n\n')
            .filter((e) => e.startsWith('data: {')).length;
          if (events >= 8) {
            req.destroy();
            resolve();
          }
        });
        res.on('error', () => undefined);
        res.on('end', () => reject(new Error('the stream ended before the client left')));
      });
      req.end(
        JSON.stringify({
          model: pkg.id,
          messages: MESSAGES,
          max_tokens: maxTokens,
          temperature: 0,
          stream: true,
        }),
      );
    });
    // The provider's generation ends soon after the gateway's SDK call is aborted.
    let made = 0;
    for (let i = 0; i < 100; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const now = generated.slice(before).reduce((a, b) => a + b, 0);
      if (now === made && now > 0) break;
      made = now;
    }
    expect(made).toBeGreaterThan(0);
    expect(made).toBeLessThan(maxTokens / 4);
  });
});
