/**
 * Running models under pinned runtime profiles: the engine interface, the registry that finds an
 * engine by manifest format, and the engines this build registers (src/runtime/engines.ts). The
 * engines themselves (src/runtime/onnx/, src/runtime/llm/) are not exported: callers ask the registry.
 * The LLM re-check is, as it works with any token engine the registry gives.
 */
export * from './engine.js';
export { createEngines, type Engines, type EngineNeeds, type ModelOfFormat } from './registry.js';
export { defaultEngines, defaultProfiles, type EngineOptions } from './engines.js';
export type { OnnxEngineOptions } from './onnx/engine.js';
export type { LlmEngineOptions } from './llm/engine.js';
export {
  recheckGeneration,
  type RecheckCheck,
  type RecheckParameters,
  type RecheckReport,
  type RecheckRequest,
} from './llm/recheck.js';
export { firstDivergence, traceOf, traceStepPositions, TRACE_STEPS } from './trace.js';
export { withTimeout } from './timeout.js';
