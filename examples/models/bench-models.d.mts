/** Types of bench-models.mjs (the benchmark models). */
export declare const BENCH_OUT_DIR: string;

export type BenchModelSpec = {
  readonly name: string;
  readonly hidden: number;
  readonly layers: number;
  readonly targetMs: number;
};

export declare const BENCH_MODELS: readonly BenchModelSpec[];

export declare function benchModelOnnx(spec: BenchModelSpec): Uint8Array;

export declare function benchSample(): number[];

export declare function buildBenchModels(outDir?: string): { spec: BenchModelSpec; dir: string }[];

export declare const LARGE_MODEL: { readonly name: string };

export declare function largeModelOnnx(): Uint8Array;

export declare function buildLargeModel(outDir?: string): string;
