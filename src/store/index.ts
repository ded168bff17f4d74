/** Content-addressed blobs and model packages: a filesystem backend now, IPFS later. */
export * from './blob-store.js';
export * from './fs-store.js';
export * from './llm-folder.js';
export * from './memory-store.js';
export * from './onnx-schema.js';
export * from './package.js';
export * from './package-folder.js';
