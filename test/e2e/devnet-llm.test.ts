import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getOffer, getProvider } from '../../src/chain/index.js';
import { DEMO_TOKEN_CAP, startDemoGateway, streamedChat } from '../../src/cli/commands/demo-chat.js';
import {
  creditLimit,
  devnetClient,
  DEVNET_TOKEN_PRICES,
  startDevnet,
  type Devnet,
} from '../../src/devnet/index.js';
import type { Gateway } from '../../src/gateway/index.js';
import { runtimeHash } from '../../src/protocol/runtime-profile.js';
import { defaultProfiles } from '../../src/runtime/index.js';
import { closeClient, type Client } from '../../src/sdk/index.js';

/*
 * The devnet `npm start` runs, with its LLM: the providers serve tiny-chat at a per-token price
 * pair and declare the token engine's runtime beside the ONNX engine's; a chat that names no
 * max_tokens (credit reserved for the rest of the 4,096-token context) is served; and the demo's
 * last step, a streamed chat through the gateway, prints the text, the receipt and its checks.
 * Two provider processes, a real chain, the real gateway.
 */

let devnet: Devnet;
let client: Client;
let gateway: Gateway;

beforeAll(async () => {
  devnet = await startDevnet({ providers: 2, nodeConfig: { logLevel: 'error' } });
  client = await devnetClient(devnet);
  gateway = await startDemoGateway(client);
}, 240_000);

afterAll(async () => {
  await gateway?.close();
  if (client) await closeClient(client);
  await devnet?.stop();
});

describe('the devnet with an LLM', () => {
  it('offers tiny-chat at its per-token prices, with the token engine runtime declared', async () => {
    const tiny = devnet.models.find((m) => m.name === 'tiny-chat')!;
    expect(tiny.contextLength).toBe(4096);
    const [onnx, llm] = defaultProfiles().map(runtimeHash);
    for (const p of devnet.providers) {
      const offer = await getOffer(client.chain, { provider: p.address, model: tiny.id });
      expect([offer.price, offer.inputPrice]).toEqual([
        DEVNET_TOKEN_PRICES.outputPrice,
        DEVNET_TOKEN_PRICES.inputPrice,
      ]);
      expect((await getProvider(client.chain, p.address)).runtimes).toEqual(
        expect.arrayContaining([onnx, llm]),
      );
    }
  });

  it('sizes credit for ten full-context generations and a hundred tensor answers', () => {
    const models = devnet.models;
    const full = 4096n * DEVNET_TOKEN_PRICES.outputPrice;
    expect(creditLimit(models, 10n ** 15n, DEVNET_TOKEN_PRICES)).toBe(10n ** 17n); // 100 × 1e15 > 10 × 4.1e15
    // dearer tokens: the generations set the limit, not the tensor answers
    const dear = { inputPrice: 10n ** 15n, outputPrice: 4n * 10n ** 15n };
    expect(creditLimit(models, 10n ** 15n, dear)).toBe(10n * 4096n * dear.outputPrice);
    expect(full * 10n).toBeLessThanOrEqual(creditLimit(models, 10n ** 15n, DEVNET_TOKEN_PRICES));
  });

  it('serves a chat that names no max_tokens: the worst-case reservation fits the credit', async () => {
    const ai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const messages = [{ role: 'user' as const, content: 'Say something.' }];
    // Learn the text of the first tokens under a seed, then ask again without max_tokens and stop
    // there: the provider reserves credit for the whole rest of the context, then stops early.
    const first = await ai.chat.completions.create({ model: 'tiny-chat', messages, seed: 11, max_tokens: 4 });
    const text = first.choices[0]!.message.content!;
    expect(text.length).toBeGreaterThan(0);
    const open = await ai.chat.completions.create({ model: 'tiny-chat', messages, seed: 11, stop: [text] });
    expect(open.choices[0]!.finish_reason).toBe('stop');
    expect(open.usage!.completion_tokens).toBeLessThanOrEqual(4);
    const extra = (
      open as unknown as { glassbox: { report: { ok: boolean }; receipts: { receipt: { price: string } }[] } }
    ).glassbox;
    expect(extra.report.ok).toBe(true);
    expect(BigInt(extra.receipts[0]!.receipt.price)).toBe(
      BigInt(open.usage!.prompt_tokens) * DEVNET_TOKEN_PRICES.inputPrice +
        BigInt(open.usage!.completion_tokens) * DEVNET_TOKEN_PRICES.outputPrice,
    );
  });

  it("prints the demo's streamed chat: its text, its receipt and every check passed", async () => {
    const lines: string[] = [];
    let streamed = '';
    const io = {
      out: (l: string) => lines.push(l),
      err: (l: string) => lines.push(l),
      write: (t: string) => (streamed += t),
    };
    await streamedChat({ io, untilStopped: new Promise(() => undefined) }, gateway, 'Hello!');
    const out = lines.join('\n');
    expect(streamed).toMatch(/^ {3}tiny-chat says: .+\n$/s);
    expect(out).toMatch(/x-glassbox-mode: receipt/);
    expect(out).toMatch(/verified: yes/);
    expect(out).toMatch(/receipt 1 of 1, tokens 0-\d+:/);
    for (const field of ['provider', 'model', 'inputHash', 'outputHash', 'paramsHash', 'runtime', 'price'])
      expect(out).toMatch(new RegExp(`^ {5}${field} `, 'm'));
    const checks = lines.filter((l) => /^ {5}(ok {2}|FAIL) /.test(l));
    expect(checks.length).toBeGreaterThan(5);
    expect(checks.filter((l) => l.includes('FAIL'))).toEqual([]);
    expect(DEMO_TOKEN_CAP.output).toBe(DEVNET_TOKEN_PRICES.outputPrice * 2_000_000n);
  });
});
