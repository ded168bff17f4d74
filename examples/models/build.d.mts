/** Types for build.mjs, so that TypeScript (tests, the globalSetup) can import it. */

export type ExampleModelName = 'iris' | 'iris-int8' | 'cnn';
/** The LLM examples (llm/tiny-chat.mjs): the real one and its impostors. */
export type LlmExampleName = 'tiny-chat' | 'tiny-chat-other' | 'tiny-chat-int8' | 'tiny-chat-perturbed';

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

/** Where one LLM example's Hugging Face folder was written. */
export type LlmExamplePaths = {
  name: LlmExampleName;
  /** The folder: config.json, generation_config.json, tokenizer.json, tokenizer_config.json, onnx/model.onnx */
  dir: string;
  /** onnx/model.onnx */
  model: string;
  /** model.json: the pack options ({name, version, description, license, policy: token-margin}) */
  options: string;
  /** Every file of the folder but model.json, by its path in the folder. */
  files: Record<string, string>;
};

/** examples/models/build/, where `npm run models` writes. */
export declare const DEFAULT_OUT_DIR: string;

/** Builds every example model into `outDir/<name>/`; deterministic, byte for byte. */
export declare function buildExampleModels(
  outDir?: string,
  options?: { log?: (line: string) => void },
): Record<ExampleModelName, ExampleModelPaths> & Record<LlmExampleName, LlmExamplePaths>;
