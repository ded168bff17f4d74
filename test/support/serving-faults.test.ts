import { afterAll, expect, it } from 'vitest';
import { defaultEngines, type SamplingParams, type TokenEngine } from '../../src/runtime/index.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import { llmExample } from './examples.js';
import { withTokenDelay } from './faults.js';

/*
 * The slow-token fault (test/support/faults.ts) that gives the gateway's tests time to kill a
 * provider mid-stream: it must slow a generation without changing a single token of it.
 */

const engines = defaultEngines({ llm: { intraOpNumThreads: 1 } });
afterAll(async () => {
  await engines.close();
});

const GREEDY: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens: 8, stop: [] };

async function timed(engine: TokenEngine, pkg: ModelPackage, promptIds: readonly number[]) {
  const started = performance.now();
  const gaps: number[] = [];
  let last = started;
  for await (const event of engine.generate(pkg, promptIds, { params: GREEDY })) {
    if (event.type === 'token') {
      gaps.push(performance.now() - last);
      last = performance.now();
    }
    if (event.type === 'done') return { outputIds: event.outputIds, text: event.text, gaps };
  }
  throw new Error('no done event');
}

it('withTokenDelay holds each token back its delay and generates the same tokens', async () => {
  const { pkg } = await llmExample('tiny-chat');
  const engine = engines.tokens(pkg);
  const { ids } = await engine.prompt(pkg, { kind: 'chat', messages: [{ role: 'user', content: 'Hi.' }] });
  const honest = await timed(engine, pkg, ids);
  const slow = await timed(withTokenDelay(engine, 40), pkg, ids);
  expect(slow.outputIds).toEqual(honest.outputIds);
  expect(slow.text).toBe(honest.text);
  expect(slow.gaps).toHaveLength(8);
  for (const gap of slow.gaps) expect(gap).toBeGreaterThanOrEqual(39); // timers fire no earlier than asked, to the ms
});
