import type { Devnet } from '../../src/devnet/index.js';

/** The CLI's chain options for a devnet: its RPC URL, chain id and deployment file. */
export const devnetChainArgs = (devnet: Devnet): string[] => [
  '--rpc-url',
  devnet.rpcUrl,
  '--chain-id',
  String(devnet.chainId),
  '--deployment',
  devnet.deploymentFile,
];
