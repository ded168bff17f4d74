import { getAddress, type Address } from 'viem';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { admitRuntime, pauseProvider, setOffer } from '../../src/chain/index.js';
import { createNode, parseNodeConfig, type GlassboxNode } from '../../src/node/index.js';
import { isGlassboxError, type GlassboxError } from '../../src/protocol/errors.js';
import { llmOutputHash } from '../../src/protocol/llm.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import { runtimeProfileJson } from '../../src/protocol/runtime-profile.js';
import { defaultEngines, type Engines } from '../../src/runtime/index.js';
import {
  chat,
  closeClient,
  completion,
  createClient,
  discoverProviders,
  listLlmModels,
  rankProviders,
  type Client,
  type GenerationDelta,
  type TokenPriceCap,
} from '../../src/sdk/index.js';
import { llmExample } from '../support/examples.js';
import { tokenEnginesWithFaults, type TokenFaults } from '../support/faults.js';
import { CLIENT, fundClients, nodeConfig, startTestChain, tempDir, type TestChain } from '../node/support.js';

/*
 * The SDK's chat API (issue 14, D3) against three real providers on anvil: real nodes in this
 * process (src/node) serving the tiny-chat model built by our scripts on the real LLM engine (one
 * thread), real SQLite, real HTTP on loopback. Faults (test/support/faults.ts) make a provider slow
 * to its first token, fail or stall mid-stream, or substitute a token; they are switched per test
 * on the running nodes.
 */

/** Per output token, and per input (prompt) token, in base units. */
const TOKEN_PRICE = 20_000n;
const INPUT_PRICE = 3_000n;
/** A cap (per million tokens) that every honest provider here is within. */
const CAP: TokenPriceCap = { input: INPUT_PRICE * 1_000_000n, output: TOKEN_PRICE * 1_000_000n };
const MESSAGES = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'Name three colours.' },
];

type Provider = {
  readonly account: number;
  readonly address: Address;
  node: GlassboxNode;
  readonly faults: TokenFaults;
  readonly dir: { dir: string; remove(): Promise<void> };
};

let chain: TestChain;
let tiny: string;
let pkg: ModelPackage;
const providers: Provider[] = [];
const clients: Client[] = [];

/** One thread per engine, the LLM engine first (the node declares its runtime profile). */
function engines(faults: TokenFaults): Engines {
  return tokenEnginesWithFaults(
    defaultEngines({ onnx: { intraOpNumThreads: 1 }, llm: { intraOpNumThreads: 1 } }),
    faults,
  );
}

async function startProvider(account: number, over: { price?: bigint; priceCacheMs?: number } = {}) {
  const dir = await tempDir();
  const faults: TokenFaults = {};
  const models = [
    {
      model: tiny,
      price: (over.price ?? TOKEN_PRICE).toString(),
      inputPrice: INPUT_PRICE.toString(),
    },
  ];
  const config = parseNodeConfig(
    nodeConfig(chain, account, dir.dir, {
      models,
      ...(over.priceCacheMs === undefined ? {} : { priceCacheMs: over.priceCacheMs }),
    }),
  );
  const node = await (await createNode(config, { engines: engines(faults) })).start();
  const p = { account, address: getAddress(node.address), node, faults, dir };
  providers.push(p);
  return p;
}

async function newClient(): Promise<Client> {
  const c = await createClient({
    rpcUrl: chain.anvil.rpcUrl,
    chainId: chain.anvil.chainId,
    deployment: chain.deployment,
    account: chain.key(CLIENT[0]),
    pollingIntervalMs: 5,
    discoveryTtlMs: 60_000,
    timeoutMs: 60_000,
  });
  // mode 'local' re-checks on one thread too
  c.state.engines = Promise.resolve(defaultEngines({ llm: { intraOpNumThreads: 1 } }));
  clients.push(c);
  return c;
}

/** The providers in the order the SDK tries them (no health yet: stake, then price, then address). */
async function ranked(client: Client): Promise<Provider[]> {
  const candidates = await discoverProviders(client, { model: pkg.id });
  const order = rankProviders({ candidates, maxPrice: 2n ** 255n, health: client.state.health });
  return order.map((c) => providers.find((p) => p.address === c.address)!);
}

beforeAll(async () => {
  chain = await startTestChain();
  await fundClients(chain);
  tiny = (await llmExample('tiny-chat')).dir;
  pkg = (await llmExample('tiny-chat')).pkg;
  const llm = defaultEngines().list.find((e) => e.kind === 'tokens')!;
  await admitRuntime(chain.as(0), runtimeProfileJson(llm.profile));
  for (const account of [1, 2, 3]) await startProvider(account);
}, 180_000);

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => closeClient(c)));
  for (const p of providers)
    for (const key of Object.keys(p.faults)) delete p.faults[key as keyof TokenFaults];
});

afterAll(async () => {
  await Promise.all(providers.map((p) => p.node.stop().catch(() => undefined)));
  await Promise.all(providers.map((p) => p.dir.remove()));
  await chain?.stop();
});

const body = (over: Record<string, unknown> = {}) => ({
  model: pkg.manifest.name,
  messages: MESSAGES,
  max_tokens: 24,
  seed: 7,
  temperature: 0.8,
  ...over,
});

async function collect(stream: AsyncIterable<GenerationDelta>): Promise<GenerationDelta[]> {
  const out: GenerationDelta[] = [];
  for await (const d of stream) out.push(d);
  return out;
}

async function refusal(p: Promise<unknown>): Promise<GlassboxError> {
  try {
    await p;
  } catch (error) {
    if (isGlassboxError(error)) return error;
    throw error;
  }
  throw new Error('expected a GlassboxError');
}

describe('chat', () => {
  it('answers the same generation whole and streamed, every receipt verified and paid', async () => {
    const client = await newClient();
    const whole = await chat(client, { body: body(), maxPrice: CAP });
    expect(whole.model).toBe(pkg.id);
    expect(whole.report).toMatchObject({ ok: true, mode: 'receipt', failovers: 0, hedged: false });
    expect(whole.segments).toHaveLength(1);
    expect(whole.receipts).toHaveLength(1);
    expect(whole.report.receipts[0]!.checks.every((c) => c.ok)).toBe(true);
    expect(whole.receipts[0]!.receipt.outputHash).toBe(llmOutputHash(whole.outputIds));
    expect(whole.usage).toEqual({
      promptTokens: whole.promptIds.length,
      completionTokens: whole.outputIds.length,
    });
    expect(whole.text.length).toBeGreaterThan(0);

    const stream = chat(client, { body: body(), maxPrice: CAP, stream: true });
    const deltas = await collect(stream);
    const streamed = await stream.result;
    expect(deltas.map((d) => d.text).join('')).toBe(whole.text);
    expect(deltas.flatMap((d) => d.tokenIds)).toEqual(whole.outputIds);
    expect(streamed.outputIds).toEqual(whole.outputIds);
    expect(streamed.text).toBe(whole.text);
    expect(streamed.finishReason).toBe(whole.finishReason);
    expect(streamed.report.ok).toBe(true);
    // The receipts' prices are what the client owes (pay-after), to the base unit.
    const owed = [...client.state.payments.values()].reduce((a, b) => a + b.charged, 0n);
    expect(owed).toBe(whole.receipts[0]!.receipt.price + streamed.receipts[0]!.receipt.price);
  });

  it("carries the chunks' logprobs as one answer's, one per token", async () => {
    const client = await newClient();
    const result = await chat(client, { body: body({ logprobs: true, top_logprobs: 2 }), maxPrice: CAP });
    const content = (result.logprobs as { content: { token: string; top_logprobs: unknown[] }[] }).content;
    expect(content).toHaveLength(result.outputIds.length);
    expect(content.every((lp) => lp.top_logprobs.length === 2)).toBe(true);
    expect(result.report.ok).toBe(true);
  });

  it('hashes the request as the provider does: text parts, max_completion_tokens, top_k -1, one stop string', async () => {
    const client = await newClient();
    const result = await chat(client, {
      body: {
        model: pkg.manifest.name,
        messages: [
          {
            role: 'system',
            content: [
              { type: 'text', text: 'You are ' },
              { type: 'text', text: 'terse.' },
            ],
          },
          { role: 'user', content: 'Name three colours.' },
        ],
        max_completion_tokens: 10,
        max_tokens: 50,
        top_k: -1,
        top_p: 0.9,
        stop: 'zzz',
        temperature: 0.7,
        seed: '18446744073709551615',
      },
      maxPrice: CAP,
    });
    expect(result.report.ok).toBe(true);
    expect(result.seed).toBe(2n ** 64n - 1n);
    expect(result.outputIds.length).toBeLessThanOrEqual(10);
  });

  it('picks a seed when the body has none, reports it, and the same seed samples the same', async () => {
    const client = await newClient();
    const first = await chat(client, { body: body({ seed: undefined }), maxPrice: CAP });
    expect(typeof first.seed).toBe('bigint');
    const again = await chat(client, { body: body({ seed: first.seed.toString() }), maxPrice: CAP });
    expect(again.outputIds).toEqual(first.outputIds);
    expect(again.seed).toBe(first.seed);
  });

  it('completes a raw prompt on /v1/completions', async () => {
    const client = await newClient();
    const result = await completion(client, {
      body: { model: pkg.id, prompt: 'Once upon a time', max_tokens: 8, seed: 3 },
      maxPrice: CAP,
    });
    expect(result.report.ok).toBe(true);
    expect(result.outputIds.length).toBeGreaterThan(0);
    expect(result.outputIds.length).toBeLessThanOrEqual(8);
  });

  it('fails over before the first token when the first provider is down', async () => {
    const client = await newClient();
    const [first] = await ranked(client);
    await first!.node.stop();
    try {
      const result = await chat(client, { body: body(), maxPrice: CAP, hedgeAfterMs: false });
      expect(result.report.ok).toBe(true);
      expect(result.segments[0]!.provider).not.toBe(first!.address);
      expect(result.report.rejected.map((r) => r.provider)).toEqual([first!.address]);
      expect(result.report.rejected[0]!.code).toBe('PROVIDER_UNAVAILABLE');
      expect(client.state.health.get(first!.address)?.failures).toBe(1);
    } finally {
      first!.node = await restart(first!);
    }
  });

  it('hedges a slow first token: a second provider races and wins', async () => {
    const client = await newClient();
    const [slow, fast] = await ranked(client);
    slow!.faults.firstTokenDelayMs = 20_000;
    const t0 = performance.now();
    const result = await chat(client, { body: body(), maxPrice: CAP, hedgeAfterMs: 300 });
    expect(performance.now() - t0).toBeLessThan(15_000);
    expect(result.report.hedged).toBe(true);
    expect(result.segments.map((s) => s.provider)).toEqual([fast!.address]);
    expect(result.report.ok).toBe(true);
  });

  it('continues a stream on the next provider when the first fails mid-stream: the same text, no break', async () => {
    const client = await newClient();
    const reference = await chat(client, { body: body(), maxPrice: CAP });
    const [failing] = await ranked(client);
    failing!.faults.failAfterTokens = 4;
    const stream = chat(client, { body: body(), maxPrice: CAP, stream: true });
    const deltas = await collect(stream);
    const result = await stream.result;
    expect(deltas.map((d) => d.text).join('')).toBe(reference.text);
    expect(deltas.flatMap((d) => d.tokenIds)).toEqual(reference.outputIds);
    expect(result.outputIds).toEqual(reference.outputIds);
    expect(result.segments).toHaveLength(2);
    expect(result.segments[0]).toMatchObject({ provider: failing!.address, fromToken: 0, toToken: 4 });
    expect(result.segments[0]!.cut).toMatch(/RUN_FAILED/);
    expect(result.segments[0]!.receipt).toBeUndefined();
    expect(result.segments[1]).toMatchObject({ fromToken: 4, toToken: reference.outputIds.length });
    expect(result.segments[1]!.report?.ok).toBe(true);
    expect(result.report.failovers).toBe(1);
    // The first 4 tokens have no receipt: delivered, but not verified.
    expect(result.report.ok).toBe(false);

    // In local mode the re-check of the whole generation covers them (a fresh client, whose first
    // provider fails: this one now tries the failing provider last).
    const fresh = await newClient();
    delete failing!.faults.failAfterTokens;
    const [first] = await ranked(fresh);
    first!.faults.failAfterTokens = 4;
    const local = chat(fresh, { body: body(), maxPrice: CAP, stream: true, mode: 'local' });
    await collect(local);
    const checked = await local.result;
    expect(checked.outputIds).toEqual(reference.outputIds);
    expect(checked.report.failovers).toBe(1);
    expect(checked.report.recheck).toMatchObject({ ok: true });
    expect(checked.report.recheck!.margins.positions).toBe(reference.outputIds.length);
    expect(checked.report.ok).toBe(true);
  });

  it("continues a stream after a stall, and covers the stalled provider's tokens with the receipt it recorded", async () => {
    const client = await newClient();
    const reference = await chat(client, { body: body(), maxPrice: CAP });
    const [stalling] = await ranked(client);
    stalling!.faults.stallAfterTokens = 3;
    const stream = chat(client, {
      body: body(),
      maxPrice: CAP,
      stream: true,
      firstTokenTimeoutMs: 3_000,
    });
    const deltas = await collect(stream);
    const result = await stream.result;
    expect(deltas.map((d) => d.text).join('')).toBe(reference.text);
    expect(result.segments[0]).toMatchObject({ provider: stalling!.address, toToken: 3 });
    expect(result.segments[0]!.cut).toMatch(/PROVIDER_TIMEOUT/);
    expect(result.report.rejected[0]).toMatchObject({
      provider: stalling!.address,
      code: 'PROVIDER_TIMEOUT',
    });
    // The stalled provider recorded a receipt for the 3 tokens it delivered, fetched and verified.
    expect(result.segments[0]!.report?.ok).toBe(true);
    expect(result.receipts.map((r) => r.receipt.provider)).toEqual([
      stalling!.address,
      result.segments[1]!.provider,
    ]);
    expect(result.report.ok).toBe(true);
  });

  it('ends a stream whose provider stalled after its last token, with nothing left to continue', async () => {
    const client = await newClient();
    const reference = await chat(client, { body: body({ max_tokens: 6 }), maxPrice: CAP });
    expect(reference.finishReason).toBe('length');
    const [stalling] = await ranked(client);
    stalling!.faults.stallAtEnd = true;
    const stream = chat(client, {
      body: body({ max_tokens: 6 }),
      maxPrice: CAP,
      stream: true,
      firstTokenTimeoutMs: 3_000,
    });
    const deltas = await collect(stream);
    const result = await stream.result;
    expect(deltas.flatMap((d) => d.tokenIds)).toEqual(reference.outputIds);
    expect(result.finishReason).toBe('length');
    expect(result.segments).toHaveLength(1);
    expect(result.segments[0]).toMatchObject({ provider: stalling!.address, toToken: 6 });
    expect(result.segments[0]!.report?.ok).toBe(true); // the receipt it recorded for the 6 tokens
    expect(result.report.ok).toBe(true);
  });

  it('a whole answer keeps only receipted tokens: a provider failing mid-way is replaced from the start', async () => {
    const client = await newClient();
    const reference = await chat(client, { body: body(), maxPrice: CAP });
    const [failing] = await ranked(client);
    failing!.faults.failAfterTokens = 4;
    const result = await chat(client, { body: body(), maxPrice: CAP });
    expect(result.outputIds).toEqual(reference.outputIds);
    expect(result.segments).toHaveLength(1);
    expect(result.segments[0]!.provider).not.toBe(failing!.address);
    expect(result.report.rejected[0]).toMatchObject({ provider: failing!.address, code: 'RUN_FAILED' });
    expect(result.report.ok).toBe(true);
  });

  it('compares a quorum of 3 and names the provider that substituted a token', async () => {
    const client = await newClient();
    const honest = await chat(client, { body: body(), maxPrice: CAP, mode: { quorum: 3 } });
    expect(honest.report.quorum).toMatchObject({ k: 3, majority: 3, answered: 3 });
    expect(honest.receipts).toHaveLength(3);
    expect(honest.evidence).toBeUndefined();

    const liar = providers[1]!;
    liar.faults.substituteAt = 2;
    const result = await chat(client, { body: body(), maxPrice: CAP, mode: { quorum: 3 } });
    expect(result.outputIds).toEqual(honest.outputIds);
    expect(result.report.quorum).toMatchObject({ k: 3, majority: 2, answered: 3 });
    expect(result.receipts.map((r) => r.receipt.provider)).not.toContain(liar.address);
    expect(result.evidence?.disagreements.map((d) => d.provider)).toEqual([liar.address]);
    expect(result.evidence?.disagreements[0]!.reason).toMatch(/from token 2/);
  });

  it('re-checks the generation locally in local mode', async () => {
    const client = await newClient();
    const result = await chat(client, { body: body(), maxPrice: CAP, mode: 'local' });
    expect(result.report.mode).toBe('local');
    expect(result.report.recheck).toMatchObject({ ok: true });
    expect(result.report.recheck!.margins.positions).toBe(result.outputIds.length);
    expect(result.report.ok).toBe(true);
  });

  it('fails a whole answer whose local re-check finds a token the sampler would not pick', async () => {
    const client = await newClient();
    const [liar] = await ranked(client);
    liar!.faults.substituteAt = 5;
    const error = await refusal(
      chat(client, { body: body(), maxPrice: CAP, mode: 'local', hedgeAfterMs: false }),
    );
    expect(error.code).toBe('VERIFICATION_FAILED');
    const report = error.details.report as {
      ok: boolean;
      receipts: { ok: boolean }[];
      recheck: { ok: boolean; firstFailure: { check: string; position: number } };
    };
    // The receipt itself is consistent (the liar signed what it sent); the re-check is not.
    expect(report.receipts.map((r) => r.ok)).toEqual([true]);
    expect(report.recheck).toMatchObject({ ok: false, firstFailure: { check: 'margins', position: 5 } });
  });

  it("cancels the generation when the stream's reader stops reading", async () => {
    const client = await newClient();
    for (const p of providers) p.faults.stallAfterTokens = 2; // the generation cannot end by itself
    const stream = chat(client, { body: body(), maxPrice: CAP, stream: true });
    const seen: GenerationDelta[] = [];
    for await (const delta of stream) {
      seen.push(delta);
      break;
    }
    const error = await refusal(stream.result);
    expect(seen).toHaveLength(1);
    expect(error.code).toBe('ABORTED');
  });

  it('refuses bad requests naming the field, before any provider is asked', async () => {
    const client = await newClient();
    const noMessages = await refusal(chat(client, { body: { model: pkg.id } as never, maxPrice: CAP }));
    expect(noMessages).toMatchObject({ code: 'REQUEST_INVALID', field: 'messages' });
    const badTemp = await refusal(chat(client, { body: body({ temperature: 3 }), maxPrice: CAP }));
    expect(badTemp).toMatchObject({ code: 'REQUEST_INVALID', field: 'temperature' });
    const unknown = await refusal(chat(client, { body: body({ model: 'no-such-model' }), maxPrice: CAP }));
    expect(unknown).toMatchObject({ code: 'MODEL_NOT_FOUND', field: 'model' });
    const stream = chat(client, { body: body(), maxPrice: CAP, stream: true, mode: { quorum: 2 } });
    expect(await refusal(stream.result)).toMatchObject({ code: 'REQUEST_INVALID', field: 'mode' });
  });

  it('stops at a refusal two providers give alike (the request is at fault), naming its field', async () => {
    const client = await newClient();
    const context = pkg.manifest.format === 'llm' ? pkg.manifest.llm.contextLength : 0;
    const error = await refusal(chat(client, { body: body({ max_tokens: context + 1 }), maxPrice: CAP }));
    expect(error).toMatchObject({ code: 'REQUEST_INVALID', field: 'max_tokens' });
    expect((error.details.rejected as unknown[]).length).toBe(2);
  });

  it('lists the LLM models on offer with their cheapest prices', async () => {
    const client = await newClient();
    const models = await listLlmModels(client);
    expect(models).toEqual([
      {
        id: pkg.id,
        name: pkg.manifest.name,
        contextLength: pkg.manifest.format === 'llm' ? pkg.manifest.llm.contextLength : 0,
        providers: 3,
        price: { input: INPUT_PRICE, output: TOKEN_PRICE },
      },
    ]);
  });
});

describe('prices', () => {
  it('routes around a provider priced above the cap, and refuses when every one is', async () => {
    const expensive = await startProvider(4, { price: TOKEN_PRICE * 10n });
    try {
      const client = await newClient();
      for (let i = 0; i < 3; i++) {
        const result = await chat(client, { body: body({ seed: i }), maxPrice: CAP });
        expect(result.segments.map((s) => s.provider)).not.toContain(expensive.address);
      }
      const tooLow = { input: CAP.input, output: TOKEN_PRICE * 1_000_000n - 1n };
      const error = await refusal(chat(client, { body: body(), maxPrice: tooLow }));
      expect(error).toMatchObject({ code: 'PRICE_TOO_HIGH', field: 'maxPrice' });
    } finally {
      await stopProvider(expensive);
    }
  });

  it('rejects a receipt at a price that is not the offer in force, and answers from the next provider', async () => {
    // A provider that read its price before it lowered its offer, and charges the old one.
    const stale = await startProvider(5, { price: TOKEN_PRICE + 1n, priceCacheMs: 600_000 });
    try {
      const warm = await newClient();
      await chat(warm, {
        body: body(),
        maxPrice: CAP,
        exclude: providers.filter((p) => p !== stale).map((p) => p.address),
      }).catch(() => undefined);
      await setOffer(chain.as(5), { model: pkg.id, price: TOKEN_PRICE - 1n, inputPrice: INPUT_PRICE });
      const client = await newClient();
      const order = await ranked(client);
      expect(order[0]!.address).toBe(stale.address); // staked alike: the cheapest first
      const result = await chat(client, { body: body(), maxPrice: CAP, hedgeAfterMs: false });
      expect(result.report.ok).toBe(true);
      expect(result.segments[0]!.provider).not.toBe(stale.address);
      const rejected = result.report.rejected[0]!;
      expect(rejected).toMatchObject({ provider: stale.address, code: 'VERIFICATION_FAILED' });
      const price = rejected.report!.checks.find((c) => c.check === 'price')!;
      expect(price.ok).toBe(false);
      expect(price.detail).toMatch(/not .* \(the offer in force\)/);
    } finally {
      await stopProvider(stale);
    }
  });
});

/** Starts a stopped provider's node again (same account, same data). */
async function restart(p: Provider): Promise<GlassboxNode> {
  const config = parseNodeConfig(
    nodeConfig(chain, p.account, p.dir.dir, {
      models: [{ model: tiny, price: TOKEN_PRICE.toString(), inputPrice: INPUT_PRICE.toString() }],
    }),
  );
  return (await createNode(config, { engines: engines(p.faults) })).start();
}

async function stopProvider(p: Provider): Promise<void> {
  await p.node.stop();
  providers.splice(providers.indexOf(p), 1);
  await p.dir.remove();
  // The chain still lists it: paused, later tests don't try it.
  await pauseProvider(chain.as(p.account));
}
