import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import {
  fmt,
  figure,
  figureRow,
  FIGURE_HEADER,
  machine,
  RESULTS_DIR,
  writeResults,
  type Figure,
  type Machine,
} from './lib.js';

/*
 * The last benchmark of `npm run bench` (bench/vitest.config.ts runs the files one at a time, in
 * a fixed order): reads what gas, hedging, overhead, large, llm and gateway wrote in this run, prints one Markdown table
 * of every figure with its target, and writes bench/results/latest.json and latest.md. Fails when
 * a result is missing or was not written by this run (an error), never because a target is missed.
 */

/** Results older than this did not come from this run (the whole command takes under 10 minutes). */
const FRESH_MS = 20 * 60_000;

type Gas = {
  measuredAt: string;
  batchCommit: { receipts: number; gas: number; gasPerInference: number }[];
  gas: Record<string, number>;
};
type Hedging = {
  measuredAt?: string;
  p50Ratio: number;
  target: number;
  allProviders: { p50: number };
  fastProvidersOnly: { p50: number };
};
type Overhead = { measuredAt: string; machine: Machine; figures: Figure[] };

async function fresh<T extends { measuredAt?: string }>(name: string): Promise<T> {
  const json = JSON.parse(await readFile(join(RESULTS_DIR, `${name}.json`), 'utf8')) as T;
  const at = json.measuredAt === undefined ? NaN : Date.parse(json.measuredAt);
  if (!(Date.now() - at < FRESH_MS))
    throw new Error(`bench/results/${name}.json was not written by this run (measuredAt ${json.measuredAt})`);
  return json;
}

it('puts every figure in one table: bench/results/latest.json and latest.md', async () => {
  const overhead = await fresh<Overhead>('overhead');
  const gas = await fresh<Gas>('gas');
  const hedging = await fresh<Hedging>('hedging');
  const large = await fresh<{ measuredAt: string; figures: Figure[] }>('large');
  const llm = await fresh<{ measuredAt: string; figures: Figure[] }>('llm');
  const gateway = await fresh<{ measuredAt: string; figures: Figure[] }>('gateway');

  const perInference = (n: number) => {
    const row = gas.batchCommit.find((b) => b.receipts === n);
    if (!row) throw new Error(`gas.json has no batch of ${n}`);
    return row.gasPerInference;
  };
  // gas.bench.ts names its operations; a renamed one fails here rather than print "undefined".
  const gasOf = (operation: string) => {
    const value = gas.gas[operation];
    if (value === undefined)
      throw new Error(`gas.json has no "${operation}" (it has: ${Object.keys(gas.gas).join(', ')})`);
    return value;
  };
  const gasFigures: Figure[] = [
    figure(
      '4',
      'gas per inference, batches of 1000 receipts',
      perInference(1000),
      'gas',
      { op: '<=', value: 1000 },
      'commitBatch gas / receipts; from gas.bench.ts',
    ),
    figure('4', 'gas per inference, batches of 100 receipts', perInference(100), 'gas'),
    figure(
      '4',
      'gas per inference, batches of 256 (the node default)',
      gasOf('commit batch') / 256,
      'gas',
      undefined,
      'commit batch gas / 256',
    ),
    figure(
      '4',
      'redeem voucher (later, new hold bucket), per redemption',
      gasOf('redeem voucher (later, new hold bucket)'),
      'gas',
      undefined,
      `one per redemption, not per inference; releasing a finished hold costs ${fmt(gasOf('release a finished hold'))} gas`,
    ),
  ];
  const hedgingFigure = figure(
    'hedging',
    'client p50 with a 250 ms-late provider / without',
    hedging.p50Ratio,
    'x',
    { op: '<=', value: hedging.target },
    `${fmt(hedging.allProviders.p50)} vs ${fmt(hedging.fastProvidersOnly.p50)} ms`,
  );
  const order = ['1', '2', '3', '4', '5', '6', 'hedging', 'L', 'LLM', 'gateway'];
  const figures = [
    ...overhead.figures,
    ...gasFigures,
    hedgingFigure,
    ...large.figures,
    ...llm.figures,
    ...gateway.figures,
  ].sort((a, b) => order.indexOf(a.section) - order.indexOf(b.section));
  const targets = figures.filter((f) => f.met !== null);
  const met = targets.filter((f) => f.met).length;
  const now = machine();
  const m = overhead.machine;
  const table = [
    `# Glassbox benchmarks: \`npm run bench\``,
    '',
    `${m.cpu}, ${m.cores} cores, ${m.platform}, Node ${m.node}; load average ${m.loadAverage.join(', ')} at the start of overhead.bench.ts, ${now.loadAverage.join(', ')} at the end. ${met} of ${targets.length} targets met.`,
    '',
    ...FIGURE_HEADER,
    ...figures.map(figureRow),
    '',
    'Sections: 1 sdk.infer in receipt mode (one provider process on loopback) vs the same model behind a plain unverified HTTP server in its own process (fastify + onnxruntime-node, JSON, no receipt: the baseline), and vs direct onnxruntime-node in this process (the second reference); 2 quorum 3 vs receipt mode; 3 receipt verification and signing costs; 4 gas; 5 devnet start; 6 trace capture; L a large float32 input, direct vs the unverified server vs verified; LLM the sample chat model: the decode rate of the engine, the re-check against the generation, and a provider streaming with receipts vs a plain server streaming the same engine without (bench/unverified-llm-server.mjs); gateway the local OpenAI-compatible gateway (src/gateway) against calling its provider directly, same body. Details: overhead.md, gas.md, hedging.md, large.md, llm.md, gateway.md.',
    '',
  ].join('\n');
  await writeResults(
    'latest',
    {
      measuredAt: new Date().toISOString(),
      command: 'npm run bench',
      machine: { ...m, loadAverageAtEnd: now.loadAverage },
      targets: { met, total: targets.length },
      figures,
      sources: {
        overhead: overhead.measuredAt,
        gas: gas.measuredAt,
        hedging: hedging.measuredAt,
        large: large.measuredAt,
        llm: llm.measuredAt,
        gateway: gateway.measuredAt,
      },
    },
    table,
  );
  console.log(`\n${table}`);
  expect(figures.length).toBeGreaterThan(0);
});
