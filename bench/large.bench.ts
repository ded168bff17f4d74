import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildLargeModel } from '../examples/models/bench-models.mjs';
import { devnetClient, startDevnet, type Devnet } from '../src/devnet/index.js';
import { encodeTensors } from '../src/protocol/encoding.js';
import type { TensorMap } from '../src/protocol/tensor.js';
import { closeClient, infer, type Client } from '../src/sdk/index.js';
import {
  figure,
  figuresPage,
  fmt,
  interleaved,
  machine,
  stats,
  writeResults,
  type Figure,
  type Stats,
} from './lib.js';
import { startUnverifiedServer, type UnverifiedServer } from './unverified-server.js';

/*
 * Large tensors (issue 16, point 4): one float32 input of LARGE_VALUES values (x [1, n] -> sum of
 * squares, bench-models.mjs) run
 *   (a) directly, onnxruntime-node in this process;
 *   (b) through the unverified server (bench/unverified-server.ts: fastify + onnxruntime-node in
 *       its own process, binary both ways): its time minus (a) is what moving the tensor costs;
 *   (c) through the network in receipt mode: sdk.infer against one provider process of a devnet
 *       (anvil, the node, its SQLite, the binary transport the SDK picks for large inputs).
 * Target: (c) <= 2 x (a) + ((b) - (a)). The unverified server over JSON is timed too, for scale.
 *
 * The size is LARGE_VALUES unless the chain's data cap (maxDataBytes: the most inputs and outputs a
 * receipt may carry) is smaller; then every path is measured at the largest input the cap allows,
 * and the results say so. Writes bench/results/large.json and large.md.
 */

/** The input size the figure is about: a million float32 values (4 MiB). */
export const LARGE_VALUES = 1_048_576;
const ROUNDS = 20;
const JSON_ROUNDS = 3;
const MAX_PRICE = 10n ** 16n;
/** Bytes of the canonical encoding besides the data: x's header (26) and the output y [1, 1] (30). */
const ENCODING_OVERHEAD = 26 + 30;
/** Model runs compared in blocks, each after onnxruntime's spinning threads have gone idle (lib.ts). */
const BLOCKS = { gapMs: 3, block: 5, settleMs: 150 } as const;

const figures: Figure[] = [];
const measuredAt = new Date().toISOString();
const machineAtStart = machine();
let devnet: Devnet | undefined;
let client: Client | undefined;
let server: UnverifiedServer | undefined;
let session: ort.InferenceSession | undefined;
let detail: Record<string, unknown> = {};

beforeAll(async () => {
  const dir = buildLargeModel();
  devnet = await startDevnet({
    providers: 1,
    models: [dir],
    nodeConfig: { logLevel: 'error', rateLimit: { perMinute: 1_000_000 } },
  });
  client = await devnetClient(devnet);
  server = await startUnverifiedServer(join(dir, 'model.onnx'));
  session = await ort.InferenceSession.create(join(dir, 'model.onnx'), {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'basic',
    executionMode: 'sequential',
    interOpNumThreads: 1,
  });
}, 180_000);

afterAll(async () => {
  await session?.release();
  await server?.stop();
  if (client) await closeClient(client);
  await devnet?.stop();
  if (devnet) await rm(devnet.dir, { recursive: true, force: true });
  await writeResults(
    'large',
    { measuredAt, machine: machineAtStart, figures, ...detail },
    figuresPage(
      '# Large tensors (measured by `npm run bench`, bench/large.bench.ts)',
      machineAtStart,
      figures,
    ),
  );
});

/** Seeded values in [-1, 1). */
function input(values: number): TensorMap {
  const data = new Float32Array(values);
  let x = 7;
  for (let i = 0; i < values; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    data[i] = x / 2 ** 30 - 1;
  }
  return { x: { dtype: 'float32', shape: [1, values], data } };
}

it(`a ${LARGE_VALUES}-value float32 input: verified (receipt mode) vs direct and the unverified server`, async () => {
  const cap = client!.deployment.params.maxDataBytes;
  const values = Math.min(LARGE_VALUES, Math.floor((cap - ENCODING_OVERHEAD) / 4));
  const inputs = input(values);
  const model = devnet!.models[0]!.id;
  const x = inputs.x!;
  const feeds = { x: new ort.Tensor('float32', x.data as Float32Array, [...x.shape]) };
  const direct = () => session!.run(feeds);
  const unverified = () => server!.infer(inputs, 'binary');
  const verified = async () => {
    const result = await infer(client!, { model, inputs, maxPrice: MAX_PRICE, hedgeAfterMs: false });
    if (!result.report.ok) throw new Error('an answer did not verify');
    return result;
  };
  for (let i = 0; i < 3; i++) await Promise.all([direct(), unverified(), verified()]); // warm-up
  const [d, u, v] = (await interleaved(ROUNDS, [direct, unverified, verified], BLOCKS)).map(stats) as [
    Stats,
    Stats,
    Stats,
  ];
  const [j] = (await interleaved(JSON_ROUNDS, [() => server!.infer(inputs, 'json')])).map(stats) as [Stats];
  const transfer = u.p50 - d.p50;
  const budget = 2 * d.p50 + transfer;
  const bytes = encodeTensors(inputs).byteLength;
  const size = `${values} float32 values (${fmt(bytes / 2 ** 20)} MiB)`;
  const capped =
    values < LARGE_VALUES
      ? `; measured at ${values} values, not ${LARGE_VALUES}: the chain's maxDataBytes is ${cap}`
      : '';
  detail = {
    values,
    inputBytes: bytes,
    maxDataBytes: cap,
    direct: d,
    unverified: u,
    verified: v,
    unverifiedJson: j,
  };
  figures.push(
    figure('L', `${values} values: direct run p50`, d.p50, 'ms', undefined, `p99 ${fmt(d.p99)} ms`),
    figure(
      'L',
      `${values} values: unverified server p50 (binary)`,
      u.p50,
      'ms',
      undefined,
      `p99 ${fmt(u.p99)} ms; transfer (minus direct) ${fmt(transfer)} ms`,
    ),
    figure(
      'L',
      `${values} values: unverified server p50 (JSON)`,
      j.p50,
      'ms',
      undefined,
      `${JSON_ROUNDS} rounds`,
    ),
    figure(
      'L',
      `${values} values: verified p50 (receipt mode)`,
      v.p50,
      'ms',
      undefined,
      `p99 ${fmt(v.p99)} ms`,
    ),
    figure(
      'L',
      `${values} values: verified / (2 x direct + transfer)`,
      v.p50 / budget,
      'x',
      { op: '<=', value: 1 },
      `${size}: ${fmt(v.p50)} ms vs 2 x ${fmt(d.p50)} + ${fmt(transfer)} ms${capped}`,
    ),
  );
  expect(v.n).toBe(ROUNDS);
}, 600_000);
