import { runCli } from '../../src/cli/program.js';
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

/** Runs the CLI in this process, capturing what it prints. */
export async function captureCli(argv: readonly string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** The CLI against a devnet, as its funded client. */
export const devnetCli = (devnet: Devnet, ...argv: string[]) =>
  captureCli([...argv, ...devnetChainArgs(devnet), '--private-key', devnet.client.privateKey]);
