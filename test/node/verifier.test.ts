import { keccak256, toHex, type Address, type Hex } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TokenClaim } from '../../src/chain/index.js';
import { isSampled, proveDivergence, recheck } from '../../src/node/roles/check.js';
import { dataHash } from '../../src/protocol/data.js';
import { encodeTensors } from '../../src/protocol/encoding.js';
import { llmInputData, llmOutputData, type LlmRequest } from '../../src/protocol/llm.js';
import { modelDigest, type ModelPackage } from '../../src/protocol/manifest.js';
import { ZERO_HASH, type Receipt } from '../../src/protocol/receipt.js';
import { defaultEngines } from '../../src/runtime/index.js';
import { examplePackage, exampleSamples, llmExample } from '../support/examples.js';
import { openRoleStore } from '../../src/node/roles/store.js';
import { traceRoot, verifyTraceProof } from '../../src/protocol/merkle.js';
import { tempDir } from './support.js';

const h = (s: string): Hex => keccak256(toHex(s));
const A = '0x976EA74026E726554dB657fA54763abd0C3a0aa9' as const;
const B = '0x14dC79964da2C08b23698B3D3cc7Ca32193d9955' as const;

describe('isSampled', () => {
  const N = 20_000;
  const draws = (verifier: Address, p: number, block = 'block') =>
    Array.from({ length: N }, (_, i) =>
      isSampled({ blockHash: h(block), receiptHash: h(`receipt ${i}`), verifier, p }),
    );

  it('samples each receipt with probability p (within 5 standard deviations over 20,000 receipts)', () => {
    for (const p of [0.01, 0.0339, 0.2]) {
      const hits = draws(A, p).filter(Boolean).length;
      const sd = Math.sqrt(N * p * (1 - p));
      expect(Math.abs(hits - N * p)).toBeLessThan(5 * sd);
    }
    expect(draws(A, 0).some(Boolean)).toBe(false);
    expect(draws(A, 1).every(Boolean)).toBe(true);
  });

  it('two verifiers, or two blocks, draw independently: the overlap is about p squared', () => {
    const p = 0.2;
    const [a, b, c] = [draws(A, p), draws(B, p), draws(A, p, 'another block')];
    for (const other of [b, c]) {
      const both = a.filter((x, i) => x && other[i]).length;
      const sd = Math.sqrt(N * p * p * (1 - p * p));
      expect(Math.abs(both - N * p * p)).toBeLessThan(5 * sd);
    }
  });
});

describe('proveDivergence', () => {
  const theirs = [h('0'), h('1'), h('2'), h('3 wrong'), h('4 wrong')];
  const ours = [h('0'), h('1'), h('2'), h('3'), h('4')];

  it('names the first step where the traces part, with proofs that hold against both roots', () => {
    const d = proveDivergence(theirs, ours)!;
    expect(d.step).toBe(3);
    expect([d.providerHash, d.challengerHash, d.priorHash]).toEqual([theirs[3], ours[3], theirs[2]]);
    expect(d.challengerRoot).toBe(traceRoot(ours));
    expect(verifyTraceProof(traceRoot(theirs), 3, d.providerHash, d.providerProof)).toBe(true);
    expect(verifyTraceProof(traceRoot(ours), 3, d.challengerHash, d.challengerProof)).toBe(true);
    expect(verifyTraceProof(traceRoot(theirs), 2, d.priorHash, d.priorProviderProof)).toBe(true);
    expect(verifyTraceProof(traceRoot(ours), 2, d.priorHash, d.priorChallengerProof)).toBe(true);
  });

  it('at step 0 there is no prior step; equal traces have no divergence', () => {
    const d = proveDivergence([h('x'), h('1')], [h('y'), h('1')])!;
    expect([d.step, d.priorProviderProof, d.priorChallengerProof]).toEqual([0, [], []]);
    expect(proveDivergence(ours, ours)).toBeUndefined();
  });
});

describe('the role store', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    dir = await tempDir('glassbox-roles-');
  });
  afterAll(async () => {
    await dir.remove();
  });

  it('keeps a committee vote and its salt across a restart, and marks progress without going back', () => {
    const path = `${dir.dir}/roles.sqlite`;
    let store = openRoleStore(path);
    store.addDuty(7n);
    store.decide(7n, { kind: 'vote', guilty: true, salt: h('salt'), detail: 'step 3 differs' }, 1.5);
    store.addDuty(8n);
    store.decide(8n, { kind: 'abstain', detail: 'cannot judge: another runtime' }, 0);
    store.markDuty(7n, { committed: true });
    store.setCursor('challenges', 42n);
    store.close(); // a crash between commit and reveal

    store = openRoleStore(path);
    const [duty, abstained] = store.duties();
    expect(duty).toMatchObject({
      challengeId: 7n,
      decision: { kind: 'vote', guilty: true, salt: h('salt'), detail: 'step 3 differs' },
      computeMs: 1.5,
      committed: true,
      revealed: false,
    });
    expect(abstained!.decision).toEqual({ kind: 'abstain', detail: 'cannot judge: another runtime' });
    store.markDuty(7n, { revealed: true });
    store.markDuty(7n, { committed: false }); // never un-commits
    expect(store.duties()[0]).toMatchObject({ committed: true, revealed: true, settled: false });
    expect(store.cursor('challenges')).toBe(42n);
    store.addDuty(7n); // seen again from the chain: no duplicate, nothing reset
    expect(store.duties()).toHaveLength(2);
    store.close();
  });

  it('serves the evidence it stored for a challenge, by receipt hash in any case', () => {
    const store = openRoleStore(`${dir.dir}/evidence.sqlite`);
    const receipt = { receipt: {}, signature: '0x' } as never;
    store.putEvidence(h('receipt'), { receipt, inputs: new Uint8Array([1, 2, 3]), outputs: undefined });
    const e = store.getEvidence(h('receipt').toUpperCase().replace('0X', '0x'));
    expect(e && [...e.inputs]).toEqual([1, 2, 3]);
    expect(store.getEvidence(h('other'))).toBeUndefined();
    store.close();
  });
});

describe('recheck: what a provider can serve to stall or mislead a verifier', () => {
  const engines = defaultEngines();
  const engine = engines.for({ manifest: { format: 'onnx' } });
  afterAll(async () => {
    await engines.close();
  });

  async function signedFor(inputs: Uint8Array, traced: boolean) {
    const pkg = await examplePackage('iris-int8');
    const run = await engine.run(pkg, exampleSamples(pkg, 'iris-int8'), { trace: traced });
    const receipt: Receipt = {
      requestId: h('r'),
      provider: A,
      client: B,
      model: modelDigest(pkg.id),
      inputHash: keccak256(inputs),
      outputHash: h('a wrong output'),
      paramsHash: ZERO_HASH,
      runtime: engine.runtimeHash,
      traceRoot: run.traceRoot,
      price: 1n,
      timestamp: 1n,
    };
    return { pkg, receipt, run };
  }

  it('inputs that are not even tensors for the model are a mismatch, not an error that stalls the loop', async () => {
    const garbage = new Uint8Array([1, 2, 3, 4, 5]);
    const { pkg, receipt } = await signedFor(garbage, false);
    const found = await recheck({ receipt, inputs: garbage, engines, pkg });
    expect(found).toMatchObject({
      kind: 'mismatch',
      detail: expect.stringMatching(/not valid for the model/),
    });
  });

  it('on a tolerance model, outputs that hash to the receipt but do not decode are a mismatch; no outputs at all leave it unproven', async () => {
    const pkg = await examplePackage('iris'); // policy: tolerance
    const inputs = encodeTensors(exampleSamples(pkg, 'iris'));
    const poison = new Uint8Array([9, 9, 9]); // what the provider signed as its outputs
    const receipt: Receipt = {
      requestId: h('r'),
      provider: A,
      client: B,
      model: modelDigest(pkg.id),
      inputHash: keccak256(inputs),
      outputHash: keccak256(poison),
      paramsHash: ZERO_HASH,
      runtime: engine.runtimeHash,
      traceRoot: ZERO_HASH,
      price: 1n,
      timestamp: 1n,
    };
    const found = await recheck({ receipt, inputs, outputs: poison, engines, pkg });
    expect(found).toMatchObject({ kind: 'mismatch', detail: expect.stringMatching(/do not decode/) });
    expect((await recheck({ receipt, inputs, engines, pkg })).kind).toBe('unproven');
  });

  it('a served trace that is not the one the receipt commits to is ignored: a plain challenge, no bisection', async () => {
    const pkg = await examplePackage('iris-int8');
    const inputs = encodeTensors(exampleSamples(pkg, 'iris-int8'));
    const { receipt, run } = await signedFor(inputs, true);
    const honestTrace = run.trace!.steps.map((s) => s.hash);
    const forged = honestTrace.map((x, i) => (i === 2 ? h('forged') : x));
    const withForged = await recheck({ receipt, inputs, trace: forged, engines, pkg });
    expect(withForged.kind).toBe('mismatch');
    expect('divergence' in withForged).toBe(false);
    // the receipt's own trace matches ours step for step; its lie is the output, so no step differs
    const withOwn = await recheck({ receipt, inputs, trace: honestTrace, engines, pkg });
    expect(withOwn.kind).toBe('mismatch');
  });
});

describe('recheck of a generation: what a sample finds, and how a token claim is judged', () => {
  const engines = defaultEngines({ onnx: { intraOpNumThreads: 1 }, llm: { intraOpNumThreads: 1 } });
  const tokens = engines.tokens({ manifest: { format: 'llm' } });
  let pkg: ModelPackage;
  let request: LlmRequest;
  let promptIds: readonly number[];
  let honest: readonly number[];
  afterAll(async () => {
    await engines.close();
  });
  beforeAll(async () => {
    pkg = (await llmExample('tiny-chat')).pkg;
    request = {
      kind: 'chat',
      messages: [{ role: 'user', content: 'Tell me about glass.' }],
      model: pkg.id,
      params: { temperature: 0, topP: 1, topK: 0, seed: 0n, maxTokens: 16, stop: [] },
    };
    promptIds = (await tokens.prompt(pkg, request)).ids;
    for await (const e of tokens.generate(pkg, promptIds, { params: request.params }))
      if (e.type === 'done') honest = e.outputIds;
  }, 120_000);

  /** The receipt of a generation claiming `outputIds`, with its data. */
  function claimed(
    outputIds: readonly number[],
    over: Partial<Receipt> = {},
    inputs = llmInputData(request, promptIds),
  ) {
    const outputs = llmOutputData(outputIds);
    const receipt: Receipt = {
      requestId: h('gen'),
      provider: A,
      client: B,
      model: modelDigest(pkg.id),
      inputHash: dataHash(inputs),
      outputHash: dataHash(outputs),
      paramsHash: ZERO_HASH,
      runtime: tokens.runtimeHash,
      traceRoot: ZERO_HASH,
      price: 1n,
      timestamp: 1n,
      ...over,
    };
    // `served`: the output data the judge is given ('none': not served)
    return (claim?: TokenClaim, served: Uint8Array | 'none' = outputs) =>
      recheck({
        receipt,
        inputs,
        ...(served === 'none' ? {} : { outputs: served }),
        engines,
        pkg,
        ...(claim ? { claim } : {}),
      });
  }

  it('an honest generation matches, and no claim against it holds', async () => {
    const judge = claimed(honest);
    expect(await judge()).toMatchObject({ kind: 'match' });
    for (const check of ['margin', 'prompt', 'termination', 'count'] as const)
      expect(await judge({ check, position: 3 })).toMatchObject({ kind: 'match' });
  });

  it('a swapped token: the sample names margin at its position; a claim through it holds, one before it does not', async () => {
    const lie = honest.map((id, t) => (t === 5 ? (id === 9707 ? 9708 : 9707) : id));
    const judge = claimed(lie);
    const found = await judge();
    expect(found).toMatchObject({ kind: 'mismatch', token: { check: 'margin', position: 5 } });
    expect(await judge({ check: 'margin', position: 5 })).toMatchObject({ kind: 'mismatch' });
    expect(await judge({ check: 'margin', position: 9 })).toMatchObject({ kind: 'mismatch' });
    expect(await judge({ check: 'margin', position: 4 })).toMatchObject({ kind: 'match' });
    expect(await judge({ check: 'termination', position: 5 })).toMatchObject({ kind: 'match' });
  });

  it('a truncated output names termination; only a termination claim holds', async () => {
    const judge = claimed(honest.slice(0, 10));
    expect(await judge()).toMatchObject({ kind: 'mismatch', token: { check: 'termination', position: 9 } });
    expect(await judge({ check: 'termination', position: 9 })).toMatchObject({ kind: 'mismatch' });
    expect(await judge({ check: 'margin', position: 9 })).toMatchObject({ kind: 'match' });
  });

  it('input data that is no request for this model is a prompt failure at 0', async () => {
    const garbage = new Uint8Array([1, 2, 3]);
    const judge = claimed(honest, {}, garbage);
    expect(await judge()).toMatchObject({ kind: 'mismatch', token: { check: 'prompt', position: 0 } });
    expect(await judge({ check: 'prompt', position: 0 })).toMatchObject({ kind: 'mismatch' });
    expect(await judge({ check: 'margin', position: 0 })).toMatchObject({ kind: 'match' });
    // a request for another model, signed under this one's digest
    const otherId = (await llmExample('tiny-chat-other')).pkg.id;
    const other = claimed(honest, {}, llmInputData({ ...request, model: otherId }, promptIds));
    expect(await other()).toMatchObject({
      kind: 'mismatch',
      detail: expect.stringContaining(otherId),
      token: { check: 'prompt', position: 0 },
    });
  });

  it('without the output ids it is unproven; under another runtime it is skipped', async () => {
    expect(await claimed(honest)(undefined, 'none')).toMatchObject({ kind: 'unproven' });
    expect(await claimed(honest)(undefined, new Uint8Array([9]))).toMatchObject({ kind: 'unproven' });
    expect(await claimed(honest, { runtime: h('another runtime') })()).toMatchObject({
      kind: 'skipped',
      detail: expect.stringMatching(/differs from ours/),
    });
  });
});
