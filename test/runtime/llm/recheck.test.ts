import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isGlassboxError, type GlassboxError } from '../../../src/protocol/errors.js';
import {
  decodeLlmInput,
  decodeLlmOutput,
  llmInputData,
  llmOutputData,
  type LlmRequest,
} from '../../../src/protocol/llm.js';
import type { ModelPackage } from '../../../src/protocol/manifest.js';
import {
  recheckGeneration,
  type LlmPrompt,
  type RecheckReport,
  type SamplingParams,
  type TokenEngine,
} from '../../../src/runtime/index.js';
import { createLlmEngine, type LlmEngineOptions } from '../../../src/runtime/llm/engine.js';
import type { LlmExampleName } from '../../../examples/models/build.mjs';
import { llmExample as example } from '../../support/examples.js';

/*
 * The re-check against real generations of the sample models: honest ones pass across runtime
 * profiles, and each way of cheating fails from one response.
 */

const engines: TokenEngine[] = [];
function engine(options: LlmEngineOptions): TokenEngine {
  const e = createLlmEngine(options);
  engines.push(e);
  return e;
}
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});

const GREEDY: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens: 40, stop: [] };
const SAMPLERS: readonly SamplingParams[] = [
  GREEDY,
  { ...GREEDY, temperature: 0.8, topP: 0.9, seed: 11n },
  { ...GREEDY, temperature: 1, topK: 40, seed: 12n },
  { ...GREEDY, temperature: 1, seed: 13n },
];
const chat = (content: string): LlmPrompt => ({ kind: 'chat', messages: [{ role: 'user', content }] });
const PROMPTS: readonly LlmPrompt[] = [
  chat('Write a short poem about the sea.'),
  { kind: 'completion', prompt: 'The three laws of thermodynamics are' },
];

type Generated = { readonly promptIds: readonly number[]; readonly outputIds: readonly number[] };

async function generate(
  e: TokenEngine,
  pkg: ModelPackage,
  prompt: LlmPrompt,
  params: SamplingParams,
  promptIds?: readonly number[],
): Promise<Generated> {
  const ids = promptIds ?? (await e.prompt(pkg, prompt)).ids;
  for await (const event of e.generate(pkg, ids, { params }))
    if (event.type === 'done') return { promptIds: ids, outputIds: event.outputIds };
  throw new Error('no done event');
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

const llmExample = async (name: LlmExampleName): Promise<ModelPackage> => (await example(name)).pkg;

let real: ModelPackage;
let checker: TokenEngine;
beforeAll(async () => {
  real = await llmExample('tiny-chat');
  checker = engine({ intraOpNumThreads: 1, graphOptimizationLevel: 'basic' });
});

const recheck = (
  pkg: ModelPackage,
  prompt: LlmPrompt,
  params: SamplingParams,
  claim: Generated & { completionTokens?: number },
  by: TokenEngine = checker,
): Promise<RecheckReport> => recheckGeneration(by, pkg, { request: { ...prompt, params }, ...claim });

describe('honest generations', () => {
  // three profiles a provider may run, each re-checked under another one
  const profiles: readonly [LlmEngineOptions, LlmEngineOptions][] = [
    [
      { graphOptimizationLevel: 'disabled', intraOpNumThreads: 1 },
      { graphOptimizationLevel: 'all', intraOpNumThreads: 1 },
    ],
    [
      { graphOptimizationLevel: 'basic', intraOpNumThreads: 2 },
      { graphOptimizationLevel: 'disabled', intraOpNumThreads: 1 },
    ],
    [
      { graphOptimizationLevel: 'all', intraOpNumThreads: 1 },
      { graphOptimizationLevel: 'basic', intraOpNumThreads: 1 },
    ],
  ];

  it.each(profiles)(
    'generated under %o pass re-checked under %o',
    async (provider, verifier) => {
      const gen = engine(provider);
      const check = engine(verifier);
      expect(check.runtimeHash).not.toBe(gen.runtimeHash);
      for (const prompt of PROMPTS)
        for (const params of SAMPLERS) {
          const claim = await generate(gen, real, prompt, params);
          const report = await recheck(
            real,
            prompt,
            params,
            { ...claim, completionTokens: claim.outputIds.length },
            check,
          );
          expect(report.failure).toBeNull();
          expect(report).toMatchObject({ ok: true, termination: { finishReason: 'length' } });
          expect(report.margins).toHaveLength(params.maxTokens);
          expect(report.verdict.maxMargin).toBeLessThan(
            real.manifest.policy.kind === 'token-margin' ? real.manifest.policy.hard : 0,
          );
        }
    },
    180_000,
  );

  it('re-checked under their own profile, every margin is exactly 0', async () => {
    for (const params of SAMPLERS) {
      const claim = await generate(checker, real, PROMPTS[0]!, params);
      const report = await recheck(real, PROMPTS[0]!, params, claim);
      expect(report.ok).toBe(true);
      expect(report.margins.every((m) => m.margin === 0 && !m.outside)).toBe(true);
    }
  });

  it('end by EOS, stop string or max_tokens, each recognised', async () => {
    const whole = await generate(checker, real, PROMPTS[0]!, GREEDY);
    const text = await checker.decode(real, whole.outputIds);
    const params = { ...GREEDY, stop: [text.slice(20, 24)] };
    const stopped = await generate(checker, real, PROMPTS[0]!, params);
    expect(stopped.outputIds.length).toBeLessThan(whole.outputIds.length);
    const report = await recheck(real, PROMPTS[0]!, params, stopped);
    expect(report).toMatchObject({ ok: true, termination: { ok: true, finishReason: 'stop' } });
    // the same output with an EOS after it (as if the model had emitted it): EOS ends it
    const eos = await recheck(real, PROMPTS[0]!, GREEDY, {
      ...whole,
      outputIds: [...whole.outputIds.slice(0, 10), 151645],
    });
    expect(eos.termination).toEqual({ ok: true, finishReason: 'stop', position: null, reason: null });
  });
});

describe("a receipt's stored data", () => {
  it('re-checks from the input and output data a receipt commits to, and refuses another model', async () => {
    const request: LlmRequest = {
      ...PROMPTS[0]!,
      kind: 'chat',
      model: real.id,
      params: SAMPLERS[1]!,
    } as LlmRequest;
    const claim = await generate(checker, real, PROMPTS[0]!, request.params);
    const input = decodeLlmInput(llmInputData(request, claim.promptIds));
    const outputIds = decodeLlmOutput(llmOutputData(claim.outputIds));
    const report = await recheckGeneration(checker, real, { ...input, outputIds });
    expect(report.ok).toBe(true);
    const other = await refusal(() =>
      recheckGeneration(checker, real, { request: { ...request, model: 'bafkreiother' }, outputIds }),
    );
    expect([other.code, other.field]).toEqual(['REQUEST_INVALID', 'model']);
  });
});

describe('cheating, caught from one response', () => {
  const fails = (report: RecheckReport, check: string) => {
    expect(report.ok).toBe(false);
    expect(report.failure?.check).toBe(check);
  };

  it.each(SAMPLERS)("another model's output (params %o)", async (params) => {
    const other = await llmExample('tiny-chat-other');
    const claim = await generate(checker, other, PROMPTS[0]!, params);
    fails(await recheck(real, PROMPTS[0]!, params, claim), 'margins');
  });

  it.each<LlmExampleName>(['tiny-chat-int8', 'tiny-chat-perturbed'])(
    '%s: every output that differs from the real model’s is caught',
    async (name) => {
      const impostor = await llmExample(name);
      for (const prompt of PROMPTS)
        for (const params of [SAMPLERS[0]!, SAMPLERS[3]!]) {
          const claim = await generate(checker, impostor, prompt, params);
          const honest = await generate(checker, real, prompt, params);
          const report = await recheck(real, prompt, params, claim);
          const first = claim.outputIds.findIndex((id, t) => id !== honest.outputIds[t]);
          if (first < 0) {
            expect(report.ok).toBe(true); // the very tokens the real model gives: nothing to catch
            continue;
          }
          fails(report, 'margins');
          // up to the first difference the prefix is the real model's: margins 0, then not (the
          // verdict may fall later: a difference by a hair counts as suspicious, not as hard)
          expect(report.margins.slice(0, first).every((m) => m.margin === 0)).toBe(true);
          expect(report.margins[first]!.margin > 0 || report.margins[first]!.outside).toBe(true);
          expect(report.verdict.position).toBeGreaterThanOrEqual(first);
        }
    },
    180_000,
  );

  it('one prompt token changed, claimed or hidden', async () => {
    const { ids } = await checker.prompt(real, PROMPTS[0]!);
    const changed = ids.map((id, i) => (i === ids.length - 6 ? 9707 : id));
    const claim = await generate(checker, real, PROMPTS[0]!, GREEDY, changed);
    // the receipt shows the changed prompt: the re-templated one differs
    const shown = await recheck(real, PROMPTS[0]!, GREEDY, claim);
    fails(shown, 'prompt');
    expect(shown.prompt.firstMismatch).toBe(ids.length - 6);
    // the receipt shows the request's prompt, but the output came from the changed one
    fails(await recheck(real, PROMPTS[0]!, GREEDY, { ...claim, promptIds: ids }), 'margins');
  });

  it('an output truncated without EOS, short of max_tokens', async () => {
    const params = { ...GREEDY, maxTokens: 64 };
    const claim = await generate(checker, real, PROMPTS[0]!, params);
    const report = await recheck(real, PROMPTS[0]!, params, {
      ...claim,
      outputIds: claim.outputIds.slice(0, 40),
    });
    fails(report, 'termination');
    expect(report.termination.reason).toMatch(/truncated/);
    expect(report.verdict.ok).toBe(true); // every token is honest: only the ending is wrong
  });

  it('an over-stated token count', async () => {
    const claim = await generate(checker, real, PROMPTS[0]!, GREEDY);
    const report = await recheck(real, PROMPTS[0]!, GREEDY, { ...claim, completionTokens: 41 });
    fails(report, 'count');
    expect(report.count).toEqual({ ok: false, claimed: 41, actual: 40 });
  });

  it('an EOS before the end, an output past its stop string, or past max_tokens', async () => {
    const claim = await generate(checker, real, PROMPTS[0]!, GREEDY);
    const ids = claim.outputIds;
    const early = await recheck(
      real,
      PROMPTS[0]!,
      { ...GREEDY, maxTokens: 41 },
      { ...claim, outputIds: [...ids.slice(0, 5), 151645, ...ids.slice(5)] },
    );
    fails(early, 'termination');
    expect(early.termination.position).toBe(5);
    const text = await checker.decode(real, ids);
    const past = await recheck(real, PROMPTS[0]!, { ...GREEDY, stop: [text.slice(10, 13)] }, claim);
    fails(past, 'termination');
    expect(past.termination.reason).toMatch(/stop string/);
    const over = await recheck(real, PROMPTS[0]!, { ...GREEDY, maxTokens: 30 }, claim);
    fails(over, 'termination');
  });
});

describe('judging a prefix (a committee member on a token challenge)', () => {
  it("scores only through the named position: through an impostor's first failing position it fails with the whole run's margins, before it no token is past the hard limit; a negative one scores nothing", async () => {
    const impostor = await llmExample('tiny-chat-perturbed');
    const params = SAMPLERS[1]!;
    const claim = await generate(checker, impostor, PROMPTS[0]!, params);
    const whole = await recheck(real, PROMPTS[0]!, params, claim);
    expect(whole.failure?.check).toBe('margins');
    const at = whole.failure!.position!;
    const through = (n: number) =>
      recheckGeneration(checker, real, { request: { ...PROMPTS[0]!, params }, ...claim, through: n });
    const named = await through(at);
    expect(named.margins).toHaveLength(at + 1);
    expect(named.margins).toEqual(whole.margins.slice(0, at + 1)); // the same margins, fewer of them
    expect(named.failure).toMatchObject({ check: 'margins', position: at });
    // a claim one position early: no token before the first failure is past the hard limit
    const early = await through(at - 1);
    expect(early.margins).toHaveLength(at);
    expect(early.verdict.hardCount).toBe(0);
    const none = await through(-1);
    expect([none.margins, none.ok]).toEqual([[], true]);
  }, 120_000);

  it('on an honest generation, every prefix passes', async () => {
    const params = SAMPLERS[2]!;
    const claim = await generate(checker, real, PROMPTS[1]!, params);
    for (const n of [0, 5, claim.outputIds.length - 1, claim.outputIds.length + 3]) {
      const report = await recheckGeneration(checker, real, {
        request: { ...PROMPTS[1]!, params },
        ...claim,
        through: n,
      });
      expect(report.ok).toBe(true);
      expect(report.margins).toHaveLength(Math.min(n + 1, claim.outputIds.length));
    }
  }, 120_000);
});
