/** The protocol: pure data and rules shared by nodes, clients and contracts. No I/O. */
export * from './canonical-json.js';
export * from './cid.js';
export * from './data.js';
export * from './domain.js';
export * from './encoding.js';
export * from './errors.js';
export * from './manifest.js';
export * from './merkle.js';
export * from './policy.js';
export * from './receipt.js';
export * from './request.js';
export * from './runtime-profile.js';
export * from './sampling.js';
export * from './tensor.js';
export * from './voucher.js';
export * from './api.js';
export * from './validate.js';
