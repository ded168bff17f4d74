/** Running models under pinned runtime profiles: the engine interface and the ONNX engine. */
export * from './engine.js';
export { createOnnxEngine, type OnnxEngineOptions } from './onnx/engine.js';
export { firstDivergence } from './onnx/trace.js';
