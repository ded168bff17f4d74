import { join } from 'node:path';
import { writeDeployment } from '../../src/chain/index.js';
import { runCli } from '../../src/cli/program.js';
import OpenAI from 'openai';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatCompletion, ChatCompletionChunk } from '../../src/api/openai.js';
import type { GlassboxNode } from '../../src/node/index.js';
import type { ModelsResponse, StoredReceipt } from '../../src/protocol/api.js';
import { dataHash } from '../../src/protocol/data.js';
import {
  decodeLlmInput,
  decodeLlmOutput,
  llmInputData,
  llmOutputData,
  llmParamsHash,
  tokenPrice,
} from '../../src/protocol/llm.js';
import { modelDigest, type ModelPackage } from '../../src/protocol/manifest.js';
import { recoverReceiptSigner, signedReceiptFromJson } from '../../src/protocol/receipt.js';
import { defaultEngines } from '../../src/runtime/index.js';
import { createSessionKey } from '../../src/sdk/index.js';
import {
  CLIENT,
  fundClients,
  PRICE,
  PROVIDER,
  requestId,
  startTestChain,
  tempDir,
  testClient,
  type TestChain,
} from './support.js';
import { createNode, parseNodeConfig } from '../../src/node/index.js';
import { admitRuntime, getModel, getOffer, getProvider } from '../../src/chain/index.js';
import { runtimeProfileJson } from '../../src/protocol/runtime-profile.js';
import { exampleDir, llmExample } from '../support/examples.js';
import { nodeConfig } from './support.js';
import {
  countingEngines,
  leaveMidStream,
  MESSAGES,
  normalizedChat,
  openAiCalls,
  openAiClientList,
} from '../support/openai-list.js';

/*
 * The OpenAI-compatible routes against a real node on anvil, with the official `openai` client
 * (issue 13 acceptance): the real tiny-chat model on the real LLM engine (1 thread), real SQLite,
 * real HTTP. The only test code around the engine counts the tokens it generates, so that a client
 * going away can be shown to stop the generation.
 */

/** Per output token, and per input (prompt) token, in base units. */
const TOKEN_PRICE = 20_000n;
const INPUT_PRICE = 3_000n;
const PRICES = { inputPrice: INPUT_PRICE, outputPrice: TOKEN_PRICE };

let chain: TestChain;
let node: GlassboxNode;
let dataDir: { dir: string; remove(): Promise<void> };
let pkg: ModelPackage;
let openai: OpenAI;
let apiKey: string;
/** The seed FAILING_SEED stands for a runtime failure after three tokens (a mid-stream error). */
const FAILING_SEED = 666n;
const failing = (seed: bigint, tokens: number) => seed === FAILING_SEED && tokens === 4;
/** Tokens the engine generated, per generation (the last one last). */
const generated: number[] = [];

const keyFor = async (i: number, provider = node.address, ttlMs = 3_600_000) =>
  (
    await createSessionKey(
      {
        account: privateKeyToAccount(chain.key(i)),
        chainId: chain.anvil.chainId,
        deployment: chain.deployment,
      },
      { provider, ttlMs },
    )
  ).key;

const clientFor = (key: string) => new OpenAI({ baseURL: `${node.url}/v1`, apiKey: key, maxRetries: 0 });

/** What a node on a chain that has not admitted the LLM engine's profile served. */
let servedWithoutAdmission: string[] = [];
/** What a node answered before it was ready. */
let beforeReady: { status: number; body: unknown };

beforeAll(async () => {
  chain = await startTestChain(); // admits the ONNX engine's profile only
  dataDir = await tempDir();
  await fundClients(chain);
  const tiny = (await llmExample('tiny-chat')).dir; // the folder, packed by the node as `glassbox model pack` does
  const models = [
    { model: exampleDir('iris'), price: PRICE.toString() },
    { model: tiny, price: TOKEN_PRICE.toString(), inputPrice: INPUT_PRICE.toString() },
  ];
  // The LLM's runtime is checked per model: unadmitted, the node serves iris and refuses tiny-chat.
  const other = await tempDir();
  const created = await createNode(parseNodeConfig(nodeConfig(chain, PROVIDER[1], other.dir, { models })), {
    engines: countingEngines(generated, failing),
  });
  // Not ready yet: 503 in OpenAI's shape.
  const early = await created.app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: { model: 'tiny-chat', messages: [{ role: 'user', content: 'hi' }] },
  });
  beforeReady = { status: early.statusCode, body: early.json() };
  const refusing = await created.start();
  servedWithoutAdmission = [...refusing.models.values()].map((m) => m.manifest.format);
  await refusing.stop();
  await other.remove();

  const llm = defaultEngines().list.find((e) => e.kind === 'tokens')!;
  await admitRuntime(chain.as(0), runtimeProfileJson(llm.profile));
  const config = parseNodeConfig(nodeConfig(chain, PROVIDER[0], dataDir.dir, { models }));
  node = await (await createNode(config, { engines: countingEngines(generated, failing) })).start();
  pkg = [...node.models.values()].find((m) => m.manifest.format === 'llm')!;
  apiKey = await keyFor(CLIENT[0]);
  openai = clientFor(apiKey);
});

afterAll(async () => {
  await node?.stop();
  await chain?.stop();
  await dataDir?.remove();
});

type Extra = ChatCompletion['glassbox'];
const extraOf = (answer: unknown) => (answer as { glassbox: Extra }).glassbox;

const { chat } = openAiCalls(() => ({ openai, name: pkg.manifest.name, id: pkg.id }));

describe('OpenAI routes: the node', () => {
  it("serves an LLM only when its token engine's runtime is admitted on chain (checked per model)", () => {
    expect(servedWithoutAdmission).toEqual(['onnx']);
    expect([...node.models.values()].map((m) => m.manifest.format).sort()).toEqual(['llm', 'onnx']);
  });

  it('answers 503 in OpenAI shape until it is ready', () => {
    expect(beforeReady.status).toBe(503);
    expect(beforeReady.body).toMatchObject({ error: { type: 'server_error', code: 'node_unavailable' } });
  });

  it('registers the LLM on chain as not exact (its policy is token-margin) and offers it', async () => {
    expect((await getModel(chain.as(0), pkg.id))?.exact).toBe(false);
    const offer = await getOffer(chain.as(0), { provider: node.address, model: pkg.id });
    expect([offer.price, offer.inputPrice]).toEqual([TOKEN_PRICE, INPUT_PRICE]);
  });
});

describe('OpenAI routes: the official client', () => {
  openAiClientList(() => ({ openai, name: pkg.manifest.name, id: pkg.id }));

  it('chat, non-stream: an OpenAI ChatCompletion with usage and a receipt that verifies', async () => {
    const answer = await chat();
    expect(answer.object).toBe('chat.completion');
    expect(answer.choices).toHaveLength(1);
    const choice = answer.choices[0]!;
    expect(choice.message.role).toBe('assistant');
    expect(typeof choice.message.content).toBe('string');
    expect(['stop', 'length']).toContain(choice.finish_reason);
    const extra = extraOf(answer);
    expect(extra.seed).toBe('7');
    expect(answer.usage).toEqual({
      prompt_tokens: extra.promptTokenIds!.length,
      completion_tokens: extra.outputTokenIds!.length,
      total_tokens: extra.promptTokenIds!.length + extra.outputTokenIds!.length,
    });

    // The receipt: the provider's signing key, this client, this model, and every hash recomputed
    // from the token ids the answer carries.
    const signed = signedReceiptFromJson(extra.receipt);
    const r = signed.receipt;
    expect(
      await recoverReceiptSigner(signed, {
        chainId: chain.anvil.chainId,
        verifyingContract: chain.deployment.contracts.receiptLedger,
      }),
    ).toBe(node.signer);
    expect(r.client).toBe(privateKeyToAccount(chain.key(CLIENT[0])).address);
    expect(r.provider).toBe(node.address);
    expect(r.model).toBe(modelDigest(pkg.id));
    const request = normalizedChat(pkg.id, { max_tokens: 24, temperature: 0.8 }, extra.seed);
    expect(r.inputHash).toBe(dataHash(llmInputData(request, extra.promptTokenIds!)));
    expect(r.outputHash).toBe(dataHash(llmOutputData(extra.outputTokenIds!)));
    expect(r.paramsHash).toBe(llmParamsHash(request.params));
    expect(r.price).toBe(
      tokenPrice(
        { promptTokens: extra.promptTokenIds!.length, completionTokens: extra.outputTokenIds!.length },
        PRICES,
      ),
    );
    const models = (await (await fetch(`${node.url}/v1/models`)).json()) as ModelsResponse;
    const served = models.models.find((m) => m.id === pkg.id)!;
    expect(served.inputPrice).toBe(INPUT_PRICE.toString());
    expect(r.runtime).toBe(served.runtime);
    expect(r.runtime).not.toBe(models.runtime); // the token engine's, not the tensor engine's
    // declared on chain beside the tensor engine's: clients accept it, committees can be drawn for it
    const declared = (await getProvider(chain.as(0), node.address)).runtimes;
    expect([...declared].sort()).toEqual([r.runtime, models.runtime].sort());

    // Stored with its data, batched and committed like any receipt.
    await node.flushBatches();
    const stored = (await (await fetch(`${node.url}/v1/receipts/${r.requestId}`)).json()) as StoredReceipt;
    expect(stored.receipt).toEqual(extra.receipt);
    expect(stored.batch?.root).toMatch(/^0x[0-9a-f]{64}$/);
    expect(dataHash(Buffer.from(stored.inputs!, 'base64'))).toBe(r.inputHash);
    expect(dataHash(Buffer.from(stored.outputs!, 'base64'))).toBe(r.outputHash);
  });

  it('the raw stream: text/event-stream, data lines, the receipt chunk just before data: [DONE]', async () => {
    const res = await fetch(`${node.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
      body: JSON.stringify({ model: pkg.id, messages: MESSAGES, max_tokens: 4, stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.headers.get('glassbox-provider')).toBe(node.address);
    const events = (await res.text()).split('\n\n').filter(Boolean);
    expect(events.every((e) => e.startsWith('data: '))).toBe(true);
    expect(events.at(-1)).toBe('data: [DONE]');
    const receiptChunk = JSON.parse(events.at(-2)!.slice(6)) as ChatCompletionChunk;
    expect(receiptChunk.choices).toEqual([]);
    expect(extraOf(receiptChunk).receipt.receipt.requestId).toBe(res.headers.get('x-request-id'));
    expect(events.some((e) => e.includes('"error"'))).toBe(false);
  });

  it('models.list and models.retrieve: OpenAI model objects beside the Glassbox fields', async () => {
    const list = await openai.models.list();
    const ids = list.data.map((m) => m.id);
    expect(ids).toContain(pkg.id);
    const entry = list.data.find((m) => m.id === pkg.id)!;
    expect(entry.object).toBe('model');
    expect(entry.owned_by).toBe(node.address);
    expect((await openai.models.retrieve(pkg.id)).id).toBe(pkg.id);
    expect((await openai.models.retrieve(pkg.manifest.name)).id).toBe(pkg.id);
    await expect(openai.models.retrieve('no-such-model')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });
});

describe('glassbox key', () => {
  it('prints a session key the official client is served with', async () => {
    const file = join(dataDir.dir, 'deployment.json');
    await writeDeployment(file, chain.deployment);
    const out: string[] = [];
    const io = { out: (line: string) => out.push(line), err: (line: string) => out.push(`err: ${line}`) };
    const connection = [
      '--rpc-url',
      chain.anvil.rpcUrl,
      '--chain-id',
      String(chain.anvil.chainId),
      '--deployment',
      file,
    ];
    const argv = [
      'key',
      '--provider',
      node.address,
      '--ttl',
      '2h',
      ...connection,
      '--private-key',
      chain.key(CLIENT[2]),
    ];
    expect(await runCli(argv, io)).toBe(0);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/^gbk\.0x[0-9a-fA-F]{40}\.\d+\.0x[0-9a-f]{130}$/);
    const answer = await clientFor(out[0]!).chat.completions.create({
      model: pkg.id,
      messages: MESSAGES,
      max_tokens: 2,
    });
    expect(signedReceiptFromJson(extraOf(answer).receipt).receipt.client).toBe(
      privateKeyToAccount(chain.key(CLIENT[2])).address,
    );
    expect(await runCli(['key', '--provider', node.address, '--ttl', 'soon', ...connection], io)).not.toBe(0);
  });
});

describe('OpenAI routes: errors in OpenAI shape', () => {
  it('a 50 MB body: 413 naming the body', async () => {
    const huge = JSON.stringify({
      model: pkg.id,
      messages: [{ role: 'user', content: 'x'.repeat(50 * 1024 * 1024) }],
    });
    const res = await fetch(`${node.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
      body: huge,
    });
    expect(res.status).toBe(413);
    const body = (await res.json()) as { error: { param: string; message: string } };
    expect(body.error.param).toBe('body');
    expect(body.error.message).toMatch(/body/);
  });

  it('no key, a key for another provider, an expired key: 401', async () => {
    const other = await keyFor(CLIENT[0], privateKeyToAccount(chain.key(PROVIDER[1])).address);
    const expired = await keyFor(CLIENT[0], node.address, 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    for (const key of ['', 'sk-not-a-session-key', other, expired]) {
      const error = await clientFor(key || 'x')
        .chat.completions.create({ model: pkg.id, messages: MESSAGES, max_tokens: 2 })
        .catch((e: unknown) => e);
      expect(error, key).toBeInstanceOf(OpenAI.AuthenticationError);
    }
  });

  it('an unfunded client: 402 in OpenAI shape', async () => {
    const error = await clientFor(await keyFor(5))
      .chat.completions.create({ model: pkg.id, messages: MESSAGES, max_tokens: 2 })
      .catch((e: unknown) => e);
    expect((error as { status?: number }).status).toBe(402);
    expect((error as { type?: string }).type).toBe('insufficient_quota');
  });
});

describe('OpenAI routes: payment, replay, disconnects', () => {
  it('a voucher in glassbox-voucher pays per token; a replayed request id is answered again, not charged again', async () => {
    const client = testClient(chain, CLIENT[1]);
    const ai = clientFor(await keyFor(CLIENT[1]));
    const id = requestId();
    const voucher = await client.voucherJson(node.address, 10n ** 7n);
    const headers = { 'glassbox-request-id': id, 'glassbox-voucher': JSON.stringify(voucher) };
    const body = { model: pkg.id, messages: MESSAGES, max_tokens: 10, seed: 5 };
    const first = await ai.chat.completions.create(body, { headers });
    const price = signedReceiptFromJson(extraOf(first).receipt).receipt.price;
    expect(price).toBe(
      tokenPrice(
        { promptTokens: first.usage!.prompt_tokens, completionTokens: first.usage!.completion_tokens },
        PRICES,
      ),
    );
    const account = node.db.getAccount(client.address);
    expect(account.delivered).toBe(price);
    expect(account.voucher?.voucher.amount).toBe(10n ** 7n);

    const again = await ai.chat.completions.create(
      { ...body, seed: undefined },
      { headers: { 'glassbox-request-id': id } },
    );
    expect(extraOf(again).receipt).toEqual(extraOf(first).receipt);
    expect(extraOf(again).replayed).toBe(true);
    expect(again.choices[0]!.message.content).toBe(first.choices[0]!.message.content);
    expect(node.db.getAccount(client.address).delivered).toBe(price);
    const other = await ai.chat.completions
      .create({ ...body, seed: 6 }, { headers: { 'glassbox-request-id': id } })
      .catch((e: unknown) => e);
    expect((other as { status?: number }).status).toBe(409);
  });

  it('a failure mid-stream: data: {"error": ...} (the openai client raises it), no [DONE], nothing charged', async () => {
    const client = testClient(chain, CLIENT[3]);
    const ai = clientFor(await keyFor(CLIENT[3]));
    const body = { model: pkg.id, messages: MESSAGES, max_tokens: 20, seed: Number(FAILING_SEED) };
    const stream = await ai.chat.completions.create({ ...body, stream: true });
    const got: string[] = [];
    const error = await (async () => {
      for await (const chunk of stream) got.push(chunk.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).message).toMatch(/runtime failed/);
    expect(got.length).toBeGreaterThan(1); // the role and the tokens before the failure came first
    const raw = await fetch(`${node.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${await keyFor(CLIENT[3])}` },
      body: JSON.stringify({ ...body, stream: true }),
    });
    const events = (await raw.text()).split('\n\n').filter(Boolean);
    expect(JSON.parse(events.at(-1)!.slice(6))).toMatchObject({ error: { code: 'run_failed' } });
    expect(events).not.toContain('data: [DONE]');
    expect(node.db.getAccount(client.address).delivered).toBe(0n);
  });

  it('a client that goes away mid-stream stops the generation and is charged only for what was delivered', async () => {
    const id = requestId();
    const maxTokens = 1500;
    const before = generated.length;
    const delivered = await leaveMidStream(
      `${node.url}/v1/chat/completions`,
      { model: pkg.id, messages: MESSAGES, max_tokens: maxTokens, temperature: 0, stream: true },
      { authorization: `Bearer ${apiKey}`, 'glassbox-request-id': id },
    );
    expect(delivered).toBeGreaterThanOrEqual(8);
    // The receipt is stored once the generation stopped.
    let stored: StoredReceipt | undefined;
    for (let i = 0; i < 200 && !stored; i++) {
      const res = await fetch(`${node.url}/v1/receipts/${id}`);
      if (res.status === 200) stored = (await res.json()) as StoredReceipt;
      else await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(stored).toBeDefined();
    const made = generated[before]!;
    expect(made).toBeLessThan(maxTokens / 4); // it stopped soon after the client left
    const outputs = Buffer.from(stored!.outputs!, 'base64');
    const receipt = signedReceiptFromJson(stored!.receipt).receipt;
    expect(receipt.outputHash).toBe(dataHash(outputs));
    // What the receipt covers: no more than what was generated, and it is charged at exactly that.
    const inputs = Buffer.from(stored!.inputs!, 'base64');
    const recorded = decodeLlmInput(inputs);
    const promptTokens = recorded.promptIds.length;
    const outputIds = decodeLlmOutput(outputs);
    expect(outputIds.length).toBeGreaterThan(0);
    expect(outputIds.length).toBeLessThanOrEqual(made);
    // recorded as a request for exactly what was delivered, so a re-check's termination rule holds
    expect(recorded.request.params.maxTokens).toBe(outputIds.length);
    expect(receipt.price).toBe(tokenPrice({ promptTokens, completionTokens: outputIds.length }, PRICES));
    expect(receipt.price).toBeLessThan((BigInt(promptTokens + maxTokens) * TOKEN_PRICE) / 4n);
  });
});
