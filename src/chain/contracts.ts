import {
  isHex,
  type Abi,
  type Address,
  type ContractFunctionArgs,
  type ContractFunctionName,
  type ContractFunctionReturnType,
  type Hex,
} from 'viem';
import { modelDigest, modelIdFromDigest } from '../protocol/manifest.js';
import {
  DevTokenAbi,
  DisputeManagerAbi,
  ModelRegistryAbi,
  PaymentEscrowAbi,
  ProviderRegistryAbi,
  ReceiptLedgerAbi,
} from './artifacts/index.js';
import { read, send, type ContractWrite, type GlassboxClient, type TxResult } from './client.js';
import type { Contracts } from './deployment.js';

export const ABIS = {
  token: DevTokenAbi,
  modelRegistry: ModelRegistryAbi,
  providerRegistry: ProviderRegistryAbi,
  paymentEscrow: PaymentEscrowAbi,
  receiptLedger: ReceiptLedgerAbi,
  disputeManager: DisputeManagerAbi,
} as const satisfies Record<keyof Contracts, Abi>;

export type ContractName = keyof Contracts;

/** The `as const` ABI of one of the Glassbox contracts. */
export type AbiOf<C extends ContractName> = (typeof ABIS)[C];

type Writable = 'nonpayable' | 'payable';

/**
 * Sends `functionName(args)` to one of the deployed contracts. Name and arguments are typed by the
 * contract's ABI: `sendTo(client, 'disputeManager', 'resolve', [id])` compiles, a function the
 * contract lacks or an argument of the wrong type does not.
 */
export function sendTo<
  C extends ContractName,
  functionName extends ContractFunctionName<AbiOf<C>, Writable>,
  const args extends ContractFunctionArgs<AbiOf<C>, Writable, functionName>,
>(
  client: GlassboxClient,
  contract: C,
  functionName: functionName,
  ...args: readonly [] extends args ? [args?] : [args]
): Promise<TxResult>;
export function sendTo(
  client: GlassboxClient,
  contract: ContractName,
  functionName: string,
  args?: ContractWrite['args'],
): Promise<TxResult> {
  const abi: Abi = ABIS[contract];
  return send(client, {
    address: client.deployment.contracts[contract],
    abi,
    functionName,
    args,
  });
}

/** Calls the view `functionName(args)` of one of the deployed contracts; its result is typed by the ABI. */
export function readFrom<
  C extends ContractName,
  functionName extends ContractFunctionName<AbiOf<C>, 'pure' | 'view'>,
  const args extends ContractFunctionArgs<AbiOf<C>, 'pure' | 'view', functionName>,
>(
  client: GlassboxClient,
  contract: C,
  functionName: functionName,
  ...args: readonly [] extends args ? [args?] : [args]
): Promise<ContractFunctionReturnType<AbiOf<C>, 'pure' | 'view', functionName, args>>;
export function readFrom(
  client: GlassboxClient,
  contract: ContractName,
  functionName: string,
  args?: ContractWrite['args'],
) {
  const abi: Abi = ABIS[contract];
  return read(client, {
    address: client.deployment.contracts[contract],
    abi,
    functionName,
    args,
  });
}

/** A model given as its id (CIDv1 string) or as its 32-byte on-chain digest. */
export type ModelRef = string;

export function toModelDigest(model: ModelRef): Hex {
  return isHex(model, { strict: true }) && model.length === 66 ? model : modelDigest(model);
}

export function toModelId(model: ModelRef): string {
  return isHex(model, { strict: true }) && model.length === 66 ? modelIdFromDigest(model) : model;
}

export type { Address };
