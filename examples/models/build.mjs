/**
 * Builds the example models: `node examples/models/build.mjs [outDir]` (or `npm run models`).
 * Pure JS, no downloads, deterministic: every run writes the same bytes. Writes, per model,
 * `<outDir>/<name>/` with model.onnx, model.json (the options for `glassbox model pack`),
 * samples.json (sample inputs as JSON tensors) and any data its tests use (holdout.json); per LLM
 * example (llm/tiny-chat.mjs), a Hugging Face ONNX folder (config.json, generation_config.json,
 * tokenizer.json, tokenizer_config.json, onnx/model.onnx) and its model.json.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cnnModel } from './cnn.mjs';
import { trainIris } from './iris-data.mjs';
import { irisInt8Model } from './iris-int8.mjs';
import { irisModel } from './iris.mjs';
import { llmExamples } from './llm/tiny-chat.mjs';

/** Where `npm run models` writes (git-ignored). */
export const DEFAULT_OUT_DIR = fileURLToPath(new URL('./build/', import.meta.url));

/**
 * @typedef {object} ExampleModelPaths
 * @property {string} name
 * @property {string} dir
 * @property {string} model model.onnx
 * @property {string} options model.json
 * @property {string} samples samples.json
 * @property {Record<string, string>} data the other files, by file name (e.g. holdout.json)
 */
/**
 * @typedef {object} LlmExamplePaths
 * @property {string} name
 * @property {string} dir the Hugging Face folder
 * @property {string} model onnx/model.onnx
 * @property {string} options model.json
 * @property {Record<string, string>} files every file of the folder, by its path in the folder
 */

/**
 * JSON for people: indented, but arrays of numbers or strings stay on one line.
 * @param {unknown} value
 * @param {string} [indent]
 * @returns {string}
 */
function formatJson(value, indent = '') {
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== 'object'))
      return `[${value.map((v) => JSON.stringify(v)).join(', ')}]`;
    return `[\n${value.map((v) => inner + formatJson(v, inner)).join(',\n')}\n${indent}]`;
  }
  if (value !== null && typeof value === 'object') {
    const fields = Object.entries(value).map(
      ([k, v]) => `${inner}${JSON.stringify(k)}: ${formatJson(v, inner)}`,
    );
    return `{\n${fields.join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(value);
}

/**
 * Writes `bytes` unless the file already holds them; through a rename, so that a reader running
 * at the same time (another test process) sees the old file or the new one, never half of one.
 * @param {string} path
 * @param {Uint8Array | string} content
 */
function writeIfChanged(path, content) {
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  if (existsSync(path) && Buffer.compare(readFileSync(path), bytes) === 0) return;
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, bytes);
  renameSync(temporary, path);
}

/**
 * @param {string} dir
 * @param {import('./example.mjs').ExampleModel} model
 * @returns {ExampleModelPaths}
 */
function writeModel(dir, model) {
  mkdirSync(dir, { recursive: true });
  const paths = {
    name: model.options.name,
    dir,
    model: join(dir, 'model.onnx'),
    options: join(dir, 'model.json'),
    samples: join(dir, 'samples.json'),
    /** @type {Record<string, string>} */
    data: {},
  };
  writeIfChanged(paths.model, model.onnx);
  writeIfChanged(paths.options, `${formatJson(model.options)}\n`);
  writeIfChanged(paths.samples, `${formatJson(model.samples)}\n`);
  for (const [file, value] of Object.entries(model.data ?? {})) {
    paths.data[file] = join(dir, file);
    writeIfChanged(paths.data[file], `${formatJson(value)}\n`);
  }
  return paths;
}

/**
 * @param {string} dir
 * @param {import('./llm/tiny-chat.mjs').LlmExample} example
 * @returns {LlmExamplePaths}
 */
function writeLlmExample(dir, example) {
  /** @type {Record<string, string>} */
  const files = {};
  for (const [path, content] of Object.entries(example.files)) {
    files[path] = join(dir, path);
    mkdirSync(dirname(files[path]), { recursive: true });
    writeIfChanged(files[path], content instanceof Uint8Array ? content : `${formatJson(content)}\n`);
  }
  const options = join(dir, 'model.json');
  writeIfChanged(options, `${formatJson(example.options)}\n`);
  return { name: example.options.name, dir, model: join(dir, 'onnx/model.onnx'), options, files };
}

/**
 * Builds every example model into `outDir/<name>/`.
 * @param {string} [outDir] default: examples/models/build
 * @param {{ log?: (line: string) => void }} [options] `log` gets one line per model
 * @returns {{ iris: ExampleModelPaths, 'iris-int8': ExampleModelPaths, cnn: ExampleModelPaths } & Record<(typeof import('./llm/tiny-chat.mjs').LLM_EXAMPLES)[number], LlmExamplePaths>}
 */
export function buildExampleModels(outDir = DEFAULT_OUT_DIR, options = {}) {
  const log = options.log ?? (() => {});
  const trained = trainIris();
  /** @type {Record<string, () => import('./example.mjs').ExampleModel>} */
  const builders = {
    iris: () => irisModel(trained),
    'iris-int8': () => irisInt8Model(trained),
    cnn: cnnModel,
  };
  /** @type {Record<string, ExampleModelPaths>} */
  const built = {};
  for (const [name, build] of Object.entries(builders)) {
    const model = build();
    built[name] = writeModel(join(outDir, name), model);
    log(
      `${name.padEnd(9)} ${relative(process.cwd(), built[name].model)}  ${model.onnx.length} bytes  ${model.summary}`,
    );
  }
  /** @type {Record<string, LlmExamplePaths>} */
  const llm = {};
  for (const [name, example] of Object.entries(llmExamples())) {
    llm[name] = writeLlmExample(join(outDir, name), example);
    log(`${name} ${relative(process.cwd(), llm[name].dir)}/  ${example.summary}`);
  }
  return /** @type {any} */ ({ ...built, ...llm });
}

const isMain =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (isMain) buildExampleModels(process.argv[2] ?? DEFAULT_OUT_DIR, { log: (line) => console.log(line) });
