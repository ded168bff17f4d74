import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyChatOnnxWithoutLogitsToKeep } from '../../../examples/models/llm/tiny-chat.mjs';
import { isGlassboxError, type GlassboxError } from '../../../src/protocol/errors.js';
import type { ModelPackage } from '../../../src/protocol/manifest.js';
import { runtimeHash } from '../../../src/protocol/runtime-profile.js';
import { tokenMargin } from '../../../src/protocol/sampling.js';
import {
  defaultEngines,
  type GenerateOptions,
  type GenerationEvent,
  type SamplingParams,
  type TokenEngine,
} from '../../../src/runtime/index.js';
import { createLlmEngine, type LlmEngineOptions } from '../../../src/runtime/llm/engine.js';
import { createMemoryStore, loadModel, packLlmFolder } from '../../../src/store/index.js';
import { llmExample as example } from '../../support/examples.js';

const engines: TokenEngine[] = [];
let shared: TokenEngine | undefined;
/** An engine on one thread; the default one is shared (loading the model takes a while). */
function engine(options?: LlmEngineOptions): TokenEngine {
  if (!options && shared) return shared;
  const e = createLlmEngine({ intraOpNumThreads: 1, ...options });
  engines.push(e);
  if (!options) shared = e;
  return e;
}
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});

const GREEDY: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens: 48, stop: [] };
const CHAT = [
  { role: 'system', content: 'You are a terse assistant.' },
  { role: 'user', content: 'Tell me about dragons, in three words. 😀' },
] as const;

type Run = {
  readonly tokens: Extract<GenerationEvent, { type: 'token' }>[];
  readonly done: Extract<GenerationEvent, { type: 'done' }>;
};

async function run(
  e: TokenEngine,
  pkg: ModelPackage,
  ids: readonly number[],
  options: GenerateOptions,
): Promise<Run> {
  const tokens: Run['tokens'] = [];
  let done: Run['done'] | undefined;
  for await (const event of e.generate(pkg, ids, options)) {
    if (event.type === 'token') tokens.push(event);
    else done = event;
  }
  if (!done) throw new Error('no done event');
  return { tokens, done };
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

const V = 151936;
const rowOf = (rows: readonly Float32Array[], t: number) => rows[t]!;

const llmExample = async (name: 'tiny-chat'): Promise<ModelPackage> => (await example(name)).pkg;

let pkg: ModelPackage;
let chatIds: readonly number[];
beforeAll(async () => {
  pkg = await llmExample('tiny-chat');
  chatIds = (await engine().prompt(pkg, { kind: 'chat', messages: CHAT })).ids;
});

describe('templating and tokenizing', () => {
  it("renders a chat with Qwen3's ChatML template and the generation prompt, special tokens once", async () => {
    const e = engine();
    const prompt = await e.prompt(pkg, { kind: 'chat', messages: CHAT });
    expect(prompt.text).toBe(
      '<|im_start|>system\nYou are a terse assistant.<|im_end|>\n' +
        '<|im_start|>user\nTell me about dragons, in three words. 😀<|im_end|>\n' +
        '<|im_start|>assistant\n',
    );
    // <|im_start|> is 151644, <|im_end|> 151645: three and two, not doubled by tokenizing
    expect(prompt.ids.filter((id) => id === 151644)).toHaveLength(3);
    expect(prompt.ids.filter((id) => id === 151645)).toHaveLength(2);
    expect(prompt.ids.slice(0, 3)).toEqual([151644, 8948, 198]); // "<|im_start|>", "system", "\n"
    expect(prompt.ids.slice(-3)).toEqual([151644, 77091, 198]); // "<|im_start|>", "assistant", "\n"
    expect(await e.decode(pkg, prompt.ids)).toBe(prompt.text.replace(/<\|im_(start|end)\|>/g, ''));
  });

  it('tokenizes a raw prompt as it is, without a template', async () => {
    const e = engine();
    const prompt = await e.prompt(pkg, { kind: 'completion', prompt: 'Once upon a time' });
    expect(prompt).toEqual({ text: 'Once upon a time', ids: [12522, 5193, 264, 882] });
  });

  it('refuses messages of the wrong shape, naming the field', async () => {
    const e = engine();
    const bad = await refusal(() =>
      e.prompt(pkg, { kind: 'chat', messages: [{ role: 'wizard', content: 'hi' }] as never }),
    );
    expect([bad.code, bad.field]).toEqual(['REQUEST_INVALID', 'messages[0].role']);
    const noContent = await refusal(() =>
      e.prompt(pkg, { kind: 'chat', messages: [{ role: 'user', content: 3 }] as never }),
    );
    expect(noContent.field).toBe('messages[0].content');
    expect((await refusal(() => e.prompt(pkg, { kind: 'chat', messages: [] }))).field).toBe('messages');
  });
});

describe('generating', () => {
  it('greedy is deterministic and picks the argmax of the teacher-forced pass at every position', async () => {
    const e = engine();
    const first = await run(e, pkg, chatIds, { params: GREEDY });
    const second = await run(e, pkg, chatIds, { params: GREEDY });
    expect(second.done.outputIds).toEqual(first.done.outputIds);
    expect(first.done.outputIds).toHaveLength(GREEDY.maxTokens);
    expect(first.done.finishReason).toBe('length');
    const rows = await e.score(pkg, chatIds, first.done.outputIds);
    expect(rows).toHaveLength(first.done.outputIds.length);
    expect(rows.every((row) => row.length === V)).toBe(true);
    first.done.outputIds.forEach((id, t) => {
      expect(tokenMargin(rowOf(rows, t), GREEDY, 0n, t, id)).toEqual({ margin: 0, outside: false });
    });
  });

  it('gives the prefill logits bit for bit, and step logits within float rounding of the one-pass ones', async () => {
    // onnxruntime's CPU MatMul takes a GEMV path when the left operand has one row: the attention
    // products of a decode step (one new position) sum in another order than a pass over many
    // positions. Every other operator is bit-identical (measured by exposing every intermediate).
    const e = engine();
    const { tokens, done } = await run(e, pkg, chatIds, { params: GREEDY, logprobs: 0 });
    const rows = await e.score(pkg, chatIds, done.outputIds);
    const logSoftmax = (row: Float32Array, id: number) => {
      let max = -Infinity;
      for (const v of row) if (v > max) max = v;
      let sum = 0;
      for (const v of row) sum += Math.exp(v - max);
      return row[id]! - (max + Math.log(sum));
    };
    expect(tokens[0]!.logprob!.logprob).toBe(logSoftmax(rowOf(rows, 0), done.outputIds[0]!));
    tokens.forEach((token, t) =>
      expect(Math.abs(token.logprob!.logprob - logSoftmax(rowOf(rows, t), token.id))).toBeLessThan(1e-4),
    );
  });

  it('samples reproducibly by seed, and the seed matters', async () => {
    const e = engine();
    const params = { ...GREEDY, temperature: 0.8, topP: 0.95, topK: 50, seed: 42n, maxTokens: 32 };
    const a = await run(e, pkg, chatIds, { params });
    const b = await run(e, pkg, chatIds, { params });
    const c = await run(e, pkg, chatIds, { params: { ...params, seed: 43n } });
    expect(b.done.outputIds).toEqual(a.done.outputIds);
    expect(c.done.outputIds).not.toEqual(a.done.outputIds);
    const rows = await e.score(pkg, chatIds, a.done.outputIds);
    const margins = a.done.outputIds.map((id, t) => tokenMargin(rowOf(rows, t), params, 42n, t, id));
    expect(margins.filter((m) => m.outside)).toEqual([]);
    expect(Math.max(...margins.map((m) => m.margin))).toBeLessThan(1e-4);
  });

  it('streams text deltas that concatenate to the final text, which is the decoded output', async () => {
    const e = engine();
    const { tokens, done } = await run(e, pkg, chatIds, { params: { ...GREEDY, maxTokens: 64 } });
    expect(tokens.map((t) => t.text).join('')).toBe(done.text);
    expect(tokens.map((t) => t.id)).toEqual(done.outputIds);
    expect(done.text).toBe(await e.decode(pkg, done.outputIds));
    expect(done.durationMs).toBeGreaterThan(0);
  });

  it('stops at the first stop string: text cut before it, ids keeping the token that completed it', async () => {
    const e = engine();
    const whole = await run(e, pkg, chatIds, { params: { ...GREEDY, maxTokens: 64 } });
    const text = whole.done.text;
    // a 4-character piece from the middle, and a later one: the earlier occurrence wins
    const stop = text.slice(30, 34);
    const later = text.slice(50, 53);
    const at = text.indexOf(stop);
    const { tokens, done } = await run(e, pkg, chatIds, {
      params: { ...GREEDY, maxTokens: 64, stop: [later, stop] },
    });
    expect(done.finishReason).toBe('stop');
    expect(done.text).toBe(text.slice(0, Math.min(at, text.indexOf(later))));
    expect(tokens.map((t) => t.text).join('')).toBe(done.text);
    const ids = done.outputIds;
    expect(ids).toEqual(whole.done.outputIds.slice(0, ids.length));
    expect(await e.decode(pkg, ids)).toContain(at < text.indexOf(later) ? stop : later);
    const before = await e.decode(pkg, ids.slice(0, -1));
    expect(before.includes(stop) || before.includes(later)).toBe(false);
  });

  it('never shows a possible beginning of a stop string before it is decided', async () => {
    const e = engine();
    const whole = await run(e, pkg, chatIds, { params: { ...GREEDY, maxTokens: 64 } });
    // the stop string is the output's text from char 20 plus a character it never has: it never
    // completes, but while its prefix streams by it is held back, then shown at the end
    const stop = `${whole.done.text.slice(20, 28)}\u0007`;
    const { tokens, done } = await run(e, pkg, chatIds, {
      params: { ...GREEDY, maxTokens: 64, stop: [stop] },
    });
    expect(done.text).toBe(whole.done.text);
    expect(tokens.map((t) => t.text).join('')).toBe(done.text);
    let shown = '';
    let held = 0;
    for (const token of tokens.slice(0, -1)) {
      shown += token.text;
      for (let k = 1; k < stop.length; k++) expect(shown.endsWith(stop.slice(0, k))).toBe(false);
      if (whole.done.text.startsWith(shown) && shown.length < whole.done.text.length) held++;
    }
    expect(held).toBeGreaterThan(0);
  });

  it('ends at max_tokens with finish_reason length', async () => {
    const { tokens, done } = await run(engine(), pkg, chatIds, { params: { ...GREEDY, maxTokens: 7 } });
    expect(tokens).toHaveLength(7);
    expect(done).toMatchObject({ finishReason: 'length' });
    expect(done.outputIds).toHaveLength(7);
  });

  it('ends at an EOS id, which the ids keep and the text leaves out', async () => {
    const e = engine();
    const whole = await run(e, pkg, chatIds, { params: GREEDY });
    // declare the token greedy decoding emits at position k an EOS of this package (the manifest
    // may name more EOS ids than config.json)
    const ids = whole.done.outputIds;
    const k = ids.findIndex((id, t) => t >= 5 && !ids.slice(0, t).includes(id));
    const base = await llmExample('tiny-chat');
    const withEos = {
      ...base,
      id: `${base.id}-eos` as ModelPackage['id'],
      manifest: {
        ...base.manifest,
        llm: { ...(base.manifest as { llm: object }).llm, eosTokenIds: [151645, 151643, ids[k]!] },
      } as ModelPackage['manifest'],
    };
    const { tokens, done } = await run(e, withEos, chatIds, { params: GREEDY });
    expect(done.finishReason).toBe('stop');
    expect(done.outputIds).toEqual(ids.slice(0, k + 1));
    expect(done.text).toBe(await e.decode(pkg, ids.slice(0, k)));
    expect(tokens.map((t) => t.text).join('')).toBe(done.text);
  });

  it('reports logprobs and the top alternatives, from the log-softmax of the logits', async () => {
    const { tokens } = await run(engine(), pkg, chatIds, {
      params: { ...GREEDY, maxTokens: 4 },
      logprobs: 5,
    });
    for (const { id, logprob } of tokens) {
      expect(logprob!.top).toHaveLength(5);
      const top = logprob!.top.map((t) => t.logprob);
      expect(top).toEqual([...top].sort((a, b) => b - a));
      // greedy: the chosen token is the most likely one
      expect(logprob!.logprob).toBe(top[0]);
      expect(top.reduce((s, l) => s + Math.exp(l), 0)).toBeLessThanOrEqual(1);
      expect(new TextDecoder().decode(new Uint8Array(logprob!.bytes))).toBe(logprob!.token);
      expect(id).toBeGreaterThanOrEqual(0);
    }
  });

  it('stops within one step when the signal aborts, with an ABORTED error', async () => {
    const e = engine();
    const controller = new AbortController();
    const seen: number[] = [];
    const error = await refusal(async () => {
      for await (const event of e.generate(pkg, chatIds, {
        params: { ...GREEDY, maxTokens: 200 },
        signal: controller.signal,
      }))
        if (event.type === 'token') {
          seen.push(event.id);
          if (seen.length === 3) controller.abort(new Error('client went away'));
        }
    });
    expect(error.code).toBe('ABORTED');
    expect(seen).toHaveLength(3);
    // aborted from outside while it runs: at most the step in flight finishes
    const timed = new AbortController();
    let atAbort = -1;
    const tokens: number[] = [];
    setTimeout(() => {
      atAbort = tokens.length;
      timed.abort();
    }, 30);
    const late = await refusal(async () => {
      for await (const event of e.generate(pkg, chatIds, {
        params: { ...GREEDY, maxTokens: 2000 },
        signal: timed.signal,
      }))
        if (event.type === 'token') tokens.push(event.id);
    });
    expect(late.code).toBe('ABORTED');
    expect(atAbort).toBeGreaterThanOrEqual(0);
    expect(tokens.length - atAbort).toBeLessThanOrEqual(1);
  });

  it('refuses a generation past its time limit (RUN_TIMEOUT)', async () => {
    const e = engine({ limits: { timeoutMs: 1 } });
    const error = await refusal(() => run(e, pkg, chatIds, { params: { ...GREEDY, maxTokens: 500 } }));
    expect(error.code).toBe('RUN_TIMEOUT');
  });
});

describe('num_logits_to_keep', () => {
  // tiny-chat as an Optimum export of it would be: the same weights, logits for every position
  let full: ModelPackage;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tiny-chat-full-logits-'));
    await cp((await example('tiny-chat')).dir, dir, { recursive: true });
    await writeFile(join(dir, 'onnx/model.onnx'), tinyChatOnnxWithoutLogitsToKeep());
    const store = createMemoryStore();
    full = await loadModel(store, (await packLlmFolder(store, dir)).id);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

  it('gives the same logits bit for bit whether the graph computes the last rows only or all of them', async () => {
    const e = engine();
    expect(full.manifest.inputs.map((i) => i.name)).not.toContain('num_logits_to_keep');
    expect(pkg.manifest.inputs.map((i) => i.name)).toContain('num_logits_to_keep');
    const params = { ...GREEDY, maxTokens: 24 };
    const kept = await run(e, pkg, chatIds, { params, logprobs: 0 });
    const all = await run(e, full, chatIds, { params, logprobs: 0 });
    expect(kept.done.outputIds).toEqual(all.done.outputIds);
    // the prefill's last row (and every step's) is the same float32 row, so the same logprob
    expect(kept.tokens.map((t) => t.logprob!.logprob)).toEqual(all.tokens.map((t) => t.logprob!.logprob));
    const keptRows = await e.score(pkg, chatIds, kept.done.outputIds);
    const allRows = await e.score(full, chatIds, kept.done.outputIds);
    // 24 rows: two passes of 13 and 11 rows over growing prefixes, against one pass over all
    expect(keptRows).toHaveLength(kept.done.outputIds.length);
    expect(allRows).toHaveLength(kept.done.outputIds.length);
    keptRows.forEach((row, t) => expect(Buffer.compare(bytes(row), bytes(allRows[t]!)), `row ${t}`).toBe(0));
  });

  it('scores row t as the logits that predicted output t, as step-by-step decoding computed them', async () => {
    const e = engine();
    const params = { ...GREEDY, maxTokens: 24 };
    const { tokens, done } = await run(e, pkg, chatIds, { params, logprobs: 3 });
    const rows = await e.score(pkg, chatIds, done.outputIds);
    tokens.forEach((token, t) => {
      const row = rowOf(rows, t);
      let max = -Infinity;
      for (const v of row) if (v > max) max = v;
      let sum = 0;
      for (const v of row) sum += Math.exp(v - max);
      const lse = max + Math.log(sum);
      // the step's three most likely tokens are the row's, within float rounding
      const top = [...row].sort((x, y) => y - x).slice(0, 3);
      token.logprob!.top.forEach((alt, k) =>
        expect(Math.abs(alt.logprob - (top[k]! - lse))).toBeLessThan(1e-4),
      );
      expect(tokenMargin(row, params, 0n, t, token.id)).toEqual({ margin: 0, outside: false });
    });
    // a single output token: one row, the prompt's last position's
    const one = await e.score(pkg, chatIds, done.outputIds.slice(0, 1));
    expect(one).toHaveLength(1);
    expect(Buffer.compare(bytes(one[0]!), bytes(rowOf(rows, 0)))).toBe(0);
  });
});

describe('refusing what does not fit', () => {
  let small: ModelPackage;
  beforeAll(async () => {
    const store = createMemoryStore();
    const { id } = await packLlmFolder(store, (await example('tiny-chat')).dir, { contextLength: 40 });
    small = await loadModel(store, id);
  });

  it('refuses a prompt over the context length, naming messages or prompt', async () => {
    const e = engine();
    const long = 'dragons '.repeat(60);
    const chat = await refusal(() =>
      e.prompt(small, { kind: 'chat', messages: [{ role: 'user', content: long }] }),
    );
    expect([chat.code, chat.field]).toEqual(['REQUEST_INVALID', 'messages']);
    const raw = await refusal(() => e.prompt(small, { kind: 'completion', prompt: long }));
    expect([raw.code, raw.field]).toEqual(['REQUEST_INVALID', 'prompt']);
  });

  it('refuses max_tokens that would overflow the context, and ids outside the vocabulary', async () => {
    const e = engine();
    const { ids } = await e.prompt(small, { kind: 'completion', prompt: 'Once upon a time' });
    const over = await refusal(() => run(e, small, ids, { params: { ...GREEDY, maxTokens: 37 } }));
    expect([over.code, over.field]).toEqual(['REQUEST_INVALID', 'max_tokens']);
    expect(over.shortMessage).toMatch(/at most 36/);
    const huge = await refusal(() => run(e, small, ids, { params: { ...GREEDY, maxTokens: 1e9 } }));
    expect(huge.field).toBe('max_tokens');
    const bad = await refusal(() => run(e, small, [1, V], { params: GREEDY }));
    expect([bad.code, bad.field]).toEqual(['REQUEST_INVALID', 'prompt_ids[1]']);
    const temperature = await refusal(() => run(e, small, ids, { params: { ...GREEDY, temperature: -1 } }));
    expect(temperature.field).toBe('temperature');
    const logprobs = await refusal(() =>
      run(e, small, ids, { params: { ...GREEDY, maxTokens: 1 }, logprobs: 21 }),
    );
    expect(logprobs.field).toBe('top_logprobs');
  });

  it('refuses to load a package whose config.json disagrees with its manifest, naming the field', async () => {
    const e = engine();
    const edit = (patch: Record<string, unknown>, id: string): ModelPackage => {
      const files = new Map(pkg.files);
      const config = JSON.parse(new TextDecoder().decode(files.get('config.json'))) as object;
      files.set('config.json', new TextEncoder().encode(JSON.stringify({ ...config, ...patch })));
      return { ...pkg, id: id as ModelPackage['id'], files };
    };
    const vocab = await refusal(() => e.load(edit({ vocab_size: 1000 }, 'vocab')));
    expect([vocab.code, vocab.field]).toEqual(['MODEL_INVALID', 'llm.vocabSize']);
    const eos = await refusal(() => e.load(edit({ eos_token_id: 7 }, 'eos')));
    expect([eos.code, eos.field]).toEqual(['MODEL_INVALID', 'llm.eosTokenIds']);
    const layers = await refusal(() => e.load(edit({ num_hidden_layers: 3 }, 'layers')));
    expect(layers.code).toBe('MODEL_INVALID');
    expect(layers.shortMessage).toMatch(/past_key_values\.2\.key/);
    const heads = await refusal(() => e.load(edit({ num_key_value_heads: 4 }, 'heads')));
    expect([heads.code, heads.field]).toEqual(['MODEL_INVALID', 'config.num_key_value_heads']);
  });
});

describe('the registry', () => {
  it('gives the LLM engine for an llm package, under the glassbox-llm profile', async () => {
    const registry = defaultEngines({ llm: { intraOpNumThreads: 1, graphOptimizationLevel: 'all' } });
    try {
      const e = registry.tokens(pkg);
      expect(e.format).toBe('llm');
      expect(e.profile).toEqual({
        engine: 'glassbox-llm',
        engineVersion: '1.0.0',
        onnxruntime: 'onnxruntime-node',
        onnxruntimeVersion: '1.30.0',
        executionProvider: 'cpu',
        graphOptimizationLevel: 'all',
        arch: process.arch,
        sampler: 'philox4x32-10/gumbel-max/v1',
      });
      expect(e.runtimeHash).toBe(runtimeHash(e.profile));
      // thread counts are not part of the profile
      expect(engine({ graphOptimizationLevel: 'all', intraOpNumThreads: 2 }).runtimeHash).toBe(e.runtimeHash);
      expect(engine().runtimeHash).not.toBe(e.runtimeHash);
      expect(() => registry.for(pkg)).toThrow(/generates tokens/);
    } finally {
      await registry.close();
    }
  });
});
