import { afterAll, describe, expect, it } from 'vitest';
import { hashTensors } from '../../src/protocol/encoding.js';
import { verifyTraceProof, traceTree } from '../../src/protocol/merkle.js';
import {
  defaultEngines,
  recheckGeneration,
  type SamplingParams,
  type TokenEngine,
} from '../../src/runtime/index.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import { examplePackage, exampleSamples, llmExample } from './examples.js';
import { enginesWithFaults, withFaults, withSubstitute } from './faults.js';

/*
 * The test-only faulty engine (test/support/faults.ts): a lie the node signs as its answer must be
 * consistent (outputs, outputHash, trace and its root agree), or the tests of the network's
 * defences would catch a malformed answer instead of a wrong one.
 */

const engines = defaultEngines({ onnx: { intraOpNumThreads: 1 }, llm: { intraOpNumThreads: 1 } });
const honest = engines.for({ manifest: { format: 'onnx' } });
afterAll(async () => {
  await engines.close();
});

describe('withFaults', () => {
  it('perturb 1: a wrong answer whose hash, trace and root are the lie', async () => {
    const pkg = await examplePackage('iris');
    const inputs = exampleSamples(pkg, 'iris');
    const truth = await honest.run(pkg, inputs, { trace: true });
    const lie = await withFaults(honest, { perturb: 1 }).run(pkg, inputs, { trace: true });
    // the first numeric output in canonical order is `label` (int64): its first element is +1
    expect((lie.outputs.label!.data as BigInt64Array)[0]).toBe(
      (truth.outputs.label!.data as BigInt64Array)[0]! + 1n,
    );
    expect(lie.outputs.probabilities).toEqual(truth.outputs.probabilities);
    expect(lie.outputHash).toBe(hashTensors(lie.outputs));
    expect(lie.outputHash).not.toBe(truth.outputHash);
    expect(lie.inputHash).toBe(truth.inputHash);
    expect(lie.runtime).toBe(truth.runtime);
    // the trace agrees with the lie: its root is the receipt's, and every step proves against it
    const steps = lie.trace!.steps.map((s) => s.hash);
    expect(lie.traceRoot).toBe(lie.trace!.root);
    const tree = traceTree(steps);
    expect(tree.root).toBe(lie.traceRoot);
    steps.forEach((hash, i) => expect(verifyTraceProof(lie.traceRoot, i, hash, tree.proof(i))).toBe(true));
    // it differs from the honest trace exactly at the steps that checkpoint a perturbed output
    lie.trace!.steps.forEach((step, i) =>
      expect(step.hash === truth.trace!.steps[i]!.hash).toBe(step.output !== 'label'),
    );
  });

  it('perturb 0 answers the truth, and traceStep (a judge) is left honest', async () => {
    const pkg = await examplePackage('iris');
    const inputs = exampleSamples(pkg, 'iris');
    const faulty = withFaults(honest, { perturb: 0 });
    expect((await faulty.run(pkg, inputs)).outputHash).toBe((await honest.run(pkg, inputs)).outputHash);
    const wrapped = withFaults(honest, { perturb: 1 });
    expect((await wrapped.traceStep(pkg, inputs, 0)).step).toEqual(
      (await honest.traceStep(pkg, inputs, 0)).step,
    );
  });

  it('delayMs answers that much later', async () => {
    const pkg = await examplePackage('iris');
    const inputs = exampleSamples(pkg, 'iris');
    await honest.run(pkg, inputs); // loaded
    const started = performance.now();
    await withFaults(honest, { delayMs: 150 }).run(pkg, inputs);
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
  });

  it('enginesWithFaults wraps every engine of a registry, keeping formats and profiles', async () => {
    const faulty = enginesWithFaults(engines, { perturb: 1 });
    const pkg = await examplePackage('iris-int8');
    const engine = faulty.for(pkg);
    expect(engine.format).toBe('onnx');
    expect(engine.runtimeHash).toBe(honest.runtimeHash);
    const inputs = exampleSamples(pkg, 'iris-int8');
    expect((await engine.run(pkg, inputs)).outputHash).not.toBe((await honest.run(pkg, inputs)).outputHash);
  });
});

describe('withSubstitute (an LLM provider serving an impostor under the real id)', () => {
  const GREEDY: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens: 12, stop: [] };
  const PROMPT = { kind: 'chat', messages: [{ role: 'user', content: 'Tell me about glass.' }] } as const;

  async function generated(engine: TokenEngine, pkg: ModelPackage): Promise<number[]> {
    const { ids } = await engine.prompt(pkg, PROMPT);
    for await (const event of engine.generate(pkg, ids, { params: GREEDY }))
      if (event.type === 'done') return [...event.outputIds];
    throw new Error('no done event');
  }

  it('asked for tiny-chat it generates what tiny-chat-perturbed generates, under the same runtime; a re-check with the real weights fails', async () => {
    const tokens = engines.tokens({ manifest: { format: 'llm' } });
    const [real, impostor] = await Promise.all([llmExample('tiny-chat'), llmExample('tiny-chat-perturbed')]);
    const faulty = withSubstitute(tokens, { model: real.dir, with: impostor.dir });
    expect(faulty.runtimeHash).toBe(tokens.runtimeHash);
    const lie = await generated(faulty, real.pkg);
    expect(lie).toEqual(await generated(tokens, impostor.pkg));
    expect(lie).not.toEqual(await generated(tokens, real.pkg));
    // another model is left alone
    expect(await generated(faulty, impostor.pkg)).toEqual(lie);
    const { ids } = await tokens.prompt(real.pkg, PROMPT);
    const report = await recheckGeneration(tokens, real.pkg, {
      request: { ...PROMPT, params: GREEDY },
      promptIds: ids,
      outputIds: lie,
    });
    expect(report.ok).toBe(false);
    expect(report.failure).toMatchObject({ check: 'margins' });
  });
});
