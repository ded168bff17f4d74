import pino from 'pino';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { devnetClient, startDevnet, type Devnet } from '../src/devnet/index.js';
import { createGateway, type Gateway } from '../src/gateway/index.js';
import { closeClient, createSessionKey, type Client } from '../src/sdk/index.js';
import { llmExample } from '../test/support/examples.js';
import { figure, figuresPage, fmt, machine, pause, stats, writeResults, type Figure } from './lib.js';

/*
 * What the local gateway costs (issue 14's figures): one provider process serving the sample chat
 * model on a devnet, asked for the same streamed chat directly (with a session key, as an OpenAI
 * client pointed at the provider would) and through the gateway (which discovers the provider on
 * chain, pays it by vouchers, verifies the receipt and adds the glassbox chunk):
 *
 *   1. the p50 time to first token the gateway adds (target <= 2 ms), and
 *   2. tokens/s streamed through the gateway / directly (target >= 0.95).
 *
 * Requests alternate between the two, one at a time, and each figure is the median of the
 * differences (ratios) within a round: a direct request and a gateway request made back to back
 * meet the same load, where the medians of each side alone swing with whatever else the machine
 * runs. The gateway runs in this process, as an application embedding it would run it.
 */

const CHAT = [{ role: 'user', content: 'Tell me a long story about a lighthouse keeper and the sea.' }];
const STREAM_TOKENS = 256;
const ROUNDS = 24;
/** Per million tokens: far above the devnet's prices, so the cap never routes the provider away. */
const CAP = { input: 10n ** 24n, output: 10n ** 24n };
const figures: Figure[] = [];
const detail: Record<string, unknown> = {};

let devnet: Devnet;
let client: Client;
let gateway: Gateway;

beforeAll(async () => {
  devnet = await startDevnet({
    providers: 1,
    models: [(await llmExample('tiny-chat')).dir],
    nodeConfig: {
      logLevel: 'error',
      // direct requests send no vouchers: credit enough for the whole benchmark
      creditLimit: (10n ** 30n).toString(),
      rateLimit: { perMinute: 100_000_000 },
    },
  });
  client = await devnetClient(devnet, { discoveryTtlMs: 60_000 });
  gateway = await createGateway({ client, maxPrice: CAP, logger: pino({ level: 'silent' }), port: 0 });
}, 300_000);

afterAll(async () => {
  await gateway?.close();
  if (client) await closeClient(client);
  await devnet?.stop();
});

type Run = { readonly firstMs: number; readonly totalMs: number; readonly chunks: number };

/** A streamed chat read as raw SSE: when its first content arrived, and how many content chunks came. */
async function streamChat(baseUrl: string, apiKey: string | undefined, model: string): Promise<Run> {
  const started = performance.now();
  const response = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
    },
    body: JSON.stringify({ model, messages: CHAT, max_tokens: STREAM_TOKENS, temperature: 0, stream: true }),
  });
  if (!response.ok || !response.body)
    throw new Error(`${baseUrl} answered ${response.status}: ${await response.text()}`);
  let firstMs = NaN;
  let chunks = 0;
  let pending = '';
  const decoder = new TextDecoder();
  for await (const bytes of response.body) {
    pending += decoder.decode(bytes, { stream: true });
    const events = pending.split('\n\n');
    pending = events.pop()!;
    for (const event of events) {
      if (!/"delta":\{[^}]*"content":"[^"]/.test(event)) continue;
      if (Number.isNaN(firstMs)) firstMs = performance.now() - started;
      chunks++;
    }
  }
  return { firstMs, totalMs: performance.now() - started, chunks };
}

it('the gateway against the provider directly: time to first token and tokens/s', async () => {
  const provider = devnet.providers[0]!;
  const model = devnet.models[0]!.id;
  const { key } = await createSessionKey(
    {
      account: privateKeyToAccount(devnet.client.privateKey),
      chainId: devnet.chainId,
      deployment: devnet.deployment,
    },
    { provider: provider.address, ttlMs: 3_600_000 },
  );
  const direct = () => streamChat(provider.url, key, model);
  const through = () => streamChat(gateway.url, undefined, model);
  for (let i = 0; i < 3; i++) await Promise.all([direct(), through()]); // warm up both paths
  const runs = { direct: [] as Run[], gateway: [] as Run[] };
  for (let i = 0; i < ROUNDS; i++) {
    // alternate which goes first, each alone on the machine
    const order = i % 2 === 0 ? (['direct', 'gateway'] as const) : (['gateway', 'direct'] as const);
    for (const side of order) {
      await pause(50);
      runs[side].push(await (side === 'direct' ? direct() : through()));
    }
  }
  for (const run of [...runs.direct, ...runs.gateway]) expect(run.chunks).toBeGreaterThan(0);
  const rate = (r: Run) => r.chunks / (r.totalMs / 1000);
  const dRate = stats(runs.direct.map(rate));
  const gRate = stats(runs.gateway.map(rate));
  const dFirst = stats(runs.direct.map((r) => r.firstMs));
  const gFirst = stats(runs.gateway.map((r) => r.firstMs));
  const added = stats(runs.gateway.map((g, i) => g.firstMs - runs.direct[i]!.firstMs));
  const ratio = stats(runs.gateway.map((g, i) => rate(g) / rate(runs.direct[i]!)));
  detail['stream'] = {
    tokens: STREAM_TOKENS,
    rounds: ROUNDS,
    direct: { tokensPerSecond: dRate, ttftMs: dFirst },
    gateway: { tokensPerSecond: gRate, ttftMs: gFirst },
    perRound: { ttftAddedMs: added, tokensPerSecondRatio: ratio },
  };
  figures.push(
    figure(
      'gateway',
      'time to first token added by the gateway (p50 of rounds)',
      added.p50,
      'ms',
      { op: '<=', value: 2 },
      `medians ${fmt(gFirst.p50)} vs ${fmt(dFirst.p50)} ms`,
    ),
    figure(
      'gateway',
      `tokens/s through the gateway / directly (${STREAM_TOKENS} tokens, p50 of rounds)`,
      ratio.p50,
      'x',
      { op: '>=', value: 0.95 },
      `medians ${fmt(gRate.p50)} vs ${fmt(dRate.p50)} tokens/s`,
    ),
  );
}, 600_000);

it('writes bench/results/gateway.json and gateway.md', async () => {
  const at = machine();
  await writeResults(
    'gateway',
    { measuredAt: new Date().toISOString(), machine: at, figures, detail },
    figuresPage('# The local gateway against the provider directly (npm run bench)', at, figures),
  );
  for (const f of figures) console.log(`${f.name}: ${fmt(f.value)} ${f.unit}`);
});
