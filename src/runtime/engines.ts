import type { RuntimeProfile } from '../protocol/runtime-profile.js';
import { createLlmEngine, llmProfile, type LlmEngineOptions } from './llm/engine.js';
import { createOnnxEngine, onnxProfile, type OnnxEngineOptions } from './onnx/engine.js';
import { createEngines, type Engines } from './registry.js';

/*
 * THE REGISTRATION: the engines this build runs, one per manifest format. Adding a format is a
 * folder src/runtime/<format>/ with its engine (src/runtime/engine.ts's shape), its manifest schema
 * in the union of src/protocol/manifest.ts and its profile in src/protocol/runtime-profile.ts (and
 * a packer in src/store if packages of it are built from something else), and one line in each
 * function below. Nothing outside src/runtime constructs an engine (the lint rule in
 * eslint.config.js): the node, the SDK's local mode, verifiers and committees get the registry.
 */

export type EngineOptions = {
  readonly onnx?: OnnxEngineOptions;
  readonly llm?: LlmEngineOptions;
};

/** A registry of every engine this build runs. */
export function defaultEngines(options: EngineOptions = {}): Engines {
  return createEngines([createOnnxEngine(options.onnx), createLlmEngine(options.llm)]);
}

/**
 * The profiles those engines run under on this machine, without constructing them: what a
 * deployment admits on chain by default.
 */
export function defaultProfiles(options: EngineOptions = {}): RuntimeProfile[] {
  return [onnxProfile(options.onnx), llmProfile(options.llm)];
}
