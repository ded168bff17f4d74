import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import ort from 'onnxruntime-node';
import { keccak256, toHex, type Address } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBenchModels, type BenchModelSpec } from '../examples/models/bench-models.mjs';
import { devnetClient, startDevnet, type Devnet } from '../src/devnet/index.js';
import { openNodeDb } from '../src/node/db.js';
import { encodeTensors, hashTensors, tensorsToJson } from '../src/protocol/encoding.js';
import { inputsFromJson } from '../src/protocol/inputs.js';
import { batchTree } from '../src/protocol/merkle.js';
import { modelDigest, type ModelPackage } from '../src/protocol/manifest.js';
import {
  receiptHash,
  recoverReceiptSigner,
  signReceipt,
  signedReceiptToJson,
  ZERO_HASH,
  type Receipt,
  type SignedReceipt,
} from '../src/protocol/receipt.js';
import { privateKeyToSigner, secp256k1Backend } from '../src/protocol/secp256k1.js';
import { recoverVoucherSigner, signVoucher } from '../src/protocol/voucher.js';
import type { TensorMap } from '../src/protocol/tensor.js';
import { defaultEngines, traceOf, type TensorEngine } from '../src/runtime/index.js';
import {
  closeClient,
  discoverProviders,
  getProviderModels,
  infer,
  verifyReceipt,
  type Client,
  type InferReturnType,
} from '../src/sdk/index.js';
import { createNodeFetch } from '../src/sdk/http.js';
import { createMemoryStore, loadModel, packModelFolder } from '../src/store/index.js';
import { examplePackage, exampleSamples } from '../test/support/examples.js';
import {
  fmt,
  figure,
  figuresPage,
  interleaved,
  machine,
  median,
  pause,
  stats,
  throughput,
  writeResults,
  type Figure,
  type Stats,
  type Target,
} from './lib.js';
import { startUnverifiedServer, type UnverifiedServer } from './unverified-server.js';

/*
 * What the verified path costs against running the model directly (issue 6). One file, in order:
 *   5. devnet start (anvil, contracts, 3 provider processes, example models) to first verified answer;
 *   1. per model size (0.05, 1, 20 ms): sdk.infer in receipt mode to ONE provider process of a
 *      devnet on loopback (the other two excluded) against the baseline a user would otherwise run:
 *      the same model behind a plain unverified HTTP server in its own process on the same loopback
 *      (bench/unverified-server.ts: fastify + onnxruntime-node, JSON both ways, no receipt, no
 *      voucher, no disk write). Direct onnxruntime-node in this process is the second reference,
 *      and the engine's own run (input checks + hashing, no network) is timed alongside. Latency
 *      in interleaved blocks, throughput at concurrency 1, 8, 64 in alternating blocks;
 *   2. quorum 3 vs receipt mode (any one of the three), latency, interleaved;
 *   3. the client's cost to verify a receipt; the provider's cost to sign and persist one;
 *   6. trace capture: engine.run with vs without trace, interleaved, per model size.
 * (4, gas per inference, comes from gas.bench.ts; summary.bench.ts puts everything together.)
 * Records every figure with its target and whether it is met; asserts no target.
 * Writes bench/results/overhead.json and overhead.md.
 */

const MAX_PRICE = 10n ** 16n;
const E15 = 10n ** 15n;
const LATENCY_ROUNDS: Record<string, number> = { 'bench-tiny': 400, 'bench-1ms': 300, 'bench-20ms': 60 };
const QUORUM_ROUNDS: Record<string, number> = { 'bench-tiny': 150, 'bench-1ms': 150, 'bench-20ms': 40 };
const TRACE_ROUNDS: Record<string, number> = { 'bench-tiny': 400, 'bench-1ms': 300, 'bench-20ms': 40 };
const CONCURRENCY = [1, 8, 64] as const;
const BLOCK_MS: Record<string, number> = { 'bench-tiny': 500, 'bench-1ms': 600, 'bench-20ms': 1200 };
const BLOCKS = 3;
/** Idle between interleaved calls and blocks (see `interleaved`). */
const GAP_MS = 3;
/** Model runs compared in blocks, each after onnxruntime's spinning threads have gone idle. */
const BLOCKS_OF_RUNS = { gapMs: GAP_MS, block: 20, settleMs: 150 } as const;
/** The node's default batch size (src/node/config.ts, batch.maxReceipts), and how many batches are cut. */
const BATCH_SIZE = 256;
const BATCH_CUTS = 4;
const TREE_ROUNDS = 20;

type BenchModel = {
  readonly spec: BenchModelSpec;
  readonly dir: string;
  readonly pkg: ModelPackage;
  readonly inputs: TensorMap;
  readonly session: ort.InferenceSession;
  readonly feeds: Record<string, ort.Tensor>;
};

/** The targets against the unverified server, for the 1 ms and 20 ms models (issue 12, point 6). */
const TARGETED = new Set(['bench-1ms', 'bench-20ms']);
const P50_VS_UNVERIFIED: Target = { op: '<=', value: 1.1 };
const THROUGHPUT_AT_8_VS_UNVERIFIED: Target = { op: '>=', value: 0.85 };

const figures: Figure[] = [];
const detail: Record<string, unknown> = {};
const md: string[] = [];
const measuredAt = new Date().toISOString();
const machineAtStart = machine();
let models: BenchModel[] = [];
let engine: TensorEngine;

beforeAll(async () => {
  engine = defaultEngines().for({ manifest: { format: 'onnx' } });
  // The same session options as the engine's default profile (graph optimisation `basic`,
  // sequential, one inter-op thread, onnxruntime's default intra-op threads).
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: engine.profile.graphOptimizationLevel,
    executionMode: 'sequential',
    interOpNumThreads: 1,
  };
  models = [];
  for (const { spec, dir } of buildBenchModels()) {
    const store = createMemoryStore();
    const { id } = await packModelFolder(store, dir);
    const pkg = await loadModel(store, id);
    const inputs = inputsFromJson(
      pkg.manifest.inputs,
      JSON.parse(readFileSync(join(dir, 'samples.json'), 'utf8')),
    );
    const session = await ort.InferenceSession.create(pkg.files.get(pkg.manifest.entry)!, options);
    const x = inputs.x!;
    const feeds = { x: new ort.Tensor('float32', x.data as Float32Array, [...x.shape]) };
    models.push({ spec, dir, pkg, inputs, session, feeds });
  }
});

afterAll(async () => {
  for (const m of models) await m.session.release();
  await engine?.close();
  const results = {
    measuredAt,
    machine: machineAtStart,
    onnxruntime: ort.env.versions,
    runtimeProfile: engine?.profile,
    figures,
    ...detail,
  };
  await writeResults(
    'overhead',
    results,
    figuresPage('# Verification overhead (measured by `npm run bench`)', machineAtStart, figures, md),
  );
});

const direct = (m: BenchModel) => () => m.session.run(m.feeds);

/** A bare node:http server in its own process that echoes what it is sent: the transport floor. */
const ECHO_SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => { res.setHeader('content-type', 'application/json'); res.end(Buffer.concat(chunks)); });
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
`;

/**
 * p50 of a JSON POST round trip to another process on loopback, and back, through the SDK's own
 * transport (node:http, kept-alive connections).
 */
async function httpFloor(body: string, rounds: number): Promise<{ latency: Stats; perSecondAt8: number }> {
  const child = spawn(process.execPath, ['-e', ECHO_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const post$ = createNodeFetch() ?? fetch;
  try {
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const url = `http://127.0.0.1:${Number(line.toString().trim())}/`;
    const post = async () => {
      const res = await post$(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      return JSON.parse(await res.text()) as unknown;
    };
    for (let i = 0; i < 50; i++) await post();
    const [times] = await interleaved(rounds, [post], { gapMs: GAP_MS });
    const perSecond: number[] = [];
    for (let k = 0; k < BLOCKS; k++) perSecond.push(await throughput(post, 8, BLOCK_MS['bench-tiny']!));
    return { latency: stats(times!), perSecondAt8: median(perSecond) };
  } finally {
    child.kill();
  }
}
const engineRun = (m: BenchModel) => () => engine.run(m.pkg, m.inputs);

it('5. devnet start to first verified inference', async () => {
  const started = performance.now();
  const devnet = await startDevnet({ nodeConfig: { logLevel: 'error' } });
  const up = performance.now();
  let client: Client | undefined;
  try {
    client = await devnetClient(devnet);
    const pkg = await examplePackage('iris-int8');
    const result = await infer(client, {
      model: pkg.id,
      inputs: exampleSamples(pkg, 'iris-int8'),
      maxPrice: MAX_PRICE,
    });
    expect(result.report.ok).toBe(true);
    const total = performance.now() - started;
    detail.devnetStart = { startDevnetMs: up - started, totalMs: total };
    figures.push(
      figure(
        '5',
        'devnet start to first verified inference',
        total / 1000,
        's',
        undefined,
        `startDevnet() (anvil, contracts, 3 example models, 3 provider processes) ${fmt((up - started) / 1000)} s, then createClient + infer(iris-int8)`,
      ),
    );
    md.push(
      `## 5. Devnet start to first verified inference`,
      '',
      `startDevnet() with its defaults (anvil, contracts, the 3 example models, 3 provider processes): ${fmt((up - started) / 1000)} s; then createClient and one receipt-mode infer of iris-int8: ${fmt((total - (up - started)) / 1000)} s; total ${fmt(total / 1000)} s.`,
      '',
    );
  } finally {
    if (client) await closeClient(client);
    await devnet.stop();
    await rm(devnet.dir, { recursive: true, force: true });
  }
}, 180_000);

describe('the verified path on a devnet', () => {
  let devnet: Devnet;
  let client: Client;
  const ids = new Map<string, string>();
  let others: Address[] = [];
  const lastResult = new Map<string, InferReturnType>();
  const unverifiedServers = new Map<string, UnverifiedServer>();

  beforeAll(async () => {
    devnet = await startDevnet({
      providers: 3,
      models: models.map((m) => m.dir),
      nodeConfig: {
        logLevel: 'error',
        // The bench sends thousands of requests a minute from one client.
        rateLimit: { perMinute: 100_000_000 },
        creditLimit: (E15 * 100_000n).toString(),
      },
    });
    for (const m of devnet.models) ids.set(m.name, m.id);
    others = devnet.providers.slice(1).map((p) => p.address);
    client = await devnetClient(devnet);
    for (const m of models)
      unverifiedServers.set(m.spec.name, await startUnverifiedServer(join(m.dir, 'model.onnx')));
  }, 180_000);

  afterAll(async () => {
    for (const server of unverifiedServers.values()) await server.stop();
    if (client) await closeClient(client);
    await devnet?.stop();
    if (devnet) await rm(devnet.dir, { recursive: true, force: true });
  });

  const verified = (m: BenchModel, exclude: readonly Address[]) => async () => {
    const result = await infer(client, {
      model: ids.get(m.spec.name)!,
      inputs: m.inputs,
      maxPrice: MAX_PRICE,
      exclude,
    });
    if (!result.report.ok) throw new Error('an answer did not verify');
    lastResult.set(m.spec.name, result);
    return result;
  };
  const quorum3 = (m: BenchModel) => async () => {
    const result = await infer(client, {
      model: ids.get(m.spec.name)!,
      inputs: m.inputs,
      maxPrice: MAX_PRICE,
      mode: { quorum: 3 },
    });
    if (!result.report.ok || result.report.quorum?.majority !== 3) throw new Error('quorum did not agree');
    return result;
  };

  /** The same request to the unverified server: what serving the model over HTTP costs anyway. */
  const unverified = (m: BenchModel) => {
    const server = unverifiedServers.get(m.spec.name)!;
    return () => server.infer(m.inputs, 'json');
  };

  it('1. verified (receipt mode, one provider process) vs the unverified server and direct: latency', async () => {
    const rows: string[] = [];
    const out: Record<string, Record<string, Stats>> = {};
    for (const m of models) {
      const one = verified(m, others);
      const plain = unverified(m);
      for (let i = 0; i < 20; i++) await Promise.all([direct(m)(), engineRun(m)(), plain(), one()]); // warm-up
      const [d, e, u, v] = (
        await interleaved(LATENCY_ROUNDS[m.spec.name]!, [direct(m), engineRun(m), plain, one], BLOCKS_OF_RUNS)
      ).map(stats) as [Stats, Stats, Stats, Stats];
      out[m.spec.name] = { direct: d, engine: e, unverified: u, verified: v };
      rows.push(
        `| ${m.spec.name} | ${fmt(u.p50)} / ${fmt(u.p99)} | ${fmt(v.p50)} / ${fmt(v.p99)} | ${fmt(v.p50 - u.p50)} | ${(v.p50 / u.p50).toFixed(2)}x | ${fmt(d.p50)} / ${fmt(d.p99)} | ${fmt(e.p50)} / ${fmt(e.p99)} | ${(v.p50 / d.p50).toFixed(2)}x |`,
      );
      figures.push(
        figure('1', `${m.spec.name}: direct run p50`, d.p50, 'ms', undefined, `p99 ${fmt(d.p99)} ms`),
        figure(
          '1',
          `${m.spec.name}: unverified server p50`,
          u.p50,
          'ms',
          undefined,
          `p99 ${fmt(u.p99)} ms; fastify + onnxruntime-node in its own process, JSON both ways`,
        ),
        figure('1', `${m.spec.name}: verified p50`, v.p50, 'ms', undefined, `p99 ${fmt(v.p99)} ms`),
        figure(
          '1',
          `${m.spec.name}: verified p50 / unverified server p50`,
          v.p50 / u.p50,
          'x',
          TARGETED.has(m.spec.name) ? P50_VS_UNVERIFIED : undefined,
          `added ${fmt(v.p50 - u.p50)} ms`,
        ),
        figure(
          '1',
          `${m.spec.name}: verified p50 / direct p50 (reference)`,
          v.p50 / d.p50,
          'x',
          undefined,
          `added ${fmt(v.p50 - d.p50)} ms`,
        ),
      );
    }
    detail.latency = out;
    md.push(
      '## 1. Verified vs the unverified server (and direct) latency',
      '',
      "Unverified server: the same model behind a plain HTTP inference server in its own process on the same loopback (bench/unverified-server.mjs: fastify + onnxruntime-node with the engine profile's session options, JSON both ways; no receipt, no voucher, no signature, no disk write), asked through the SDK's own HTTP client. Verified: `sdk.infer` in receipt mode to one provider process of the devnet on loopback (the other two excluded): JSON over HTTP, request signature, voucher, run, receipt signed and stored (SQLite WAL, committed and synced to disk before the answer leaves, concurrent answers sharing syncs), receipt verified by the client. Direct: `InferenceSession.run` in this process; engine: `engine.run` in this process (input checks, run, input and output hashing; no network): the second reference. The four interleaved in blocks, one request at a time.",
      '',
      '| model | unverified server p50 / p99 ms | verified p50 / p99 ms | added p50 ms | verified / unverified | direct p50 / p99 ms | engine p50 / p99 ms | verified / direct |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
      ...rows,
      '',
    );
  }, 300_000);

  it('1. verified vs the unverified server and direct: throughput at concurrency 1, 8, 64', async () => {
    const rows: string[] = [];
    const out: Record<
      string,
      Record<number, { direct: number[]; unverified: number[]; verified: number[] }>
    > = {};
    for (const m of models) {
      out[m.spec.name] = {};
      const sides = [direct(m), unverified(m), verified(m, others)];
      for (const c of CONCURRENCY) {
        const perSecond = sides.map(() => [] as number[]);
        for (let k = 0; k < BLOCKS; k++)
          for (const [i, fn] of sides.entries()) {
            await pause(BLOCKS_OF_RUNS.settleMs);
            perSecond[i]!.push(await throughput(fn, c, BLOCK_MS[m.spec.name]!));
          }
        const [a, u, b] = perSecond as [number[], number[], number[]];
        out[m.spec.name]![c] = { direct: a, unverified: u, verified: b };
        const vsUnverified = median(b) / median(u);
        const vsDirect = median(b) / median(a);
        rows.push(
          `| ${m.spec.name} | ${c} | ${fmt(median(u))} | ${fmt(median(b))} | ${(vsUnverified * 100).toFixed(0)}% | ${fmt(median(a))} | ${(vsDirect * 100).toFixed(0)}% |`,
        );
        figures.push(
          figure(
            '1',
            `${m.spec.name}: throughput at concurrency ${c}, verified / unverified server`,
            vsUnverified,
            'x',
            c === 8 && TARGETED.has(m.spec.name) ? THROUGHPUT_AT_8_VS_UNVERIFIED : undefined,
            `${fmt(median(b))} vs ${fmt(median(u))} per s`,
          ),
          figure(
            '1',
            `${m.spec.name}: throughput at concurrency ${c}, verified / direct (reference)`,
            vsDirect,
            'x',
            undefined,
            `${fmt(median(b))} vs ${fmt(median(a))} per s`,
          ),
        );
      }
    }
    detail.throughput = out;
    md.push(
      '## 1. Verified vs the unverified server (and direct) throughput',
      '',
      `Completed requests per second with c callers in a loop, ${BLOCKS} blocks each of direct, unverified server and verified, in turn; medians.`,
      '',
      '| model | concurrency | unverified server /s | verified /s | verified / unverified | direct /s | verified / direct |',
      '|---|---:|---:|---:|---:|---:|---:|',
      ...rows,
      '',
    );
  }, 300_000);

  it('2. quorum 3 vs receipt mode: latency', async () => {
    const rows: string[] = [];
    const out: Record<string, Record<string, Stats>> = {};
    for (const m of models) {
      const receipt = verified(m, []);
      const q = quorum3(m);
      for (let i = 0; i < 10; i++) await Promise.all([receipt(), q()]);
      const [r, k] = await interleaved(QUORUM_ROUNDS[m.spec.name]!, [receipt, q], BLOCKS_OF_RUNS);
      const sr = stats(r!);
      const sk = stats(k!);
      out[m.spec.name] = { receipt: sr, quorum3: sk };
      rows.push(
        `| ${m.spec.name} | ${fmt(sr.p50)} / ${fmt(sr.p99)} | ${fmt(sk.p50)} / ${fmt(sk.p99)} | ${(sk.p50 / sr.p50).toFixed(2)}x |`,
      );
      figures.push(
        figure(
          '2',
          `${m.spec.name}: quorum 3 p50 / receipt p50`,
          sk.p50 / sr.p50,
          'x',
          { op: '<=', value: 1.3 },
          `${fmt(sk.p50)} vs ${fmt(sr.p50)} ms`,
        ),
      );
    }
    detail.quorum = out;
    md.push(
      '## 2. Quorum 3 vs receipt mode',
      '',
      'Receipt mode: any one of the 3 provider processes (the SDK picks). Quorum 3: all three, each answer verified, compared under the model policy. Interleaved, one request at a time.',
      '',
      '| model | receipt p50 / p99 ms | quorum 3 p50 / p99 ms | quorum / receipt |',
      '|---|---:|---:|---:|',
      ...rows,
      '',
    );
  }, 300_000);

  it('3. client cost to verify a receipt; provider cost to sign and persist one', async () => {
    const m = models[0]!;
    const result = lastResult.get(m.spec.name) ?? (await verified(m, others)());
    const signed = result.receipts[0]!;
    const provider = result.providers[0]!;
    const model = ids.get(m.spec.name)!;
    const [quote] = (await discoverProviders(client, { model })).filter((c) => c.address === provider);
    const providerModels = await getProviderModels(client, quote!);
    const domain = { chainId: client.chainId, verifyingContract: client.deployment.contracts.receiptLedger };
    const params = {
      receipt: signed,
      model,
      requestId: signed.receipt.requestId,
      provider,
      maxPrice: MAX_PRICE,
      inputs: m.inputs,
      outputs: result.outputs,
      outputSpecs: m.pkg.manifest.outputs,
      quote: quote!,
      models: providerModels,
    };
    const first = await verifyReceipt(client, params); // caches the on-chain signer check
    expect(first.ok).toBe(true);
    const ROUNDS = 1000;
    for (let i = 0; i < 50; i++) await verifyReceipt(client, params);
    const [full, recover, hashIn, hashOut] = await interleaved(ROUNDS, [
      () => verifyReceipt(client, params),
      () => recoverReceiptSigner(signed, domain),
      async () => hashTensors(m.inputs),
      async () => hashTensors(result.outputs),
    ]);

    // Provider side: what src/node/infer.ts does after the run, against a fresh database.
    const dir = await mkdtemp(join(tmpdir(), 'glassbox-bench-db-'));
    // The node and the SDK client both sign with privateKeyToSigner (src/node/node.ts,
    // src/sdk/client.ts); a plain viem account is measured beside it for reference.
    const signerKey = generatePrivateKey();
    const signer = privateKeyToAccount(signerKey);
    const fastSigner = privateKeyToSigner(signerKey);
    const clientAccount = privateKeyToSigner(generatePrivateKey());
    const db = openNodeDb(join(dir, 'node.sqlite'), signer.address);
    const inputsBytes = encodeTensors(m.inputs);
    const outputsBytes = encodeTensors(result.outputs);
    const inputHash = hashTensors(m.inputs);
    const outputHash = hashTensors(result.outputs);
    let n = 0;
    const newReceipt = (): Receipt => ({
      requestId: keccak256(toHex(`bench-${n++}`)),
      provider: signer.address,
      client: clientAccount.address,
      model: modelDigest(model),
      inputHash,
      outputHash,
      paramsHash: ZERO_HASH,
      runtime: engine.runtimeHash,
      traceRoot: ZERO_HASH,
      price: E15,
      timestamp: BigInt(Date.now()),
    });
    const PROVIDER_ROUNDS = 300;
    const voucherDomain = {
      chainId: client.chainId,
      verifyingContract: client.deployment.contracts.paymentEscrow,
    };
    let voucherAmount = 0n;
    const voucher = await signVoucher(
      clientAccount,
      { client: clientAccount.address, provider: signer.address, amount: E15 },
      voucherDomain,
    );
    const signTimes: number[] = [];
    const persistTimes: number[] = [];
    const totalTimes: number[] = [];
    // A receipt made durable as the node makes it (src/node/group-commit.ts): committed, then synced.
    const record = async (s: SignedReceipt) => {
      db.recordAnswer({
        requestId: s.receipt.requestId,
        client: clientAccount.address,
        model,
        inputHash,
        leaf: receiptHash(s.receipt),
        receipt: signedReceiptToJson(s),
        price: E15,
        createdAt: Date.now(),
        inputs: inputsBytes,
        outputs: outputsBytes,
      });
      await db.syncAnswers();
    };
    // The batcher's cut (src/node/batcher.ts), per receipt: the open receipts read back
    // (NodeDb.openReceipts), the tree and every proof (batchTree), the batch written (createBatch).
    const cutRead: number[] = [];
    const cutTree: number[] = [];
    const cutWrite: number[] = [];
    try {
      for (let i = 0; i < PROVIDER_ROUNDS + 20; i++) {
        const receipt = newReceipt();
        const t0 = performance.now();
        const s = await signReceipt(fastSigner, receipt, domain);
        const t1 = performance.now();
        await record(s);
        const t2 = performance.now();
        if (i >= 20) {
          signTimes.push(t1 - t0);
          persistTimes.push(t2 - t1);
          totalTimes.push(t2 - t0);
        }
      }
      for (let i = PROVIDER_ROUNDS + 20; i < BATCH_SIZE * BATCH_CUTS; i++)
        await record(await signReceipt(fastSigner, newReceipt(), domain));
      for (let b = 0; b < BATCH_CUTS; b++) {
        const t0 = performance.now();
        const open = db.openReceipts(BATCH_SIZE);
        const t1 = performance.now();
        const tree = batchTree(open.map((r) => r.leaf));
        const leaves = open.map((r, i) => ({ seq: r.seq, proof: tree.proof(i) }));
        const t2 = performance.now();
        db.createBatch({
          root: tree.root,
          uri: `http://127.0.0.1/v1/batches/${tree.root}`,
          createdAt: Date.now(),
          leaves,
        });
        const t3 = performance.now();
        expect(open.length).toBe(BATCH_SIZE);
        cutRead.push((t1 - t0) / BATCH_SIZE);
        cutTree.push((t2 - t1) / BATCH_SIZE);
        cutWrite.push((t3 - t2) / BATCH_SIZE);
      }
    } finally {
      db.close();
      await rm(dir, { recursive: true, force: true });
    }
    // Payment by voucher, per request: the client signs, the provider recovers.
    const [voucherSign, voucherRecover, viemSign] = await interleaved(PROVIDER_ROUNDS, [
      () =>
        signVoucher(
          clientAccount,
          { client: clientAccount.address, provider: signer.address, amount: (voucherAmount += E15) },
          voucherDomain,
        ),
      () => recoverVoucherSigner(voucher, voucherDomain),
      () => signReceipt(signer, newReceipt(), domain),
    ]);

    // What one request and its answer weigh on the wire, echoed by a bare server in another process.
    const wireBody = JSON.stringify(
      {
        // signature: the client's request signature is 65 bytes, as the receipt's is
        request: {
          requestId: signed.receipt.requestId,
          model,
          inputs: tensorsToJson(m.inputs),
          voucher,
          signature: signed.signature,
        },
        answer: { outputs: tensorsToJson(result.outputs), receipt: signedReceiptToJson(signed) },
      },
      (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v),
    );
    const floor = await httpFloor(wireBody, 500);
    // from the throughput test above (vitest runs a file's tests in order)
    const tinyDirectAt8 = (detail.throughput as Record<string, Record<number, { direct: number[] }>>)[
      'bench-tiny'
    ]![8]!.direct;
    const transport = floor.latency;

    // The batch tree and every proof in memory, per receipt: batchTree (WASM keccak on raw bytes)
    // against what it replaced, OpenZeppelin's StandardMerkleTree (pure-JS keccak; getProof
    // re-hashes the leaf and re-verifies the proof), interleaved.
    const batchHashes = Array.from({ length: BATCH_SIZE }, (_, i) => keccak256(toHex(`bench-leaf-${i}`)));
    const [openZeppelinTree, wasmTree] = await interleaved(TREE_ROUNDS, [
      async () => {
        const tree = StandardMerkleTree.of(
          batchHashes.map((h) => [h]),
          ['bytes32'],
          { sortLeaves: false },
        );
        batchHashes.forEach((_, i) => tree.getProof(i));
      },
      async () => {
        const tree = batchTree(batchHashes);
        batchHashes.forEach((_, i) => tree.proof(i));
      },
    ]);
    const perReceipt = (xs: number[]) => xs.map((x) => x / BATCH_SIZE);

    const s = {
      httpJsonRoundTrip: transport,
      verifyReceiptLocal: stats(full!),
      recoverReceiptSigner: stats(recover!),
      hashInputs: stats(hashIn!),
      hashOutputs: stats(hashOut!),
      providerSignReceipt: stats(signTimes),
      providerSignReceiptViem: stats(viemSign!),
      providerPersistReceipt: stats(persistTimes),
      providerSignAndPersist: stats(totalTimes),
      clientSignVoucher: stats(voucherSign!),
      providerRecoverVoucher: stats(voucherRecover!),
      batchTreeAndProofs: stats(perReceipt(wasmTree!)),
      batchTreeAndProofsOpenZeppelin: stats(perReceipt(openZeppelinTree!)),
      batchCutRead: stats(cutRead),
      batchCutTree: stats(cutTree),
      batchCutWrite: stats(cutWrite),
      batchCut: stats(cutRead.map((r, i) => r + cutTree[i]! + cutWrite[i]!)),
    };
    detail.receiptCosts = s;
    const perRequest =
      s.clientSignVoucher.p50 +
      s.providerRecoverVoucher.p50 +
      s.providerSignReceipt.p50 +
      s.providerPersistReceipt.p50 +
      s.verifyReceiptLocal.p50;
    figures.push(
      figure(
        '3',
        'client: verifyReceipt, local parts, p50',
        s.verifyReceiptLocal.p50,
        'ms',
        { op: '<=', value: 0.5 },
        'signature recovery, input and output hashes, schema, price and runtime checks; the on-chain signer check is cached after the first call and the quote and /v1/models are passed in (no RPC)',
      ),
      figure('3', 'client: recoverReceiptSigner p50', s.recoverReceiptSigner.p50, 'ms'),
      figure(
        '3',
        'client: hashTensors(inputs) + hashTensors(outputs) p50',
        s.hashInputs.p50 + s.hashOutputs.p50,
        'ms',
      ),
      figure(
        '3',
        'provider: signReceipt p50',
        s.providerSignReceipt.p50,
        'ms',
        undefined,
        `privateKeyToSigner, as src/node/node.ts makes; secp256k1 backend: ${secp256k1Backend}`,
      ),
      figure(
        '3',
        'provider: signReceipt with a plain viem account p50 (reference)',
        s.providerSignReceiptViem.p50,
        'ms',
      ),
      figure(
        '3',
        'provider: persist receipt p50 (SQLite WAL, commit + fdatasync)',
        s.providerPersistReceipt.p50,
        'ms',
      ),
      figure(
        '3',
        'provider: sign + persist per request p50',
        s.providerSignAndPersist.p50,
        'ms',
        undefined,
        `p99 ${fmt(s.providerSignAndPersist.p99)} ms`,
      ),
      figure('3', 'client: signVoucher per request p50', s.clientSignVoucher.p50, 'ms'),
      figure('3', 'provider: recoverVoucherSigner per request p50', s.providerRecoverVoucher.p50, 'ms'),
      figure(
        '3',
        `provider: batch tree + every proof, per receipt, batches of ${BATCH_SIZE}, p50`,
        s.batchTreeAndProofs.p50,
        'ms',
        undefined,
        `batchTree (WASM keccak on raw bytes); ${TREE_ROUNDS} batches, interleaved with the OpenZeppelin figure`,
      ),
      figure(
        '3',
        `provider: the same with OpenZeppelin StandardMerkleTree (before), per receipt, p50`,
        s.batchTreeAndProofsOpenZeppelin.p50,
        'ms',
        undefined,
        'StandardMerkleTree.of + getProof for every leaf (pure-JS keccak; getProof re-verifies each proof)',
      ),
      figure(
        '3',
        `provider: batch cut per receipt, batches of ${BATCH_SIZE} (read open receipts, tree + proofs, write batch), p50`,
        s.batchCut.p50,
        'ms',
        undefined,
        `${BATCH_CUTS} cuts as src/node/batcher.ts makes them; read ${fmt(s.batchCutRead.p50)} + tree ${fmt(s.batchCutTree.p50)} + write ${fmt(s.batchCutWrite.p50)} ms`,
      ),
      figure(
        '3',
        'per request: signatures + hashes + receipt insert, summed p50s',
        perRequest,
        'ms',
        undefined,
        "client signVoucher + provider recoverVoucherSigner + signReceipt + recordAnswer and its sync + client verifyReceipt: the verified path's fixed cost before transport",
      ),
      figure(
        '3',
        'transport floor: JSON POST round trip to another process (bare node:http echo)',
        s.httpJsonRoundTrip.p50,
        'ms',
        undefined,
        `${wireBody.length} bytes each way`,
      ),
      figure(
        '3',
        'floor of the added latency: the summed per-request costs + the transport floor',
        perRequest + s.httpJsonRoundTrip.p50,
        'ms',
        undefined,
        'what every verified answer must do on this machine however lean the code around it: one loopback round trip, two signatures, two recoveries and a receipt on disk before the answer; the unverified server of section 1 pays the round trip too, not the rest',
      ),
      figure(
        '3',
        'transport floor: echo round trips per second at concurrency 8 / direct bench-tiny runs per second at 8',
        floor.perSecondAt8 / median(tinyDirectAt8),
        'x',
        undefined,
        `${fmt(floor.perSecondAt8)} vs ${fmt(median(tinyDirectAt8))} per s: the most any HTTP answer could reach, without a model, a signature or a disk write`,
      ),
    );
    const row = (name: string, x: Stats) => `| ${name} | ${fmt(x.p50)} | ${fmt(x.p99)} |`;
    md.push(
      '## 3. Receipt costs',
      '',
      `One receipt of ${m.spec.name} (inputs [1, 64], outputs [1, 10] float32). verifyReceipt's local parts: the signer check against the chain is cached after the first call, and the quote and the provider's /v1/models are passed in, as infer does after discovery; no RPC is timed. Provider: signReceipt then NodeDb.recordAnswer and syncAnswers (src/node/db.ts: one transaction, receipt + inputs + outputs + the client's account, WAL, then an fdatasync of the WAL, as a request alone gets it) into a fresh database in ${tmpdir()}; then ${BATCH_CUTS} batch cuts of ${BATCH_SIZE} receipts from that database as src/node/batcher.ts makes them (per-receipt figures are a cut's time / ${BATCH_SIZE}), and the tree with every proof in memory, ${TREE_ROUNDS} batches, batchTree interleaved with the OpenZeppelin StandardMerkleTree it replaced.`,
      '',
      '| cost | p50 ms | p99 ms |',
      '|---|---:|---:|',
      row('client: verifyReceipt (local parts)', s.verifyReceiptLocal),
      row('client: recoverReceiptSigner', s.recoverReceiptSigner),
      row('client: hashTensors(inputs)', s.hashInputs),
      row('client: hashTensors(outputs)', s.hashOutputs),
      row('client: signVoucher (every request pays)', s.clientSignVoucher),
      row('provider: recoverVoucherSigner', s.providerRecoverVoucher),
      row('provider: signReceipt (privateKeyToSigner, as the node signs)', s.providerSignReceipt),
      row('provider: signReceipt (a plain viem account, for reference)', s.providerSignReceiptViem),
      row('provider: recordAnswer + syncAnswers (SQLite, fdatasync)', s.providerPersistReceipt),
      row('provider: sign + persist', s.providerSignAndPersist),
      row(`provider, per receipt: batchTree + every proof (batches of ${BATCH_SIZE})`, s.batchTreeAndProofs),
      row(
        'provider, per receipt: the same with OpenZeppelin StandardMerkleTree (before)',
        s.batchTreeAndProofsOpenZeppelin,
      ),
      row('provider, per receipt: batch cut, NodeDb.openReceipts', s.batchCutRead),
      row('provider, per receipt: batch cut, batchTree + every proof', s.batchCutTree),
      row('provider, per receipt: batch cut, NodeDb.createBatch (SQLite, fsync)', s.batchCutWrite),
      row('provider, per receipt: batch cut in all', s.batchCut),
      row(
        `transport: JSON POST round trip to a bare echo server in another process (${wireBody.length} bytes)`,
        s.httpJsonRoundTrip,
      ),
      '',
      `Summed p50s of the per-request signature, hashing and insert work (client signVoucher, provider recoverVoucherSigner, signReceipt, recordAnswer and its sync, client verifyReceipt): ${fmt(perRequest)} ms, all on the main threads (secp256k1: ${secp256k1Backend === 'native' ? 'native libsecp256k1 for recovery and the SDK client, viem/noble for a viem account' : 'viem/noble'}; better-sqlite3 is synchronous).`,
      '',
    );
  }, 300_000);
});

it('6. trace capture overhead: engine.run with vs without trace', async () => {
  const rows: string[] = [];
  const out: Record<string, Record<string, Stats>> = {};
  const traceBreakdown: Record<string, unknown> = {};
  for (const m of models) {
    const plain = () => engine.run(m.pkg, m.inputs);
    const traced = async () => {
      const r = await engine.run(m.pkg, m.inputs, { trace: true });
      if (r.traceRoot === ZERO_HASH) throw new Error('a traced run has no trace root');
      return r;
    };
    for (let i = 0; i < 10; i++) await Promise.all([plain(), traced()]);
    const [p, t] = await interleaved(TRACE_ROUNDS[m.spec.name]!, [plain, traced], BLOCKS_OF_RUNS);
    const sp = stats(p!);
    const st = stats(t!);
    // Where a traced run's time goes: onnxruntime's own run (durationMs, the traced intermediates fetched
    // as an output), and the Merkle tree over the steps (traceOf); the rest is hashing each
    // intermediate and copying it out of onnxruntime.
    const ortPlain: number[] = [];
    const ortTraced: number[] = [];
    const merkle: number[] = [];
    let traceSteps = 0;
    const breakdownRuns = Math.min(20, TRACE_ROUNDS[m.spec.name]!);
    await pause(BLOCKS_OF_RUNS.settleMs);
    for (let i = 0; i < breakdownRuns; i++) {
      await pause(GAP_MS);
      ortPlain.push((await plain()).durationMs);
    }
    await pause(BLOCKS_OF_RUNS.settleMs);
    for (let i = 0; i < breakdownRuns; i++) {
      await pause(GAP_MS);
      const r = await traced();
      ortTraced.push(r.durationMs);
      const steps = r.trace!.steps;
      traceSteps = steps.length;
      const started = performance.now();
      if (traceOf(steps).root !== r.traceRoot) throw new Error("traceOf does not give the run's root");
      merkle.push(performance.now() - started);
    }
    const breakdown = {
      ortRunUntracedP50: median(ortPlain),
      ortRunTracedP50: median(ortTraced),
      merkleTreeP50: median(merkle),
    };
    out[m.spec.name] = { untraced: sp, traced: st };
    traceBreakdown[m.spec.name] = breakdown;
    const overhead = st.p50 / sp.p50 - 1;
    rows.push(
      `| ${m.spec.name} | ${traceSteps} | ${fmt(sp.p50)} / ${fmt(sp.p99)} | ${fmt(st.p50)} / ${fmt(st.p99)} | ${(overhead * 100).toFixed(0)}% | ${fmt(breakdown.ortRunUntracedP50)} / ${fmt(breakdown.ortRunTracedP50)} | ${fmt(breakdown.merkleTreeP50)} |`,
    );
    figures.push(
      figure(
        '6',
        `${m.spec.name}: traced run, Merkle tree over the steps (traceOf) p50`,
        breakdown.merkleTreeP50,
        'ms',
        undefined,
        `${traceSteps} leaves`,
      ),
      figure(
        '6',
        `${m.spec.name}: traced run, onnxruntime run itself p50`,
        breakdown.ortRunTracedP50,
        'ms',
        undefined,
        `untraced ${fmt(breakdown.ortRunUntracedP50)} ms`,
      ),
    );
    figures.push(
      figure(
        '6',
        `${m.spec.name}: trace overhead (traced p50 / untraced p50 - 1)`,
        overhead * 100,
        '%',
        { op: '<=', value: 25 },
        `${traceSteps} traced tensors; ${fmt(st.p50)} vs ${fmt(sp.p50)} ms`,
      ),
    );
  }
  detail.trace = out;
  detail.traceBreakdown = traceBreakdown;
  md.push(
    '## 6. Trace capture overhead',
    '',
    'engine.run in this process, with and without `trace: true` (up to TRACE_STEPS intermediate tensors, evenly spaced over the graph, exposed as outputs and hashed into a Merkle root), in interleaved blocks.',
    '',
    '| model | traced tensors | untraced p50 / p99 ms | traced p50 / p99 ms | overhead | onnxruntime run untraced / traced p50 ms | Merkle tree (traceOf) p50 ms |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
  );
}, 300_000);
