/** Running models under pinned runtime profiles: the engine interface and the ONNX engine. */
export * from './engine.js';
export { firstDivergence, traceOf, traceStepPositions, TRACE_STEPS } from './trace.js';
export { withTimeout } from './timeout.js';
export { createOnnxEngine, onnxProfile, type OnnxEngineOptions } from './onnx/engine.js';
