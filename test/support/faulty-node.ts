import { parseArgs } from 'node:util';
import { createNode, loadNodeConfig } from '../../src/node/index.js';
import { faultyNode, type NodeFaults, type ServingFaults } from './faults.js';

/*
 * A devnet provider process with faults (test/support/faults.ts): what `glassbox node start
 * --config <file> --json` does, with the node's engines and app wrapped. Run through tsx:
 *   node --import tsx test/support/faulty-node.ts --faults '{"perturb":0.2}' --config <file> --json
 */

const { values } = parseArgs({
  options: { config: { type: 'string' }, faults: { type: 'string' }, json: { type: 'boolean' } },
});
if (!values.config || !values.faults) throw new Error('usage: faulty-node --faults <json> --config <file>');
const config = await loadNodeConfig(values.config);
const node = await createNode(
  config,
  faultyNode(config, JSON.parse(values.faults) as NodeFaults & ServingFaults),
);
await node.start();
// The line the devnet waits for before it sends traffic (as `glassbox node start --json` prints).
console.log(JSON.stringify({ ready: true, url: node.url, address: node.address, signer: node.signer }));
await new Promise<void>((resolve) => {
  process.once('SIGINT', () => resolve());
  process.once('SIGTERM', () => resolve());
});
// Finishes requests in flight, commits the open batch and redeems vouchers.
await node.stop();
