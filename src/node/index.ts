/** The provider node: HTTP API, receipt database, batch committer, voucher redeemer. */
export { ADMIN_TOKEN_FILE, adminTokenPath, readAdminToken } from './admin-token.js';
export * from './config.js';
export * from './db.js';
export * from './models.js';
export * from './node.js';
export * from './onchain.js';
export * from './problem.js';
