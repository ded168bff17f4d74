/**
 * Running models under pinned runtime profiles: the engine interface, the registry that finds an
 * engine by manifest format, and the engines this build registers (src/runtime/engines.ts). The
 * engines themselves (src/runtime/onnx/) are not exported: callers ask the registry.
 */
export * from './engine.js';
export { createEngines, type Engines, type EngineNeeds, type ModelOfFormat } from './registry.js';
export { defaultEngines, defaultProfiles, type EngineOptions } from './engines.js';
export type { OnnxEngineOptions } from './onnx/engine.js';
export { firstDivergence, traceOf, traceStepPositions, TRACE_STEPS } from './trace.js';
export { withTimeout } from './timeout.js';
