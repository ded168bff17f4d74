import { isHex, type Abi, type Address, type Hex } from 'viem';
import { modelDigest, modelIdFromDigest } from '../protocol/manifest.js';
import {
  DevTokenAbi,
  DisputeManagerAbi,
  ModelRegistryAbi,
  PaymentEscrowAbi,
  ProviderRegistryAbi,
  ReceiptLedgerAbi,
} from './artifacts/index.js';
import { read, send, type GlassboxClient, type TxResult } from './client.js';
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

/** Sends `functionName(args)` to one of the deployed contracts. */
export function sendTo(
  client: GlassboxClient,
  contract: ContractName,
  functionName: string,
  args: readonly unknown[] = [],
): Promise<TxResult> {
  return send(client, {
    address: client.deployment.contracts[contract],
    abi: ABIS[contract],
    functionName,
    args,
  });
}

/** Calls the view `functionName(args)` of one of the deployed contracts. */
export function readFrom<T>(
  client: GlassboxClient,
  contract: ContractName,
  functionName: string,
  args: readonly unknown[] = [],
): Promise<T> {
  return read<T>(client, {
    address: client.deployment.contracts[contract],
    abi: ABIS[contract],
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
