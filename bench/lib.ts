import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';

/** Helpers shared by the benchmarks: statistics, the machine, figures with targets, results files. */

export const RESULTS_DIR = join(import.meta.dirname, 'results');

/** Nearest-rank percentile (p in [0, 1]). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new Error('percentile of no samples');
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

export type Stats = { readonly n: number; readonly p50: number; readonly p99: number; readonly mean: number };

export function stats(xs: readonly number[]): Stats {
  return {
    n: xs.length,
    p50: percentile(xs, 0.5),
    p99: percentile(xs, 0.99),
    mean: xs.reduce((a, b) => a + b, 0) / xs.length,
  };
}

export type Machine = {
  readonly cpu: string;
  readonly cores: number;
  readonly node: string;
  readonly platform: string;
  readonly memoryGiB: number;
  readonly freeMemoryGiB: number;
  /** 1, 5 and 15 minute load averages when the benchmark started (other work on the machine). */
  readonly loadAverage: readonly number[];
};

export function machine(): Machine {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    freeMemoryGiB: Math.round((freemem() / 2 ** 30) * 10) / 10,
    loadAverage: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

export type Target = { readonly op: '<=' | '>='; readonly value: number };

/** One reported number; `target` and `met` are absent (null) for figures without a target. */
export type Figure = {
  readonly section: string;
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly target: Target | null;
  readonly met: boolean | null;
  /** How it was measured, or what it is made of. */
  readonly note?: string;
};

export function figure(
  section: string,
  name: string,
  value: number,
  unit: string,
  target?: Target,
  note?: string,
): Figure {
  const met = target ? (target.op === '<=' ? value <= target.value : value >= target.value) : null;
  return { section, name, value, unit, target: target ?? null, met, ...(note ? { note } : {}) };
}

/** Numbers for people: 3 significant digits, thousands separated. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const abs = Math.abs(x);
  if (abs >= 1000) return Math.round(x).toLocaleString('en-US');
  if (abs >= 100) return x.toFixed(0);
  if (abs >= 10) return x.toFixed(1);
  if (abs >= 1) return x.toFixed(2);
  return x.toPrecision(3);
}

export function figureRow(f: Figure): string {
  const target = f.target ? `${f.target.op} ${fmt(f.target.value)}` : '';
  const met = f.met === null ? '' : f.met ? 'met' : '**NOT met**';
  return `| ${f.section} | ${f.name} | ${fmt(f.value)} ${f.unit} | ${target} | ${met} |`;
}

export const FIGURE_HEADER = ['| # | figure | value | target | met |', '|---|---|---:|---|---|'];

/** A results page: its title, the machine it ran on, its figures as a table, then any more lines. */
export function figuresPage(
  title: string,
  at: Machine,
  figures: readonly Figure[],
  more: readonly string[] = [],
): string {
  return [
    title,
    '',
    `${at.cpu}, ${at.cores} cores, Node ${at.node}; load average at start ${at.loadAverage.join(', ')}.`,
    '',
    ...FIGURE_HEADER,
    ...figures.map(figureRow),
    '',
    ...more,
  ].join('\n');
}

export async function writeResults(name: string, json: unknown, markdown: string): Promise<void> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const replacer = (_key: string, value: unknown) => (typeof value === 'bigint' ? value.toString() : value);
  await writeFile(join(RESULTS_DIR, `${name}.json`), JSON.stringify(json, replacer, 2) + '\n');
  await writeFile(join(RESULTS_DIR, `${name}.md`), markdown.endsWith('\n') ? markdown : markdown + '\n');
}

export const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export type InterleaveOptions = {
  /** Idle before each call. */
  readonly gapMs?: number;
  /** Calls of one function in a row before the next function's turn (default 1). */
  readonly block?: number;
  /** Idle before each block. */
  readonly settleMs?: number;
};

/**
 * Runs `fns` in turn, `rounds` calls each, in blocks of `block` calls, rotating which goes first;
 * returns each one's timings (ms). Why blocks and a settle pause: onnxruntime's intra-op threads
 * spin-wait after a run for tens of milliseconds (measured here: a 20 ms model run alternately by
 * two processes 3 ms apart took 34 ms in each, 20 ms at 100 ms apart), so on a 2-core machine one
 * side's idle threads would steal the cores of the other side's next call. A run after another
 * run of the same session is that session's steady state; a run right after another session's
 * is not, and is not what either side costs alone.
 */
export async function interleaved(
  rounds: number,
  fns: readonly (() => Promise<unknown>)[],
  { gapMs = 0, block = 1, settleMs = 0 }: InterleaveOptions = {},
): Promise<number[][]> {
  const times = fns.map(() => [] as number[]);
  for (let r = 0; r * block < rounds; r++) {
    for (let k = 0; k < fns.length; k++) {
      const i = (r + k) % fns.length;
      if (settleMs > 0) await pause(settleMs);
      for (let j = 0; j < block && r * block + j < rounds; j++) {
        if (gapMs > 0) await pause(gapMs);
        const started = performance.now();
        await fns[i]!();
        times[i]!.push(performance.now() - started);
      }
    }
  }
  return times;
}

/** Completed calls per second with `concurrency` callers looping for about `durationMs`. */
export async function throughput(
  fn: () => Promise<unknown>,
  concurrency: number,
  durationMs: number,
): Promise<number> {
  const started = performance.now();
  const end = started + durationMs;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await fn();
        done++;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}

export const median = (xs: readonly number[]) => percentile(xs, 0.5);
