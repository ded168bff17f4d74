import OpenAI from 'openai';
import pino from 'pino';
import type { Address } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, setOffer, withAccount } from '../../src/chain/index.js';
import { devnetClient, startDevnet, type Devnet, type DevnetProvider } from '../../src/devnet/index.js';
import { createGateway, type Gateway, type GatewayExtra } from '../../src/gateway/index.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import { defaultEngines, type Engines } from '../../src/runtime/index.js';
import { closeClient, createSessionKey, type Client, type TokenPriceCap } from '../../src/sdk/index.js';
import { llmExample } from '../support/examples.js';
import { faultyProvider, type Generations } from '../support/faults.js';

/*
 * The gateway's resilience (issue 14 acceptance), with real processes on loopback: anvil, provider
 * processes serving tiny-chat on the real LLM engine, the gateway in this process, and the official
 * `openai` client against it with retries off (every failure it would retry shows as one here).
 *
 *   1. A provider killed -9 in the middle of a stream: the stream goes on, from the next provider,
 *      and ends with exactly the tokens an uninterrupted greedy run produces. The dead provider
 *      signed nothing for its part, which the report says (receipt mode), or which the gateway
 *      re-checks itself (--recheck local).
 *   2. 200 chats, one of three providers killed -9 and restarted during them: none fails.
 *   3. A provider that refuses this client (403), one that rate-limits it (429, its real limiter)
 *      and one that raises its price above the cap (a real setOffer, after its notice period): all
 *      routed around, no client error.
 *
 * The providers of part 1-2 hold each token 10 ms (test/support/faults.ts `tokenDelayMs`), so
 * that a stream lasts long enough to kill its provider in the middle of it.
 */

const E = (n: number) => 10n ** BigInt(n);
/** The devnet's default prices: per output token and per prompt token, in base units. */
const PRICE = E(15);
/** Per million tokens: twice the default output price, four times the default input price. */
const CAP: TokenPriceCap = { input: E(21), output: 2n * E(21) };
const TOKEN_DELAY_MS = 10;
const GREEDY = { temperature: 0 } as const;
const MESSAGES = [{ role: 'user' as const, content: 'Tell me a story about a lighthouse keeper.' }];

/**
 * A whole answer or a stream's last chunk with the gateway's `glassbox` member (receipts, report,
 * segments): the openai client keeps members it does not know.
 */
type WithGlassbox = { glassbox?: GatewayExtra };

const openaiAt = (gateway: Gateway) =>
  new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });

/** The providers the gateway named in its headers. */
const providersHeader = (headers: Headers): Address[] =>
  (headers.get('x-glassbox-providers') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean) as Address[];

/** How many answers of `route` with `status` a provider's /metrics counts. */
async function answered(provider: DevnetProvider, route: string, status: number): Promise<number> {
  const text = await (await fetch(new URL('/metrics', provider.url))).text();
  const line = text
    .split('\n')
    .find(
      (l) =>
        l.startsWith('glassbox_http_requests_total{') &&
        l.includes(`route="${route}"`) &&
        l.includes(`status="${status}"`),
    );
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

/**
 * The providers generating now (their slow-token fault counts generations: a stream's headers go
 * out before the gateway knows who will serve it, and a provider counts a request once answered).
 */
async function busyProviders(devnet: Devnet): Promise<DevnetProvider[]> {
  const live = devnet.providers.filter((p) => p.process.exitCode === null && p.process.signalCode === null);
  const counts = await Promise.all(
    live.map(async (p) => {
      const response = await fetch(new URL('/faults/generations', p.url));
      return ((await response.json()) as Generations).active;
    }),
  );
  return live.filter((_, i) => counts[i]! > 0);
}

/**
 * Every segment of an answer is covered by a receipt (listed once in `receipts`) or was cut; the
 * report is ok exactly when none is left uncovered (receipt mode).
 */
function expectAccounted(glassbox: GatewayExtra): void {
  for (const segment of glassbox.segments) expect(segment.requestId ?? segment.cut).toBeDefined();
  const covered = glassbox.segments.filter((s) => s.requestId !== undefined);
  expect(glassbox.receipts).toHaveLength(covered.length);
  expect(glassbox.report.ok).toBe(covered.length === glassbox.segments.length);
}

type Chat = { text: string; finishReason: string | null; providers: Address[]; glassbox: GatewayExtra };

/** One chat through the gateway, streamed or not; `onChunk` gets the count of content chunks so far. */
async function chatThrough(
  openai: OpenAI,
  model: string,
  {
    stream,
    maxTokens,
    content = MESSAGES[0]!.content,
    onChunk,
  }: {
    stream: boolean;
    maxTokens: number;
    content?: string;
    onChunk?: (count: number) => Promise<void>;
  },
): Promise<Chat> {
  const body = { model, messages: [{ role: 'user' as const, content }], max_tokens: maxTokens, ...GREEDY };
  if (!stream) {
    const { data, response } = await openai.chat.completions.create(body).withResponse();
    return {
      text: data.choices[0]!.message.content ?? '',
      finishReason: data.choices[0]!.finish_reason,
      providers: providersHeader(response.headers),
      glassbox: (data as WithGlassbox).glassbox!,
    };
  }
  const { data, response } = await openai.chat.completions.create({ ...body, stream: true }).withResponse();
  const providers = providersHeader(response.headers);
  let text = '';
  let finishReason: string | null = null;
  let glassbox: GatewayExtra | undefined;
  let chunks = 0;
  for await (const chunk of data) {
    const delta = chunk.choices[0]?.delta.content;
    if (delta) {
      text += delta;
      await onChunk?.(++chunks);
    }
    finishReason = chunk.choices[0]?.finish_reason ?? finishReason;
    glassbox = (chunk as WithGlassbox).glassbox ?? glassbox;
  }
  if (!glassbox) throw new Error('the stream ended without the glassbox chunk');
  return { text, finishReason, providers, glassbox };
}

/** What tiny-chat generates greedily for `content`, here, on the real engine (1 thread). */
async function localGreedy(engines: Engines, pkg: ModelPackage, content: string, maxTokens: number) {
  const engine = engines.tokens(pkg);
  const { ids } = await engine.prompt(pkg, { kind: 'chat', messages: [{ role: 'user', content }] });
  const params = { temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens, stop: [] };
  for await (const event of engine.generate(pkg, ids, { params }))
    if (event.type === 'done') return { promptIds: ids, outputIds: event.outputIds, text: event.text };
  throw new Error('no done event');
}

describe('three providers, one killed -9 mid-stream and in the middle of 200 chats', () => {
  let devnet: Devnet;
  let client: Client;
  let gateway: Gateway;
  let openai: OpenAI;
  let model: string;
  let pkg: ModelPackage;
  const engines = defaultEngines({ llm: { intraOpNumThreads: 1 } });

  beforeAll(async () => {
    const tiny = await llmExample('tiny-chat');
    pkg = tiny.pkg;
    devnet = await startDevnet({
      providers: 3,
      models: [tiny.dir],
      provider: () => faultyProvider({ tokenDelayMs: TOKEN_DELAY_MS }),
      nodeConfig: { logLevel: 'error' },
    });
    model = devnet.models[0]!.id;
    client = await devnetClient(devnet, { discoveryTtlMs: 200 });
    gateway = await createGateway({ client, maxPrice: CAP, logger: pino({ level: 'silent' }), port: 0 });
    openai = openaiAt(gateway);
  }, 240_000);

  afterAll(async () => {
    await gateway?.close();
    if (client) await closeClient(client);
    await devnet?.stop();
    await engines.close();
  });

  /**
   * A stream through `through` whose provider is killed -9 after its 10th content chunk, then the
   * same body again (the victim still dead: one provider, no break), then the victim restarted.
   */
  async function killMidStream(through: OpenAI, maxTokens: number) {
    let victim: DevnetProvider | undefined;
    let killed: Promise<void> | undefined;
    const broken = await chatThrough(through, model, {
      stream: true,
      maxTokens,
      onChunk: async (count) => {
        if (count !== 10) return;
        const busy = await busyProviders(devnet);
        expect(busy).toHaveLength(1);
        victim = busy[0]!;
        killed = victim.kill('SIGKILL');
      },
    });
    await killed;
    expect(victim?.process.signalCode).toBe('SIGKILL');
    const whole = await chatThrough(through, model, { stream: true, maxTokens });
    await victim!.restart();
    return { broken, whole, victim: victim!.address.toLowerCase() };
  }

  /** Two segments: the victim's, cut after at least 10 tokens, then another provider's to the end. */
  function expectCutOnce(glassbox: GatewayExtra, victim: string, maxTokens: number) {
    const [first, second] = glassbox.segments;
    expect(glassbox.segments).toHaveLength(2);
    expect(first!.provider.toLowerCase()).toBe(victim);
    expect(first!.cut).toMatch(/\S/);
    expect(first!.fromToken).toBe(0);
    expect(first!.toToken).toBeGreaterThanOrEqual(10);
    expect(second!.provider.toLowerCase()).not.toBe(victim);
    expect(second!.cut).toBeUndefined();
    expect(second!.fromToken).toBe(first!.toToken);
    expect(second!.toToken).toBe(maxTokens);
    expect(glassbox.report.failovers).toBe(1);
  }

  it("a stream whose provider is killed -9 after its 10th token completes with an uninterrupted greedy run's text", async () => {
    const MAX_TOKENS = 48;
    const { broken, whole, victim } = await killMidStream(openai, MAX_TOKENS);
    expectCutOnce(broken.glassbox, victim, MAX_TOKENS);
    expect(broken.finishReason).toBe('length');
    // A process killed -9 signs nothing for what it streamed: the continuation's receipt is the
    // only one, and the report says that the first tokens are not covered (never silently ok).
    expect(broken.glassbox.segments[0]!.requestId).toBeUndefined();
    expect(broken.glassbox.segments[1]!.requestId).toBeDefined();
    expect(broken.glassbox.receipts).toHaveLength(1);
    expect(broken.glassbox.report.ok).toBe(false);

    // The same body, uninterrupted: the same text and ids, and all of it covered.
    expect(whole.glassbox.segments).toHaveLength(1);
    expect(whole.glassbox.report.ok).toBe(true);
    expect(broken.text).toBe(whole.text);
    expect(broken.glassbox.outputTokenIds).toEqual(whole.glassbox.outputTokenIds);
    // And both are what the model generates greedily, here.
    const local = await localGreedy(engines, pkg, MESSAGES[0]!.content, MAX_TOKENS);
    expect(broken.glassbox.outputTokenIds).toEqual(local.outputIds);
    expect(broken.text).toBe(local.text);
  }, 120_000);

  it('with --recheck local the gateway re-checks the whole broken-off generation itself, and it verifies', async () => {
    const MAX_TOKENS = 32;
    const local = await createGateway({
      client,
      maxPrice: CAP,
      mode: 'local',
      logger: pino({ level: 'silent' }),
      port: 0,
    });
    try {
      const { broken, whole, victim } = await killMidStream(openaiAt(local), MAX_TOKENS);
      expectCutOnce(broken.glassbox, victim, MAX_TOKENS);
      expect(broken.text).toBe(whole.text);
      expect(broken.glassbox.report.mode).toBe('local');
      const recheck = broken.glassbox.report.recheck as { ok: boolean; firstFailure?: unknown } | undefined;
      expect(recheck, JSON.stringify(recheck?.firstFailure)).toMatchObject({ ok: true });
      expect(broken.glassbox.report.ok).toBe(true);
    } finally {
      await local.close();
    }
  }, 120_000);

  it('200 chats (stream and not), one of three providers killed -9 and restarted during them: none fails', async () => {
    const TOTAL = 200;
    const CONCURRENCY = 4;
    // Three prompts, so that every answer can be compared with the others of its prompt.
    const prompts = ['Say hello.', 'What is a lighthouse?', 'Count to five.'];
    const texts = prompts.map(() => new Set<string>());
    const failures: string[] = [];
    let started = 0;
    let done = 0;
    let movedMidStream = 0;
    let retriedBeforeFirstToken = 0;
    let victim: DevnetProvider | undefined;
    let killed: Promise<void> | undefined;
    let restarted: Promise<void> | undefined;
    const began = performance.now();
    const worker = async () => {
      while (started < TOTAL) {
        const i = started++;
        try {
          const chat = await chatThrough(openai, model, {
            stream: i % 2 === 0,
            maxTokens: 8,
            content: prompts[i % prompts.length]!,
          });
          expectAccounted(chat.glassbox);
          texts[i % prompts.length]!.add(chat.text);
          if (chat.glassbox.segments.length > 1) movedMidStream++;
          if (chat.glassbox.report.rejected.length > 0) retriedBeforeFirstToken++;
        } catch (error) {
          failures.push(`chat ${i}: ${(error as Error).message}`);
        }
        done++;
        // After 60 answers a provider dies in the middle of a generation, back after 130.
        if (done >= 60 && !killed) killed = killBusy().then((p) => void (victim = p));
        if (done >= 130 && killed && !restarted) restarted = killed.then(() => victim!.restart());
      }
    };
    /** Kills -9 a provider while it generates (waits for one that does). */
    const killBusy = async (): Promise<DevnetProvider> => {
      for (;;) {
        const busy = await busyProviders(devnet);
        if (busy[0]) {
          await busy[0].kill('SIGKILL');
          return busy[0];
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await restarted;
    const seconds = (performance.now() - began) / 1000;
    console.log(
      `200 chats in ${seconds.toFixed(1)} s with ${victim?.address} killed -9 mid-generation after 60 answers and restarted after 130: ` +
        `${failures.length} failed, ${movedMidStream} moved to another provider mid-stream, ` +
        `${retriedBeforeFirstToken} retried on another before the first token`,
    );
    expect(failures).toEqual([]);
    expect(done).toBe(TOTAL);
    expect(victim).toBeDefined();
    // Greedy: every answer to one prompt is the same text, whoever made it and wherever it broke.
    for (const set of texts) expect(set.size).toBe(1);
    // The kill hit requests in flight: some answers had to go elsewhere.
    expect(movedMidStream + retriedBeforeFirstToken).toBeGreaterThan(0);
  }, 240_000);
});

describe('providers that refuse this client or price themselves above the cap', () => {
  const HONEST = 0;
  const RAISER = 1;
  const FORBIDS = 2;
  const LIMITS = 3;
  let devnet: Devnet;
  let client: Client;
  let gateway: Gateway;
  let openai: OpenAI;
  let model: string;
  /** Every provider that made tokens of an answer in this part, in order. */
  const used: string[] = [];
  /** Every refusal the gateway's reports listed in this part: `provider status`. */
  const refusals: string[] = [];

  beforeAll(async () => {
    const tiny = await llmExample('tiny-chat');
    devnet = await startDevnet({
      providers: 4,
      models: [tiny.dir],
      provider: (i) =>
        i === FORBIDS
          ? // Staked highest, so that a new client tries it first; it answers this client 403.
            {
              ...faultyProvider({ refuse: { status: 403 } }),
              nodeConfig: { stake: (2_000n * E(18)).toString() },
            }
          : i === LIMITS
            ? // The node's own rate limiter, at one request a minute per client.
              { nodeConfig: { stake: (2_000n * E(18)).toString(), rateLimit: { perMinute: 1 } } }
            : i === RAISER
              ? { price: PRICE / 2n } // the cheapest: preferred until it reprices
              : {},
      nodeConfig: { logLevel: 'error' },
    });
    model = devnet.models[0]!.id;
    client = await devnetClient(devnet, { discoveryTtlMs: 200 });
    gateway = await createGateway({ client, maxPrice: CAP, logger: pino({ level: 'silent' }), port: 0 });
    openai = openaiAt(gateway);
  }, 240_000);

  afterAll(async () => {
    await gateway?.close();
    if (client) await closeClient(client);
    await devnet?.stop();
  });

  const at = (i: number) => devnet.providers[i]!;

  /** `n` chats, alternately streamed, every one checked; the providers that made their tokens. */
  async function chats(n: number): Promise<string[]> {
    const made: string[] = [];
    for (let i = 0; i < n; i++) {
      const chat = await chatThrough(openai, model, { stream: i % 2 === 0, maxTokens: 6 });
      expect(chat.text.length).toBeGreaterThan(0);
      expect(chat.glassbox.report.ok).toBe(true);
      const providers = chat.glassbox.segments.map((s) => s.provider.toLowerCase());
      // A whole answer's headers name who made it; a stream's go out before anyone is known.
      if (i % 2 === 1) expect(chat.providers.map((a) => a.toLowerCase())).toEqual([...new Set(providers)]);
      made.push(...providers);
      for (const r of chat.glassbox.report.rejected) refusals.push(`${r.provider.toLowerCase()} ${r.status}`);
    }
    used.push(...made);
    return made;
  }

  it('routes around a provider answering this client 403 and one answering it 429, with no client error', async () => {
    // The client's one request of the minute at the rate-limited provider, spent directly.
    const { key } = await createSessionKey(
      {
        account: privateKeyToAccount(devnet.client.privateKey),
        chainId: devnet.chainId,
        deployment: devnet.deployment,
      },
      { provider: at(LIMITS).address, ttlMs: 600_000 },
    );
    const direct = new OpenAI({ baseURL: `${at(LIMITS).url}/v1`, apiKey: key, maxRetries: 0 });
    const body = { model, messages: MESSAGES, max_tokens: 2 };
    await direct.chat.completions.create(body);
    await expect(direct.chat.completions.create(body)).rejects.toMatchObject({ status: 429 });

    const made = await chats(6);
    expect(made).not.toContain(at(FORBIDS).address.toLowerCase());
    expect(made).not.toContain(at(LIMITS).address.toLowerCase());
    // Both were asked (they rank first for a new client) and refused.
    expect(await answered(at(FORBIDS), '/v1/chat/completions', 403)).toBeGreaterThan(0);
    expect(await answered(at(LIMITS), '/v1/chat/completions', 429)).toBeGreaterThan(1);
    // And the answers' reports say so.
    expect(refusals).toContain(`${at(FORBIDS).address.toLowerCase()} 403`);
    expect(refusals).toContain(`${at(LIMITS).address.toLowerCase()} 429`);
  }, 120_000);

  it('routes around a provider that raised its price above the cap once its notice period is over', async () => {
    const raiser = at(RAISER).address.toLowerCase();
    await chats(4);
    expect(used).toContain(raiser); // the cheapest: in use until it reprices
    const owner = withAccount(
      {
        ...connect({ rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, pollingIntervalMs: 20 }),
        deployment: devnet.deployment,
      },
      devnet.anvil.accounts[RAISER + 1]!.privateKey,
    );
    // 10x the default price per output token: 5 times the cap.
    await setOffer(owner, { model, price: PRICE * 10n, inputPrice: PRICE / 4n });
    await devnet.advanceTime(devnet.deployment.params.priceNoticeMs + 1000);
    await new Promise((resolve) => setTimeout(resolve, 300)); // past the client's discovery cache
    const made = await chats(6);
    expect(made).not.toContain(raiser);
    expect(made).toContain(at(HONEST).address.toLowerCase());
  }, 120_000);
});
