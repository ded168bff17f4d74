/**
 * Calibrates the token-margin policy of the sample LLMs (npm run calibrate; tsx): honest generations
 * of 32-256 tokens under several runtime profiles, each re-checked under another profile, and the
 * impostor runs the re-check must catch. Prints the figures and writes docs/recheck-calibration.md.
 *
 *   npx tsx scripts/recheck-calibration.ts [--honest 1000] [--impostor 20] [--workers 3] [--out docs/recheck-calibration.md]
 *
 * Work is split over worker processes (each onnxruntime session on one thread); every job is a pure
 * function of its index, so a run is reproducible whatever the split.
 */
import { fork } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ModelPackage } from '../src/protocol/manifest.js';
import { judgeMargins, type MarginPolicy, type TokenMargin } from '../src/protocol/sampling.js';
import {
  defaultEngines,
  recheckGeneration,
  type Engines,
  type LlmEngineOptions,
  type LlmPrompt,
  type SamplingParams,
  type TokenEngine,
} from '../src/runtime/index.js';
import { DEFAULT_OUT_DIR } from '../examples/models/build.mjs';
import { createMemoryStore, loadModel, packModelFolder } from '../src/store/index.js';

type LlmExampleName = 'tiny-chat' | 'tiny-chat-other' | 'tiny-chat-int8' | 'tiny-chat-perturbed';

const packages = new Map<string, Promise<ModelPackage>>();

/** A sample LLM (built by `npm run models`), packed as `glassbox model pack` packs it. */
function llmExample(name: LlmExampleName): Promise<ModelPackage> {
  let pkg = packages.get(name);
  if (!pkg) {
    const store = createMemoryStore();
    pkg = packModelFolder(store, join(DEFAULT_OUT_DIR, name)).then(({ id }) => loadModel(store, id));
    packages.set(name, pkg);
  }
  return pkg;
}

const { values: args } = parseArgs({
  options: {
    honest: { type: 'string', default: '1000' },
    impostor: { type: 'string', default: '20' },
    workers: { type: 'string', default: '3' },
    out: { type: 'string', default: join('docs', 'recheck-calibration.md') },
    /** Every outcome as a JSON line, as it comes (git-ignored); `--from` reports from such a file. */
    log: { type: 'string', default: join('examples', 'models', 'build', 'recheck-calibration.jsonl') },
    from: { type: 'string' },
    /** Only measure speed (no calibration): decode tokens/s, time to first token, re-check cost. */
    'speed-only': { type: 'boolean', default: false },
    worker: { type: 'string' },
  },
});

/** The runtime profiles honest providers run (threads are not part of a profile, but vary here too). */
const PROFILES: readonly (LlmEngineOptions & { readonly label: string })[] = [
  { label: 'disabled/1t', graphOptimizationLevel: 'disabled', intraOpNumThreads: 1 },
  { label: 'basic/1t', graphOptimizationLevel: 'basic', intraOpNumThreads: 1 },
  { label: 'all/1t', graphOptimizationLevel: 'all', intraOpNumThreads: 1 },
  { label: 'extended/1t', graphOptimizationLevel: 'extended', intraOpNumThreads: 1 },
];

const TOPICS = [
  'the sea',
  'dragons',
  'a lighthouse keeper',
  'prime numbers',
  'the French revolution',
  'bread baking',
  'black holes',
  'a lost cat',
  'the rules of chess',
  'photosynthesis',
  'a rainy Tuesday',
  'the Rust borrow checker',
  'Mount Everest',
  'jazz',
  'how vaccines work',
  'a haunted library',
  'compound interest',
  'the moon landing',
  'octopuses',
  'a robot learning to paint',
  'tea ceremonies',
  'the Pythagorean theorem',
  '東京の朝',
  'les croissants',
];
const ASKS = [
  'Write a poem about',
  'Explain',
  'Tell a short story about',
  'List facts about',
  'Summarise',
  'Argue for and against',
];

/** mulberry32: a small seeded PRNG, so that job i is the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The share of sampled generations. Sampling and its re-check cost ~10 ms a token on these logits
 * (151,936 Gumbel draws when the spread of logits is below the noise's: src/protocol/sampling.ts), a
 * greedy token well under 1 ms: 15 % keeps a 1,000-generation run within the half hour on a shared 2-core machine.
 */
const SAMPLED_SHARE = 0.15;

type Job = {
  readonly kind: 'honest' | LlmExampleName | 'prompt-changed' | 'truncated' | 'over-count';
  readonly index: number;
  readonly prompt: LlmPrompt;
  readonly params: SamplingParams;
  readonly provider: number;
  readonly verifier: number;
};

function jobOf(kind: Job['kind'], index: number): Job {
  const r = prng(index * 7919 + kind.length * 104729 + 1);
  const pick = <T>(list: readonly T[]) => list[Math.floor(r() * list.length)]!;
  const ask = `${pick(ASKS)} ${pick(TOPICS)}.`;
  const prompt: LlmPrompt =
    r() < 0.75
      ? {
          kind: 'chat',
          messages: [
            ...(r() < 0.5 ? [{ role: 'system' as const, content: 'You are a helpful assistant.' }] : []),
            ...(r() < 0.3
              ? [
                  { role: 'user' as const, content: `${pick(ASKS)} ${pick(TOPICS)}.` },
                  { role: 'assistant' as const, content: `Here is something about ${pick(TOPICS)}.` },
                ]
              : []),
            { role: 'user' as const, content: ask },
          ],
        }
      : { kind: 'completion', prompt: `${pick(TOPICS)}: ${ask}` };
  // honest lengths 32-256, most of them short (32·8^(u³): median 41, mean ~60); impostor responses 32-64 (one short response is the claim)
  const maxTokens =
    kind === 'honest' ? Math.round(32 * Math.pow(8, Math.pow(r(), 3))) : 32 + Math.floor(r() * 33);
  const mode = r();
  const params: SamplingParams = {
    temperature: mode < SAMPLED_SHARE ? pick([0.6, 0.8, 1, 1.2]) : 0,
    topP: mode < SAMPLED_SHARE && r() < 0.5 ? pick([0.8, 0.9, 0.95]) : 1,
    topK: mode < SAMPLED_SHARE && r() < 0.4 ? pick([20, 40, 100]) : 0,
    seed: BigInt(Math.floor(r() * 2 ** 32)) * 4294967296n + BigInt(Math.floor(r() * 2 ** 32)),
    maxTokens,
    stop: [],
  };
  const provider = Math.floor(r() * PROFILES.length);
  const verifier = (provider + 1 + Math.floor(r() * (PROFILES.length - 1))) % PROFILES.length;
  return { kind, index, prompt, params, provider, verifier };
}

/** What a worker reports per job: enough for every figure, nothing per-token but margins. */
type Outcome = {
  readonly kind: Job['kind'];
  readonly index: number;
  readonly sampled: boolean;
  readonly tokens: number;
  readonly margins: readonly TokenMargin[];
  readonly failure: string | null;
  /** Whether the claimed output differs from what the real model generates (impostors). */
  readonly differs: boolean;
  readonly generateMs: number;
  readonly recheckMs: number;
};

async function generate(
  engine: TokenEngine,
  pkg: ModelPackage,
  ids: readonly number[],
  params: SamplingParams,
): Promise<{ outputIds: readonly number[]; ms: number }> {
  for await (const event of engine.generate(pkg, ids, { params }))
    if (event.type === 'done') return { outputIds: event.outputIds, ms: event.durationMs };
  throw new Error('no done event');
}

async function runJob(registries: readonly Engines[], job: Job): Promise<Outcome> {
  const real = await llmExample('tiny-chat');
  const provider = registries[job.provider]!.tokens(real);
  const verifier = registries[job.verifier]!.tokens(real);
  const impostor = job.kind.startsWith('tiny-chat') ? await llmExample(job.kind as LlmExampleName) : real;
  const { ids } = await provider.prompt(real, job.prompt);
  let genIds = ids;
  if (job.kind === 'prompt-changed') {
    // one prompt token changed before generating; the claim shows the request's prompt ids
    const at = Math.floor(prng(job.index)() * ids.length);
    genIds = ids.map((id, i) => (i === at ? (id + 1 + job.index) % 151643 : id));
  }
  const { outputIds, ms } = await generate(provider, impostor, genIds, job.params);
  let claimed = outputIds;
  let completionTokens = outputIds.length;
  if (job.kind === 'truncated')
    claimed = outputIds.slice(0, Math.max(1, outputIds.length - 1 - (job.index % 8)));
  if (job.kind === 'over-count') completionTokens += 1 + (job.index % 3);
  let differs = false;
  if (job.kind !== 'honest') {
    const honest = await generate(provider, real, ids, job.params);
    differs = honest.outputIds.join() !== claimed.join();
  }
  const report = await recheckGeneration(verifier, real, {
    request: { ...job.prompt, params: job.params },
    promptIds: ids,
    outputIds: claimed,
    completionTokens,
  });
  return {
    kind: job.kind,
    index: job.index,
    sampled: job.params.temperature > 0,
    tokens: claimed.length,
    margins: report.margins,
    failure: report.failure?.check ?? null,
    differs,
    generateMs: ms,
    recheckMs: report.durationMs,
  };
}

function jobs(honest: number, impostor: number): Job[] {
  const list: Job[] = [];
  for (let i = 0; i < honest; i++) list.push(jobOf('honest', i));
  for (const kind of [
    'tiny-chat-other',
    'tiny-chat-int8',
    'tiny-chat-perturbed',
    'prompt-changed',
    'truncated',
    'over-count',
  ] as const)
    for (let i = 0; i < impostor; i++) list.push(jobOf(kind, i));
  return list;
}

async function worker(index: number, count: number): Promise<void> {
  // a shared machine may be slow: the time limit is for serving, not for measuring
  const registries = PROFILES.map(({ label: _, ...options }) =>
    defaultEngines({ llm: { ...options, limits: { timeoutMs: 600_000 } } }),
  );
  const all = jobs(Number(args.honest), Number(args.impostor));
  for (const registry of registries)
    for (const name of ['tiny-chat'] as const) {
      const pkg = await llmExample(name);
      await registry.tokens(pkg).load(pkg);
    }
  for (let i = index; i < all.length; i += count) {
    const outcome = await runJob(registries, all[i]!);
    process.send!({
      outcome: { ...outcome, margins: outcome.margins.map((m) => [m.margin, m.outside ? 1 : 0]) },
    });
  }
  await Promise.all(registries.map((r) => r.close()));
}

// ---- the figures ------------------------------------------------------------------------------

type Row = Omit<Outcome, 'margins'> & { readonly margins: readonly [number, number][] };

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const fmt = (x: number) => (x === 0 ? '0' : Number.isFinite(x) ? x.toExponential(2) : String(x));

function verdictOf(row: Row, policy: MarginPolicy): boolean {
  const margins = row.margins.map(([margin, outside]) => ({ margin, outside: outside === 1 }));
  const marginsOk = judgeMargins(margins, policy).ok;
  // the other checks do not depend on the policy
  const otherFailure = row.failure !== null && row.failure !== 'margins';
  return marginsOk && !otherFailure;
}

function report(rows: readonly Row[], policy: MarginPolicy, wallMs: number): string {
  const honest = rows.filter((r) => r.kind === 'honest');
  const margins = honest
    .flatMap((r) => r.margins.filter(([, o]) => o === 0).map(([m]) => m))
    .sort((a, b) => a - b);
  const outside = honest.reduce((n, r) => n + r.margins.filter(([, o]) => o === 1).length, 0);
  const falsePositives = honest.filter((r) => !verdictOf(r, policy));
  const tokens = honest.reduce((n, r) => n + r.tokens, 0);
  const lines: string[] = [];
  const push = (...l: string[]) => lines.push(...l);
  push(
    '# Re-check calibration (token margins)',
    '',
    'Written by `npx tsx scripts/recheck-calibration.ts` (src/runtime/llm/recheck.ts, src/protocol/sampling.ts).',
    `Sample model \`tiny-chat\` (examples/models/llm). Profiles: ${PROFILES.map((p) => `\`${p.label}\``).join(', ')};`,
    'each generation is re-checked under a profile other than the one it was generated under.',
    `Run: ${rows.length} generations${Number.isNaN(wallMs) ? '' : ` in ${(wallMs / 60000).toFixed(1)} min on ${args.workers} worker processes`}.`,
    '',
    `Policy set from this run: \`{ kind: 'token-margin', hard: ${policy.hard}, soft: ${policy.soft}, rate: ${policy.rate} }\`.`,
    '',
    '## Honest generations',
    '',
    `| generations | greedy / sampled | tokens | false positives | margins exactly 0 | max margin | p99.9 | p99.99 | outside the kept set |`,
    '|---|---|---|---|---|---|---|---|---|',
    `| ${honest.length} | ${honest.filter((r) => !r.sampled).length} / ${honest.filter((r) => r.sampled).length} | ${tokens} | **${falsePositives.length}** | ${((100 * margins.filter((m) => m === 0).length) / margins.length).toFixed(3)} % | ${fmt(margins.at(-1) ?? 0)} | ${fmt(quantile(margins, 0.999))} | ${fmt(quantile(margins, 0.9999))} | ${outside} |`,
    '',
    `Non-zero honest margins: ${margins.filter((m) => m > 0).length} of ${margins.length} tokens${
      margins.some((m) => m > 0)
        ? ` (largest ${margins
            .filter((m) => m > 0)
            .slice(-5)
            .map(fmt)
            .join(', ')})`
        : ''
    }.`,
    '',
    '## Cheating, one response of 32-64 tokens',
    '',
    "| claim | runs | caught | output differs from the real model's | caught when it differs | token flip rate | smallest max margin when caught | median max margin |",
    '|---|---|---|---|---|---|---|---|',
  );
  for (const kind of [
    'tiny-chat-other',
    'tiny-chat-int8',
    'tiny-chat-perturbed',
    'prompt-changed',
    'truncated',
    'over-count',
  ] as const) {
    const runs = rows.filter((r) => r.kind === kind);
    if (runs.length === 0) continue;
    const caught = runs.filter((r) => !verdictOf(r, policy));
    const differing = runs.filter((r) => r.differs);
    const caughtDiffering = differing.filter((r) => !verdictOf(r, policy));
    const flips = runs.reduce((n, r) => n + r.margins.filter(([m, o]) => m > 0 || o === 1).length, 0);
    const toks = runs.reduce((n, r) => n + r.tokens, 0);
    const maxes = caught.map((r) => Math.max(0, ...r.margins.map(([m]) => m))).sort((a, b) => a - b);
    push(
      `| ${kind} | ${runs.length} | ${caught.length} (${((100 * caught.length) / runs.length).toFixed(1)} %) | ${differing.length} | ${caughtDiffering.length} of ${differing.length} | ${((100 * flips) / Math.max(1, toks)).toFixed(2)} % | ${fmt(maxes[0] ?? NaN)} | ${fmt(quantile(maxes, 0.5))} |`,
    );
  }
  const impostorFlips = rows
    .filter((r) => r.kind !== 'honest' && r.kind !== 'truncated' && r.kind !== 'over-count')
    .flatMap((r) => r.margins.filter(([m, o]) => o === 0 && m > 0).map(([m]) => m))
    .sort((a, b) => a - b);
  push(
    '',
    `Smallest non-zero in-set margin of any impostor token: ${fmt(impostorFlips[0] ?? NaN)}; p1: ${fmt(quantile(impostorFlips, 0.01))}; median ${fmt(quantile(impostorFlips, 0.5))}.`,
    '',
    "A model whose output is token for token the real model's cannot be told apart by its tokens: the",
    're-check catches an impostor exactly when its response differs, and the rate at which one response of',
    '32-64 tokens differs is a property of the impostor (its token flip rate), not of the threshold.',
    '',
    '## Cost during the run (wall time, 3 worker processes on a shared 2-core machine)',
    '',
  );
  const sum = (list: readonly Row[], f: (r: Row) => number) => list.reduce((n, r) => n + f(r), 0);
  for (const sampled of [false, true]) {
    const list = honest.filter((r) => r.sampled === sampled);
    if (list.length === 0) continue;
    push(
      `- ${sampled ? 'sampled' : 'greedy'}: re-check ${(sum(list, (r) => r.recheckMs) / 1000).toFixed(1)} s for generation ${(sum(list, (r) => r.generateMs) / 1000).toFixed(1)} s (ratio ${(sum(list, (r) => r.recheckMs) / sum(list, (r) => r.generateMs)).toFixed(3)}), ${(sum(list, (r) => r.tokens) / (sum(list, (r) => r.generateMs) / 1000)).toFixed(0)} tokens/s generated`,
    );
  }
  return lines.join('\n') + '\n';
}

/**
 * The policy from the honest margins: `hard` two decades above the largest honest margin and at
 * least 1e-4, `soft` one decade above it and at least 2e-5, `rate` 1 % (so at least 2 suspicious
 * tokens, by the rule). The floors stand on what can make an honest margin non-zero at all: a
 * decode step's logits differ from the one-pass ones by up to ~3e-6 here (onnxruntime's M=1
 * MatMul path), so a near-tie flipped by it has a margin of at most ~7e-6.
 */
function choosePolicy(rows: readonly Row[]): MarginPolicy {
  const honestMax = Math.max(
    0,
    ...rows
      .filter((r) => r.kind === 'honest')
      .flatMap((r) => r.margins.filter(([, o]) => o === 0).map(([m]) => m)),
  );
  const decade = honestMax > 0 ? Math.pow(10, Math.ceil(Math.log10(honestMax))) : 0;
  return { hard: Math.max(1e-4, decade * 100), soft: Math.max(2e-5, decade * 10), rate: 0.01 };
}

// ---- speed ------------------------------------------------------------------------------------

type Timing = { readonly wallMs: number; readonly cpuMs: number };

function timer(): () => Timing {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpu);
    return { wallMs: performance.now() - wall, cpuMs: (used.user + used.system) / 1000 };
  };
}

/**
 * One process, one thread, profile basic: greedy decode tokens/s over 256 tokens, time to first
 * token for a 128-token prompt, and re-check time / generation time for 128-token prompts and
 * outputs, greedy and sampled. Wall and CPU time (the machine is shared; CPU time is what the work
 * costs). Best of 3 runs each.
 */
async function speed(): Promise<string[]> {
  const registry = defaultEngines({
    llm: { graphOptimizationLevel: 'basic', intraOpNumThreads: 1, limits: { timeoutMs: 600_000 } },
  });
  const pkg = await llmExample('tiny-chat');
  const engine = registry.tokens(pkg);
  await engine.load(pkg);
  // a raw prompt of about 128 tokens: the text of the first 128 tokens of a longer one
  const long = TOPICS.map((t) => `${pick0(ASKS, t)} ${t}.`)
    .join(' ')
    .repeat(4);
  const first128 = (await engine.prompt(pkg, { kind: 'completion', prompt: long })).ids.slice(0, 128);
  const text = await engine.decode(pkg, first128);
  const prompt = (await engine.prompt(pkg, { kind: 'completion', prompt: text })).ids;
  const greedy: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: 1n, maxTokens: 256, stop: [] };
  const run = async (params: SamplingParams) => {
    const total = timer();
    let first: Timing | undefined;
    let afterFirst: (() => Timing) | undefined;
    let outputIds: readonly number[] = [];
    for await (const event of engine.generate(pkg, prompt, { params }))
      if (event.type === 'token' && !first) {
        first = total();
        afterFirst = timer();
      } else if (event.type === 'done') outputIds = event.outputIds;
    return { first: first!, decode: afterFirst!(), total: total(), outputIds };
  };
  await run({ ...greedy, maxTokens: 16 });
  const best = <T>(list: T[], key: (t: T) => number) => list.sort((a, b) => key(a) - key(b))[0]!;
  const decodeRuns = [await run(greedy), await run(greedy), await run(greedy)];
  const d = best(decodeRuns, (r) => r.decode.wallMs);
  const n = d.outputIds.length - 1;
  const lines = [
    `- greedy decode, 1 thread: **${((n / d.decode.wallMs) * 1000).toFixed(0)} tokens/s** wall (${((n / d.decode.cpuMs) * 1000).toFixed(0)} tokens/s of CPU time), over ${n} tokens after the first`,
    `- time to first token, ${prompt.length}-token prompt: **${best(decodeRuns, (r) => r.first.wallMs).first.wallMs.toFixed(1)} ms** wall (${best(decodeRuns, (r) => r.first.cpuMs).first.cpuMs.toFixed(1)} ms CPU)`,
  ];
  for (const params of [
    { ...greedy, maxTokens: 128 },
    { ...greedy, maxTokens: 128, temperature: 1, seed: 7n },
  ]) {
    const pairs = [];
    for (let i = 0; i < 3; i++) {
      const gen = await run(params);
      const check = timer();
      const report = await recheckGeneration(engine, pkg, {
        request: { kind: 'completion', prompt: text, params },
        outputIds: gen.outputIds,
      });
      if (!report.ok)
        throw new Error(
          `an honest generation failed its re-check: ${report.failure?.reason} (T=${params.temperature}, prompt ${prompt.length} vs ${report.prompt.ids.length}, output ${gen.outputIds.length}, position ${report.failure?.position})`,
        );
      pairs.push({ gen: gen.total, check: check() });
    }
    const p = best(pairs, (x) => x.check.wallMs / x.gen.wallMs);
    lines.push(
      `- re-check / generation, ${prompt.length}-token prompt and 128-token output, ${params.temperature === 0 ? 'greedy' : 'sampled (T=1)'}: **${(p.check.wallMs / p.gen.wallMs).toFixed(2)}** wall (${p.check.wallMs.toFixed(0)} / ${p.gen.wallMs.toFixed(0)} ms), ${(p.check.cpuMs / p.gen.cpuMs).toFixed(2)} in CPU time`,
    );
  }
  await registry.close();
  return lines;
}

function pick0<T>(list: readonly T[], key: string): T {
  return list[key.length % list.length]!;
}

async function main(): Promise<void> {
  if (args.worker !== undefined) {
    const [index, count] = args.worker.split('/').map(Number) as [number, number];
    await worker(index, count);
    return;
  }
  if (args['speed-only']) {
    console.log((await speed()).join('\n'));
    return;
  }
  if (args.from !== undefined) {
    const rows = readFileSync(args.from, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Row);
    return await finish(rows, NaN);
  }
  const workers = Number(args.workers);
  writeFileSync(args.log!, '');
  const total = jobs(Number(args.honest), Number(args.impostor)).length;
  const rows: Row[] = [];
  const started = performance.now();
  await Promise.all(
    Array.from({ length: workers }, (_, w) => {
      const child = fork(process.argv[1]!, [...process.argv.slice(2), '--worker', `${w}/${workers}`], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      child.on('message', (message: { outcome: Row }) => {
        rows.push(message.outcome);
        appendFileSync(args.log!, `${JSON.stringify(message.outcome)}\n`);
        if (rows.length % 50 === 0)
          console.log(`${rows.length}/${total} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
      });
      return new Promise<void>((resolve, reject) =>
        child.on('exit', (code) =>
          code === 0 ? resolve() : reject(new Error(`worker ${w} exited with ${code}`)),
        ),
      );
    }),
  );
  await finish(rows, performance.now() - started);
}

async function finish(rows: Row[], wallMs: number): Promise<void> {
  rows.sort((a, b) => (a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : a.index - b.index));
  const policy = choosePolicy(rows);
  const speedLines = await speed();
  const markdown = `${report(rows, policy, wallMs)}\n## Speed (tiny-chat, profile basic, one process)\n\n${speedLines.join('\n')}\n`;
  console.log(markdown);
  writeFileSync(args.out!, markdown);
  console.log(`written: ${args.out}`);
}

await main();
