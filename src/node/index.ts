/** The provider node: HTTP API, receipt database, batch committer, voucher redeemer. */
export * from './config.js';
export * from './db.js';
export * from './fault.js';
export * from './models.js';
export * from './node.js';
export * from './onchain.js';
export * from './problem.js';
