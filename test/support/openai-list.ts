import { request as httpRequest } from 'node:http';
import OpenAI from 'openai';
import { expect, it } from 'vitest';
import type { ChatCompletionChunk } from '../../src/api/openai.js';
import type { LlmRequest } from '../../src/protocol/llm.js';
import { GlassboxError } from '../../src/protocol/errors.js';
import { defaultEngines, type Engines, type TokenEngine } from '../../src/runtime/index.js';
import { createEngines } from '../../src/runtime/registry.js';

/*
 * The list the official `openai` client must pass against anything that answers OpenAI's routes
 * for Glassbox (issue 14 acceptance): a provider (test/node/openai.test.ts) and the gateway
 * (test/gateway/openai.test.ts) run the same tests, so "the same list" can't drift. What differs
 * (the receipts, the models list, auth, payment) stays in each file. Also what both need around
 * it: engines that count the tokens they generate, and a client that leaves mid-stream.
 */

/** What the list needs of a server: a client for it and the model to ask for. */
export type OpenAiTarget = {
  readonly openai: OpenAI;
  /** The model's manifest name (the tests ask by name, and by id where said). */
  readonly name: string;
  readonly id: string;
};

/** The `glassbox` field's ids, which a provider's and the gateway's answers both carry. */
type Ids = { seed: string; promptTokenIds?: number[]; outputTokenIds?: number[] };
const idsOf = (answer: unknown) => (answer as { glassbox: Ids }).glassbox;

export const MESSAGES = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'Name three colours.' },
];

/** The request a provider hashed for the list's messages, rebuilt from what was sent and the disclosed seed. */
export function normalizedChat(
  model: string,
  body: { max_tokens: number; temperature: number; stop?: string[] },
  seed: string,
): LlmRequest {
  return {
    kind: 'chat',
    messages: MESSAGES,
    model,
    params: {
      temperature: body.temperature,
      topP: 1,
      topK: 0,
      seed: BigInt(seed),
      maxTokens: body.max_tokens,
      stop: body.stop ?? [],
    },
  } as LlmRequest;
}

/** A chat (whole, or as its chunks) with the list's defaults, `over` on top. */
export function openAiCalls(target: () => OpenAiTarget) {
  const defaults = () => ({
    model: target().name,
    messages: MESSAGES,
    max_tokens: 24,
    seed: 7,
    temperature: 0.8,
  });
  const chat = (over: Partial<OpenAI.ChatCompletionCreateParamsNonStreaming> = {}, ai = target().openai) =>
    ai.chat.completions.create({ ...defaults(), ...over });
  const streamChat = async <X = unknown>(over: Partial<OpenAI.ChatCompletionCreateParamsStreaming> = {}) => {
    const stream = await target().openai.chat.completions.create({ ...defaults(), ...over, stream: true });
    const chunks: ChatCompletionChunk<X>[] = [];
    for await (const chunk of stream) chunks.push(chunk as unknown as ChatCompletionChunk<X>);
    return chunks;
  };
  return { chat, streamChat };
}

export const textOf = (chunks: readonly ChatCompletionChunk<unknown>[]) =>
  chunks.flatMap((c) => c.choices.map((choice) => choice.delta.content ?? '')).join('');

/** Registers the list's tests in the current describe block. */
export function openAiClientList(target: () => OpenAiTarget): void {
  const { chat, streamChat } = openAiCalls(target);

  it('stream: role first, finish_reason last, the glassbox chunk last; the text equals the non-stream text for the seed', async () => {
    const whole = await chat({ seed: 11 });
    const chunks = await streamChat({ seed: 11 });
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const choiceChunks = chunks.filter((c) => c.choices.length > 0);
    expect(choiceChunks.at(-1)!.choices[0]!.finish_reason).toBe(whole.choices[0]!.finish_reason);
    expect(choiceChunks.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null)).toBe(true);
    expect(textOf(chunks)).toBe(whole.choices[0]!.message.content);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(idsOf(last).seed).toBe('11');
    expect(idsOf(last).outputTokenIds).toEqual(idsOf(whole).outputTokenIds);
    expect(chunks.every((c) => !('usage' in c))).toBe(true); // no include_usage: no usage anywhere
  });

  it("chat.completions.stream() (openai-node's strict stream helper): its final completion is the non-stream answer", async () => {
    const whole = await chat({ seed: 12, logprobs: true, top_logprobs: 2 });
    const runner = target().openai.chat.completions.stream({
      model: target().name,
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

  it('stream_options.include_usage: a usage chunk with choices [], usage null on every other', async () => {
    const chunks = await streamChat({ stream_options: { include_usage: true } });
    const withUsage = chunks.filter((c) => c.usage);
    expect(withUsage).toHaveLength(1);
    expect(withUsage[0]!.choices).toEqual([]);
    expect(chunks.filter((c) => !c.usage).every((c) => c.usage === null)).toBe(true);
    expect(withUsage[0]!.usage!.completion_tokens).toBe(idsOf(chunks.at(-1)).outputTokenIds!.length);
  });

  it('stop: the text ends before the stop string, finish_reason stop', async () => {
    const free = await chat({ max_tokens: 40, temperature: 0 });
    const text = free.choices[0]!.message.content!;
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
    expect(stop.length).toBe(2);
    const stopped = await chat({ max_tokens: 40, temperature: 0, stop: [stop] });
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    expect(stopped.choices[0]!.message.content).toBe(text.slice(0, text.indexOf(stop)));
    expect(idsOf(stopped).outputTokenIds!.length).toBeLessThan(idsOf(free).outputTokenIds!.length);
  });

  it('max_tokens (and max_completion_tokens): finish_reason length at exactly that many tokens', async () => {
    const a = await chat({ max_tokens: 5, temperature: 0 });
    expect(a.choices[0]!.finish_reason).toBe('length');
    expect(a.usage!.completion_tokens).toBe(5);
    const b = await chat({ max_tokens: undefined, max_completion_tokens: 6, temperature: 0 });
    expect(b.choices[0]!.finish_reason).toBe('length');
    expect(b.usage!.completion_tokens).toBe(6);
  });

  it('seed: the same seed gives the same text, another seed another; none: the seed picked is disclosed and replays', async () => {
    const [a, b, c] = await Promise.all([
      chat({ seed: 99, temperature: 1 }),
      chat({ seed: 99, temperature: 1 }),
      chat({ seed: 100, temperature: 1 }),
    ]);
    expect(a.choices[0]!.message.content).toBe(b.choices[0]!.message.content);
    expect(idsOf(a).outputTokenIds).not.toEqual(idsOf(c).outputTokenIds);
    const picked = await chat({ seed: undefined, temperature: 1 });
    const seed = idsOf(picked).seed;
    expect(seed).toMatch(/^\d+$/);
    const again = await chat({ seed: seed as unknown as number, temperature: 1 });
    expect(idsOf(again).outputTokenIds).toEqual(idsOf(picked).outputTokenIds);
  });

  it('logprobs in the chat format: token, logprob, bytes, top_logprobs; streamed alike', async () => {
    const answer = await chat({ logprobs: true, top_logprobs: 3, max_tokens: 6, temperature: 0 });
    const content = answer.choices[0]!.logprobs!.content!;
    expect(content.length).toBe(6);
    for (const t of content) {
      expect(typeof t.token).toBe('string');
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(Array.isArray(t.bytes)).toBe(true);
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.logprob).toBeCloseTo(t.top_logprobs[0]!.logprob, 5); // greedy: the most likely token
    }
    const streamed = await streamChat({ logprobs: true, top_logprobs: 3, max_tokens: 6, temperature: 0 });
    const tokens = streamed.flatMap((c) => c.choices.flatMap((ch) => ch.logprobs?.content ?? []));
    expect(tokens.map((t) => t.token)).toEqual(content.map((t) => t.token));
    const none = await chat({ logprobs: true, max_tokens: 3 });
    expect(none.choices[0]!.logprobs!.content!.every((t) => t.top_logprobs.length === 0)).toBe(true);
  });

  it('completions: text_completion, whole and streamed alike', async () => {
    const body = {
      model: target().id,
      prompt: 'Once upon a time',
      max_tokens: 12,
      seed: 3,
      temperature: 0.7,
    };
    const whole = await target().openai.completions.create(body);
    expect(whole.object).toBe('text_completion');
    expect(whole.choices[0]!.finish_reason).toBe('length');
    const stream = await target().openai.completions.create({ ...body, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(whole.choices[0]!.text);
  });

  it('an unknown model: 404 NotFoundError, code model_not_found, param model', async () => {
    const error = await chat({ model: 'no-such-model' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    const e = error as InstanceType<typeof OpenAI.NotFoundError>;
    expect(e.status).toBe(404);
    expect(e.code).toBe('model_not_found');
    expect(e.param).toBe('model');
    expect(e.type).toBe('invalid_request_error');
  });

  it('bad input: 400 naming the field (a prompt over the context, max_tokens past it included)', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ messages: [{ role: 'user', content: { text: 'hi' } }] }, 'messages.0.content'],
      [{ messages: [{ role: 'user', content: 'word '.repeat(5000) }] }, 'messages'],
      [{ max_tokens: 1e9 }, 'max_tokens'],
      [{ tools: [{ type: 'web_search_preview' }] }, 'tools.0.type'],
      [{ n: 3 }, 'n'],
    ];
    for (const [over, param] of cases) {
      const error = await chat(over as never).catch((e: unknown) => e);
      expect(error, param).toBeInstanceOf(OpenAI.BadRequestError);
      expect((error as InstanceType<typeof OpenAI.BadRequestError>).param, param).toBe(param);
      expect((error as InstanceType<typeof OpenAI.BadRequestError>).type).toBe('invalid_request_error');
    }
  });
}

/**
 * The real engines (onnxruntime on one thread), the token engine's generate counted into
 * `generated` (one entry per generation, the last one last), so that a client going away can be
 * shown to stop the generation. `fail(seed, tokens)` may stand for a runtime failure mid-stream.
 */
export function countingEngines(
  generated: number[],
  fail: (seed: bigint, tokens: number) => boolean = () => false,
): Engines {
  const counted = (engine: TokenEngine): TokenEngine => ({
    ...engine,
    async *generate(p, promptIds, options) {
      const at = generated.push(0) - 1;
      for await (const event of engine.generate(p, promptIds, options)) {
        if (event.type === 'token') generated[at]! += 1;
        if (fail(options.params.seed, generated[at]!))
          throw new GlassboxError('RUN_FAILED', 'the runtime failed (test)');
        yield event;
      }
    },
  });
  const engines = defaultEngines({ onnx: { intraOpNumThreads: 1 }, llm: { intraOpNumThreads: 1 } });
  return createEngines(engines.list.map((e) => (e.kind === 'tokens' ? counted(e) : e)));
}

/**
 * Posts a streamed chat and goes away (destroys the connection) once `events` data events came;
 * resolves with how many came by then.
 */
export function leaveMidStream(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  events = 8,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const req = httpRequest(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
    });
    req.on('error', () => undefined);
    req.on('response', (res) => {
      let seen = 0;
      res.on('data', (data: Buffer) => {
        seen += data
          .toString()
          .split('\n\n')
          .filter((e) => e.startsWith('data: {')).length;
        if (seen >= events) {
          req.destroy();
          resolve(seen);
        }
      });
      res.on('error', () => undefined);
      res.on('end', () => reject(new Error('the stream ended before the client left')));
    });
    req.end(JSON.stringify(body));
  });
}
