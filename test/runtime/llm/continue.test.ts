import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isGlassboxError, type GlassboxError } from '../../../src/protocol/errors.js';
import {
  decodeLlmInput,
  llmInputData,
  llmInputHash,
  type LlmChatMessage,
  type LlmRequest,
} from '../../../src/protocol/llm.js';
import type { ModelPackage } from '../../../src/protocol/manifest.js';
import {
  recheckGeneration,
  type GenerateOptions,
  type GenerationEvent,
  type SamplingParams,
  type TokenEngine,
} from '../../../src/runtime/index.js';
import { createLlmEngine } from '../../../src/runtime/llm/engine.js';
import { llmExample } from '../../support/examples.js';

/*
 * Continuing a generation (docs/protocol.md, Continuing a generation): a provider handed the first
 * k output ids of a request as its prefix yields exactly the tokens, and the text deltas, that an
 * uninterrupted run yields after them. That is what lets a gateway fail over mid-stream without the
 * client's stream showing a seam.
 */

const engine: TokenEngine = createLlmEngine({ intraOpNumThreads: 1 });
afterAll(() => engine.close());

const GREEDY: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens: 40, stop: [] };
const SAMPLED: SamplingParams = { ...GREEDY, temperature: 0.9, topK: 40, topP: 0.95, seed: 42n };

type Token = Extract<GenerationEvent, { type: 'token' }>;
type Run = { readonly tokens: Token[]; readonly done: Extract<GenerationEvent, { type: 'done' }> };

async function run(ids: readonly number[], options: GenerateOptions, model = pkg): Promise<Run> {
  const tokens: Token[] = [];
  for await (const event of engine.generate(model, ids, options)) {
    if (event.type === 'token') tokens.push(event);
    else return { tokens, done: event };
  }
  throw new Error('no done event');
}

/**
 * Continues `whole` after its first k ids, and checks the continuation against it token by token:
 * the same ids, the same delta at every token, the done text = the whole text after what the first
 * k deltas showed.
 */
async function expectSeamless(whole: Run, params: SamplingParams, k: number): Promise<void> {
  const prefixIds = whole.done.outputIds.slice(0, k);
  const rest = await run(promptIds, {
    params: { ...params, maxTokens: params.maxTokens - k },
    prefixIds,
  });
  expect(rest.done.outputIds, `cut at ${k}`).toEqual(whole.done.outputIds.slice(k));
  expect(
    rest.tokens.map((t) => t.text),
    `cut at ${k}`,
  ).toEqual(whole.tokens.slice(k).map((t) => t.text));
  const shown = whole.tokens
    .slice(0, k)
    .map((t) => t.text)
    .join('');
  expect(shown + rest.done.text, `cut at ${k}`).toBe(whole.done.text);
  expect(rest.done.finishReason).toBe(whole.done.finishReason);
}

async function refusal(work: () => Promise<unknown>): Promise<GlassboxError> {
  try {
    await work();
  } catch (error) {
    if (isGlassboxError(error)) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

let pkg: ModelPackage;
let promptIds: readonly number[];
// a prompt in several scripts, so the output holds multi-byte characters split across tokens
const messages: LlmChatMessage[] = [
  { role: 'user', content: 'Écris trois mots sur les dragons 🐉, 用中文。' },
];
beforeAll(async () => {
  pkg = (await llmExample('tiny-chat')).pkg;
  promptIds = (await engine.prompt(pkg, { kind: 'chat', messages })).ids;
});

describe('continuing a generation from its first k ids', () => {
  it('greedy: the rest equals the uninterrupted run, ids and deltas, at several cuts', async () => {
    const whole = await run(promptIds, { params: GREEDY });
    expect(whole.done.outputIds).toHaveLength(GREEDY.maxTokens);
    for (const k of [1, 10, 39]) await expectSeamless(whole, GREEDY, k);
  });

  it('seeded sampling: the Philox position counts the prefix, so the rest is the same sample', async () => {
    const whole = await run(promptIds, { params: SAMPLED });
    for (const k of [1, 17]) await expectSeamless(whole, SAMPLED, k);
    // without the offset the continuation would be another sample: the seed's positions matter
    const other = await run(promptIds, { params: { ...SAMPLED, seed: 43n } });
    expect(other.done.outputIds).not.toEqual(whole.done.outputIds);
  });

  it('a cut inside a multi-byte character: the continuation shows the whole character', async () => {
    const whole = await run(promptIds, { params: SAMPLED });
    // a token whose delta is empty without any stop string holds an incomplete UTF-8 sequence
    const inside = whole.tokens.findIndex((t, i) => t.text === '' && i < whole.tokens.length - 1);
    expect(inside, 'the output splits a character across tokens').toBeGreaterThanOrEqual(0);
    const next = whole.tokens[inside + 1]!.text;
    expect(next.codePointAt(0)! > 0x7f).toBe(true);
    await expectSeamless(whole, SAMPLED, inside + 1);
  });

  it('a cut inside a held-back start of a stop string: the held text comes with the next delta', async () => {
    const plain = await run(promptIds, { params: GREEDY });
    const text = plain.done.text;
    // a stop string that starts like text from char 12 on but never completes: its start is held
    const never = `${text.slice(12, 18)}\u0007`;
    const held = await run(promptIds, { params: { ...GREEDY, stop: [never] } });
    expect(held.done.text).toBe(text);
    let shown = 0;
    const cuts: number[] = [];
    held.tokens.forEach((t, i) => {
      shown += t.text.length;
      const decoded = plain.tokens
        .slice(0, i + 1)
        .map((p) => p.text)
        .join('').length;
      if (shown < decoded) cuts.push(i + 1); // something was held back after token i
    });
    expect(cuts.length).toBeGreaterThan(0);
    for (const k of cuts.slice(0, 2)) await expectSeamless(held, { ...GREEDY, stop: [never] }, k);
    // and one that completes: the continuation stops at the same token, its text cut before it
    const stop = text.slice(20, 24);
    const stopped = await run(promptIds, { params: { ...GREEDY, stop: [stop] } });
    expect(stopped.done.finishReason).toBe('stop');
    const n = stopped.done.outputIds.length;
    await expectSeamless(stopped, { ...GREEDY, stop: [stop] }, n - 1);
  });

  it('refuses a prefix that is not an unfinished generation of this model, naming glassbox.prefix_ids', async () => {
    const whole = await run(promptIds, { params: GREEDY });
    const field = async (prefixIds: readonly number[], params = GREEDY) =>
      (await refusal(() => run(promptIds, { params, prefixIds }))).field;
    expect(await field([1, 151936])).toBe('glassbox.prefix_ids');
    expect(await field([1, -1])).toBe('glassbox.prefix_ids');
    expect(await field([1, 151645])).toBe('glassbox.prefix_ids'); // <|im_end|>, an EOS
    // its text already completes a stop string
    const stop = whole.done.text.slice(5, 8);
    expect(await field(whole.done.outputIds.slice(0, 20), { ...GREEDY, stop: [stop] })).toBe(
      'glassbox.prefix_ids',
    );
    const contextLength = (pkg.manifest as { llm: { contextLength: number } }).llm.contextLength;
    const room = contextLength - promptIds.length;
    expect(await field([1, 2], { ...GREEDY, maxTokens: room - 1 })).toBe('glassbox.prefix_ids');
    expect(await field([1, 2], { ...GREEDY, maxTokens: room + 1 })).toBe('max_tokens');
  });
});

describe('re-checking a continuation', () => {
  /** The normalized request a continuation after `prefixIds` answered, for `params` of the whole. */
  const requestOf = (params: SamplingParams, prefixIds: readonly number[]): LlmRequest => ({
    kind: 'chat',
    messages,
    model: pkg.id,
    params: { ...params, maxTokens: params.maxTokens - prefixIds.length },
    ...(prefixIds.length > 0 ? { prefixIds } : {}),
  });
  const continueFrom = async (whole: Run, params: SamplingParams, k: number, model = pkg) => {
    const prefixIds = whole.done.outputIds.slice(0, k);
    const rest = await run(
      promptIds,
      { params: { ...params, maxTokens: params.maxTokens - k }, prefixIds },
      model,
    );
    return { request: requestOf(params, prefixIds), outputIds: rest.done.outputIds };
  };

  it('an honest continuation passes from its stored data, every margin 0 at the offset positions', async () => {
    for (const params of [GREEDY, SAMPLED]) {
      const whole = await run(promptIds, { params });
      const { request, outputIds } = await continueFrom(whole, params, 15);
      const input = decodeLlmInput(llmInputData(request, promptIds));
      const report = await recheckGeneration(engine, pkg, {
        ...input,
        outputIds,
        completionTokens: outputIds.length,
      });
      expect(report.failure).toBeNull();
      expect(report.margins).toHaveLength(params.maxTokens - 15);
      expect(report.margins.every((m) => m.margin === 0 && !m.outside)).toBe(true);
      expect(report.termination.finishReason).toBe('length');
      // judged at positions 0.. instead of 15.. (no prefix), the same ids are not this sample
      if (params === SAMPLED) {
        const unshifted = await recheckGeneration(engine, pkg, {
          request: { ...request, prefixIds: undefined },
          promptIds: [...promptIds, ...whole.done.outputIds.slice(0, 15)],
          outputIds,
        });
        expect(unshifted.ok).toBe(false);
      }
    }
  });

  it('a stop string that begins in the prefix ends the continuation where the whole run ended', async () => {
    const text = (await run(promptIds, { params: GREEDY })).done.text;
    const params = { ...GREEDY, stop: [text.slice(20, 26)] };
    const whole = await run(promptIds, { params });
    const n = whole.done.outputIds.length;
    // cut so that the stop string's first characters are in the prefix: the last token completes it
    const { request, outputIds } = await continueFrom(whole, params, n - 1);
    expect(outputIds).toEqual(whole.done.outputIds.slice(n - 1));
    const report = await recheckGeneration(engine, pkg, { request, promptIds, outputIds });
    expect(report.ok).toBe(true);
    expect(report.termination.finishReason).toBe('stop');
    // claiming a token past it fails termination at output position 0
    const past = await recheckGeneration(engine, pkg, {
      request: { ...request, params: { ...request.params, maxTokens: 2 } },
      promptIds,
      outputIds: [...outputIds, 11],
    });
    expect(past.failure).toMatchObject({ check: 'termination', position: 0 });
  });

  it("the impostor's continuation (tiny-chat-int8) of an honest prefix is caught", async () => {
    const impostor = (await llmExample('tiny-chat-int8')).pkg;
    let caught = 0;
    for (const params of [GREEDY, SAMPLED]) {
      const whole = await run(promptIds, { params });
      const claim = await continueFrom(whole, params, 10, impostor);
      const honest = whole.done.outputIds.slice(10);
      const report = await recheckGeneration(engine, pkg, { ...claim, promptIds });
      const first = claim.outputIds.findIndex((id, t) => id !== honest[t]);
      if (first < 0) continue; // the very tokens the real model gives: nothing to catch
      expect(report.failure?.check).toBe('margins');
      expect(report.margins.slice(0, first).every((m) => m.margin === 0)).toBe(true);
      caught++;
    }
    expect(caught).toBeGreaterThan(0);
  });

  it('a tampered prefix is another request (inputHash); one that could not be unfinished fails the prompt check', async () => {
    const whole = await run(promptIds, { params: GREEDY });
    const { request, outputIds } = await continueFrom(whole, GREEDY, 12);
    const tampered = { ...request, prefixIds: request.prefixIds!.map((id, i) => (i === 3 ? id + 1 : id)) };
    expect(llmInputHash(tampered, promptIds)).not.toBe(llmInputHash(request, promptIds));
    const withEos = { ...request, prefixIds: [...request.prefixIds!.slice(0, 11), 151645] };
    const eos = await recheckGeneration(engine, pkg, { request: withEos, promptIds, outputIds });
    expect(eos.failure).toMatchObject({ check: 'prompt', position: 11 });
    expect(eos.failure?.reason).toMatch(/prefix item 11 is the EOS id 151645/);
    const stop = whole.done.text.slice(2, 5);
    const stopped = { ...request, params: { ...request.params, stop: [stop] } };
    const early = await recheckGeneration(engine, pkg, { request: stopped, promptIds, outputIds });
    expect(early.failure?.check).toBe('prompt');
    expect(early.failure?.reason).toMatch(/a stop string is complete at prefix item/);
  });
});
