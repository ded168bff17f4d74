import OpenAI from 'openai';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  Completion,
  GlassboxChunkIds,
  GlassboxExtra,
} from '../../src/api/openai.js';
import { admitRuntime } from '../../src/chain/index.js';
import { createNode, parseNodeConfig, type GlassboxNode } from '../../src/node/index.js';
import { llmInputHash, llmOutputHash, tokenPrice, type LlmRequest } from '../../src/protocol/llm.js';
import type { LlmManifest, ModelPackage } from '../../src/protocol/manifest.js';
import { signedReceiptFromJson } from '../../src/protocol/receipt.js';
import { runtimeProfileJson } from '../../src/protocol/runtime-profile.js';
import { defaultEngines } from '../../src/runtime/index.js';
import { createSessionKey } from '../../src/sdk/index.js';
import { llmExample } from '../support/examples.js';
import {
  CLIENT,
  fundClients,
  nodeConfig,
  PROVIDER,
  requestId,
  startTestChain,
  tempDir,
  type TestChain,
} from './support.js';

/*
 * Continuing a generation on a provider (docs/protocol.md, Continuing a generation), against a real
 * node on anvil with the real tiny-chat model: a gateway whose provider died after some chunks asks
 * another for the rest with `glassbox.prefix_ids` = the ids those chunks carried
 * (`glassbox.token_ids`), and the client's text reads as one uninterrupted run.
 */

const OUTPUT_PRICE = 20_000n;
const INPUT_PRICE = 3_000n;
const MAX_TOKENS = 24;
const MESSAGES = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'Nomme trois couleurs, 用中文 🎨.' },
];

let chain: TestChain;
let node: GlassboxNode;
let dataDir: { dir: string; remove(): Promise<void> };
let pkg: ModelPackage;
let openai: OpenAI;

beforeAll(async () => {
  chain = await startTestChain();
  dataDir = await tempDir();
  await fundClients(chain);
  const engines = defaultEngines({ onnx: { intraOpNumThreads: 1 }, llm: { intraOpNumThreads: 1 } });
  const llm = engines.list.find((e) => e.kind === 'tokens')!;
  await admitRuntime(chain.as(0), runtimeProfileJson(llm.profile));
  const tiny = (await llmExample('tiny-chat')).dir;
  const models = [{ model: tiny, price: OUTPUT_PRICE.toString(), inputPrice: INPUT_PRICE.toString() }];
  const config = parseNodeConfig(nodeConfig(chain, PROVIDER[0], dataDir.dir, { models }));
  node = await (await createNode(config, { engines })).start();
  pkg = [...node.models.values()][0]!;
  const { key } = await createSessionKey(
    {
      account: privateKeyToAccount(chain.key(CLIENT[0])),
      chainId: chain.anvil.chainId,
      deployment: chain.deployment,
    },
    { provider: node.address, ttlMs: 3_600_000 },
  );
  openai = new OpenAI({ baseURL: `${node.url}/v1`, apiKey: key, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await node?.stop();
  await chain?.stop();
  await dataDir?.remove();
});

type Sampling = { temperature: number; seed: number; stop?: string[] };
type Glassbox = { prefix_ids?: number[]; token_ids?: boolean };

async function streamChat(sampling: Sampling, maxTokens: number, glassbox: Glassbox) {
  const body = { model: pkg.manifest.name, messages: MESSAGES, max_tokens: maxTokens, ...sampling, glassbox };
  const stream = await openai.chat.completions.create({ ...body, stream: true } as never);
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<ChatCompletionChunk>) chunks.push(chunk);
  return chunks;
}

const withChoices = (chunks: ChatCompletionChunk[]) => chunks.filter((c) => c.choices.length > 0);
const idsOf = (chunk: ChatCompletionChunk) => (chunk.glassbox as GlassboxChunkIds).token_ids;
const textOf = (chunks: ChatCompletionChunk[]) =>
  chunks.flatMap((c) => c.choices.map((choice) => choice.delta.content ?? '')).join('');
const extraOf = (chunks: ChatCompletionChunk[]) => chunks.at(-1)!.glassbox as GlassboxExtra;

/** The normalized request the node hashed for a chat continuation. */
const requestOf = (sampling: Sampling, seed: string, maxTokens: number, prefixIds: number[]): LlmRequest => ({
  kind: 'chat',
  messages: MESSAGES,
  model: pkg.id,
  params: {
    temperature: sampling.temperature,
    topP: 1,
    topK: 0,
    seed: BigInt(seed),
    maxTokens,
    stop: sampling.stop ?? [],
  },
  ...(prefixIds.length > 0 ? { prefixIds } : {}),
});

/** The chunks a client got before the provider died: those whose ids add up to at least `k`. */
function deliveredUntil(chunks: ChatCompletionChunk[], k: number): ChatCompletionChunk[] {
  const choices = withChoices(chunks);
  let n = 0;
  const until = choices.findIndex((c) => (n += idsOf(c).length) >= k);
  return choices.slice(0, until + 1);
}

describe('glassbox.token_ids on a stream', () => {
  it('every chunk with choices carries the ids it consumed; together they are outputTokenIds', async () => {
    // a stop string that never completes holds text back: its ids travel with a later chunk
    const whole = await streamChat({ temperature: 0, seed: 1 }, MAX_TOKENS, { token_ids: true });
    const text = textOf(whole);
    const held = await streamChat(
      { temperature: 0, seed: 1, stop: [`${text.slice(3, 20)}\u0007`] },
      MAX_TOKENS,
      {
        token_ids: true,
      },
    );
    for (const chunks of [whole, held]) {
      expect(withChoices(chunks).every((c) => Array.isArray(idsOf(c)))).toBe(true);
      expect(withChoices(chunks).flatMap(idsOf)).toEqual(extraOf(chunks).outputTokenIds);
      expect(extraOf(chunks).receipt).toBeDefined(); // the receipt chunk is unchanged
      expect(textOf(chunks)).toBe(text);
    }
    // some chunk carried more than one id: a held token went out with the next one
    expect(withChoices(held).some((c) => idsOf(c).length > 1)).toBe(true);
    const plain = await streamChat({ temperature: 0, seed: 1 }, MAX_TOKENS, {});
    expect(plain.every((c) => c.glassbox === undefined || 'receipt' in c.glassbox)).toBe(true);
  });
});

describe('continuing on a provider after the ids a failed one delivered', () => {
  it.each<Sampling>([
    { temperature: 0, seed: 3 },
    { temperature: 0.8, seed: 7 },
  ])('stream (%o): delivered text + the continuation = the uninterrupted run', async (sampling) => {
    const whole = await streamChat(sampling, MAX_TOKENS, { token_ids: true });
    const wholeIds = extraOf(whole).outputTokenIds!;
    expect(wholeIds).toHaveLength(MAX_TOKENS);
    for (const k of [1, 10]) {
      const delivered = deliveredUntil(whole, k);
      const prefix = delivered.flatMap(idsOf);
      const rest = await streamChat(sampling, MAX_TOKENS - prefix.length, {
        prefix_ids: prefix,
        token_ids: true,
      });
      expect(textOf(delivered) + textOf(rest), `cut at ${k}`).toBe(textOf(whole));
      const extra = extraOf(rest);
      expect([...prefix, ...extra.outputTokenIds!]).toEqual(wholeIds);
      expect(withChoices(rest).flatMap(idsOf)).toEqual(extra.outputTokenIds);

      // the receipt covers the request with its prefix, and charges the prefix as input
      const { receipt } = signedReceiptFromJson(extra.receipt);
      const request = requestOf(sampling, extra.seed, MAX_TOKENS - prefix.length, prefix);
      expect(receipt.inputHash).toBe(llmInputHash(request, extra.promptTokenIds!));
      expect(receipt.outputHash).toBe(llmOutputHash(extra.outputTokenIds!));
      expect(receipt.price).toBe(
        tokenPrice(
          {
            promptTokens: extra.promptTokenIds!.length + prefix.length,
            completionTokens: extra.outputTokenIds!.length,
          },
          { inputPrice: INPUT_PRICE, outputPrice: OUTPUT_PRICE },
        ),
      );
    }
  });

  it('non-stream, both routes: usage counts the prefix as prompt tokens', async () => {
    const sampling = { temperature: 0, seed: 5 };
    const body = { model: pkg.manifest.name, messages: MESSAGES, ...sampling };
    const whole = (await openai.chat.completions.create({
      ...body,
      max_tokens: MAX_TOKENS,
    })) as ChatCompletion;
    const ids = whole.glassbox.outputTokenIds!;
    const prefix = ids.slice(0, 8);
    const rest = (await openai.chat.completions.create({
      ...body,
      max_tokens: MAX_TOKENS - 8,
      glassbox: { prefix_ids: prefix },
    } as never)) as ChatCompletion;
    expect([...prefix, ...rest.glassbox.outputTokenIds!]).toEqual(ids);
    const prompt = rest.glassbox.promptTokenIds!.length;
    expect(rest.usage).toEqual({
      prompt_tokens: prompt + 8,
      completion_tokens: MAX_TOKENS - 8,
      total_tokens: prompt + MAX_TOKENS,
    });
    expect(whole.choices[0]!.message.content!.endsWith(rest.choices[0]!.message.content!)).toBe(true);

    const completion = { model: pkg.manifest.name, prompt: 'Once upon a time', ...sampling };
    const wholeText = (await openai.completions.create({ ...completion, max_tokens: 16 })) as Completion;
    const textIds = wholeText.glassbox.outputTokenIds!;
    const after = (await openai.completions.create({
      ...completion,
      max_tokens: 12,
      glassbox: { prefix_ids: textIds.slice(0, 4) },
    } as never)) as Completion;
    expect([...textIds.slice(0, 4), ...after.glassbox.outputTokenIds!]).toEqual(textIds);
    expect(after.usage.prompt_tokens).toBe(after.glassbox.promptTokenIds!.length + 4);
  });

  it('a retried continuation (same request id) is answered again with the same text, ids and receipt', async () => {
    const sampling = { temperature: 0, seed: 9, stop: ['\u0007never'] };
    const whole = await streamChat(sampling, MAX_TOKENS, { token_ids: true });
    const prefix = deliveredUntil(whole, 6).flatMap(idsOf);
    const body = {
      model: pkg.manifest.name,
      messages: MESSAGES,
      max_tokens: MAX_TOKENS - prefix.length,
      ...sampling,
      glassbox: { prefix_ids: prefix, token_ids: true },
    };
    const headers = { 'glassbox-request-id': requestId() };
    const first = (await openai.chat.completions.create(body as never, { headers })) as ChatCompletion;
    const again = (await openai.chat.completions.create(body as never, { headers })) as ChatCompletion;
    expect(again.glassbox.replayed).toBe(true);
    expect(again.choices[0]!.message.content).toBe(first.choices[0]!.message.content);
    expect(again.glassbox.receipt).toEqual(first.glassbox.receipt);
    expect(again.usage).toEqual(first.usage);
    // streamed, the replay's one content chunk carries every id
    const stream = await openai.chat.completions.create({ ...body, stream: true } as never, { headers });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream as unknown as AsyncIterable<ChatCompletionChunk>) chunks.push(chunk);
    expect(textOf(chunks)).toBe(first.choices[0]!.message.content);
    expect(withChoices(chunks).flatMap(idsOf)).toEqual(first.glassbox.outputTokenIds);
  });

  it('refuses a prefix that cannot be continued: 400 naming glassbox.prefix_ids', async () => {
    const llm = (pkg.manifest as LlmManifest).llm;
    const whole = (await openai.chat.completions.create({
      model: pkg.manifest.name,
      messages: MESSAGES,
      max_tokens: 12,
      temperature: 0,
    })) as ChatCompletion;
    const text = whole.choices[0]!.message.content!;
    const refused = async (
      glassbox: unknown,
      over: Record<string, unknown> = {},
      route = 'chat/completions',
    ) => {
      const body =
        route === 'completions'
          ? { model: pkg.manifest.name, prompt: 'Once', max_tokens: 4, glassbox, ...over }
          : {
              model: pkg.manifest.name,
              messages: MESSAGES,
              max_tokens: 4,
              temperature: 0,
              glassbox,
              ...over,
            };
      const res = await fetch(`${node.url}/v1/${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${openai.apiKey}` },
        body: JSON.stringify(body),
      });
      const answer = (await res.json()) as { error?: { param: string; message: string } };
      if (!answer.error) return [res.status, undefined, JSON.stringify(answer)] as const;
      return [res.status, answer.error.param, answer.error.message] as const;
    };
    expect(await refused({ prefix_ids: [1, -1] })).toEqual([
      400,
      'glassbox.prefix_ids',
      expect.stringMatching(/item 1 \(-1\)/),
    ]);
    expect((await refused({ prefix_ids: [1, 'x'] })).slice(0, 2)).toEqual([400, 'glassbox.prefix_ids']);
    expect((await refused({ prefix_ids: 5 })).slice(0, 2)).toEqual([400, 'glassbox.prefix_ids']);
    expect((await refused({ prefix_ids: [1, llm.vocabSize] }, {}, 'completions')).slice(0, 2)).toEqual([
      400,
      'glassbox.prefix_ids',
    ]);
    const eos = await refused({ prefix_ids: [1, llm.eosTokenIds[0]!] });
    expect(eos.slice(0, 2)).toEqual([400, 'glassbox.prefix_ids']);
    expect(eos[2]).toMatch(/EOS/);
    // its text already completes a stop string
    const stop = await refused(
      { prefix_ids: whole.glassbox.outputTokenIds!.slice(0, 10) },
      { stop: [text.slice(1, 4)] },
    );
    expect(stop.slice(0, 2)).toEqual([400, 'glassbox.prefix_ids']);
    expect(stop[2]).toMatch(/stop string/);
    // prompt + prefix + max_tokens over the context
    const prompt = whole.glassbox.promptTokenIds!.length;
    const over = await refused({ prefix_ids: [1, 2, 3] }, { max_tokens: llm.contextLength - prompt - 1 });
    expect(over.slice(0, 2)).toEqual([400, 'glassbox.prefix_ids']);
    // an empty prefix is no prefix
    expect((await refused({ prefix_ids: [] }))[0]).toBe(200);
  });
});
