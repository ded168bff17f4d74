/** Types for build.mjs, so that TypeScript (tests, the globalSetup) can import it. */

export type ExampleModelName = 'iris' | 'iris-int8' | 'cnn';

/** Where one model's files were written. */
export type ExampleModelPaths = {
  name: ExampleModelName;
  dir: string;
  /** model.onnx */
  model: string;
  /** model.json: the options for `glassbox model pack` ({name, version, description, license, policy, labels?}) */
  options: string;
  /** samples.json: `{ <inputName>: {dtype, shape, data} }`, a few rows in the batch */
  samples: string;
  /** The other files, by file name (holdout.json for the Iris models). */
  data: Record<string, string>;
};

/** examples/models/build/, where `npm run models` writes. */
export declare const DEFAULT_OUT_DIR: string;

/** Builds every example model into `outDir/<name>/`; deterministic, byte for byte. */
export declare function buildExampleModels(
  outDir?: string,
  options?: { log?: (line: string) => void },
): Record<ExampleModelName, ExampleModelPaths>;
