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
import { defaultEngines } from '../../src/runtime/index.js';
import { closeClient, createClient, type Client } from '../../src/sdk/index.js';
import { llmExample } from '../support/examples.js';
import {
  countingEngines,
  leaveMidStream,
  MESSAGES,
  normalizedChat,
  openAiCalls,
  openAiClientList,
  textOf,
} from '../support/openai-list.js';
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
    nodes.push(await (await createNode(config, { engines: countingEngines(generated) })).start());
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

const extraOf = (answer: unknown) => (answer as { glassbox: GatewayExtra }).glassbox;
const providers = (): Address[] => nodes.map((n) => n.address);

const target = () => ({ openai, name: pkg.manifest.name, id: pkg.id });
const { chat, streamChat } = openAiCalls(target);

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
  openAiClientList(target);

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
    await expectReceiptsVerify(extra, normalizedChat(pkg.id, { max_tokens: 24, temperature: 0.8 }, '7'));
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

  it('stream: the last chunk before [DONE] carries the receipts, which verify, and the same ids as the whole answer', async () => {
    const whole = await chat({ seed: 11 });
    const chunks = await streamChat<GatewayExtra>({ seed: 11 });
    const last = chunks.at(-1)!;
    expect(textOf(chunks)).toBe(whole.choices[0]!.message.content);
    expect(last.glassbox?.outputTokenIds).toEqual(extraOf(whole).outputTokenIds);
    await expectReceiptsVerify(
      last.glassbox!,
      normalizedChat(pkg.id, { max_tokens: 24, temperature: 0.8 }, '11'),
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

  it('completions: a text_completion with a receipt that verifies, and legacy logprobs whole and streamed', async () => {
    const body = { model: pkg.id, prompt: 'Once upon a time', max_tokens: 6, temperature: 0, logprobs: 2 };
    const whole = await openai.completions.create(body);
    expect(whole.object).toBe('text_completion');
    await expectReceiptsVerify(extraOf(whole));
    const lp = whole.choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(whole.usage!.completion_tokens);
    expect(lp.top_logprobs!.every((top) => Object.keys(top).length === 2)).toBe(true);
    expect(lp.text_offset![0]).toBe(0);
    const stream = await openai.completions.create({ ...body, stream: true });
    const tokens: string[] = [];
    for await (const chunk of stream) tokens.push(...(chunk.choices[0]?.logprobs?.tokens ?? []));
    expect(tokens).toEqual(lp.tokens);
  });
});

describe('the gateway: modes', () => {
  it('--recheck local: the generation is re-checked here by teacher forcing, and the report says so', async () => {
    const local = await createGateway({ client, maxPrice: CAP, mode: 'local', logger: silent(), port: 0 });
    try {
      const ai = new OpenAI({ baseURL: `${local.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const { data: answer, response } = await chat({ seed: 31, max_tokens: 8 }, ai).withResponse();
      const extra = extraOf(answer);
      expect(response.headers.get(GATEWAY_HEADERS.mode)).toBe('local');
      expect(extra.report.mode).toBe('local');
      const recheck = (extra.report as { recheck?: { ok: boolean; margins: { positions: number } } }).recheck;
      expect(recheck?.ok).toBe(true);
      expect(recheck?.margins.positions).toBeGreaterThan(0);
      await expectReceiptsVerify(extra);
    } finally {
      await local.close();
    }
  });

  it('--quorum 2, non-stream: two receipts from two providers with the same token ids', async () => {
    const ai = new OpenAI({ baseURL: `${quorum.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const { data: answer, response } = await chat({ seed: 21 }, ai).withResponse();
    const extra = extraOf(answer);
    expect(extra.receipts).toHaveLength(2);
    expect(new Set(extra.receipts.map((r) => r.receipt.provider)).size).toBe(2);
    await expectReceiptsVerify(extra, normalizedChat(pkg.id, { max_tokens: 24, temperature: 0.8 }, '21'));
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
      expect((error as Error).message).toMatch(/charges more than the cap .*the cheapest offer is/);
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
    await leaveMidStream(`${gateway.url}/v1/chat/completions`, {
      model: pkg.id,
      messages: MESSAGES,
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
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
