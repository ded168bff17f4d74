import {
  BaseError,
  ContractFunctionRevertedError,
  decodeErrorResult,
  HttpRequestError,
  TimeoutError,
  type Abi,
  type Hex,
} from 'viem';
import { GlassboxError } from '../protocol/errors.js';
import {
  DevTokenAbi,
  DisputeManagerAbi,
  ModelRegistryAbi,
  PaymentEscrowAbi,
  ProviderRegistryAbi,
  ReceiptLedgerAbi,
} from './artifacts/index.js';

/** Every custom error any of our contracts (or the token, or OpenZeppelin) can revert with. */
const ALL_ERRORS: Abi = (() => {
  const seen = new Set<string>();
  const out: Abi[number][] = [];
  for (const abi of [
    DevTokenAbi,
    ModelRegistryAbi,
    ProviderRegistryAbi,
    PaymentEscrowAbi,
    ReceiptLedgerAbi,
    DisputeManagerAbi,
  ] as readonly Abi[]) {
    for (const item of abi) {
      if (item.type !== 'error') continue;
      const key = `${item.name}(${item.inputs.map((i) => i.type).join(',')})`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(item);
    }
  }
  return out;
})();

/** JSON-safe arguments: bigints become decimal strings. */
function plain(args: readonly unknown[] | undefined): unknown[] {
  return (args ?? []).map((a) => (typeof a === 'bigint' ? a.toString() : a));
}

/** The custom error name and arguments of a revert, decoded with every ABI we know. */
export function decodeRevert(error: unknown): { name: string; args: unknown[] } | undefined {
  if (!(error instanceof BaseError)) return undefined;
  const revert = error.walk((e) => e instanceof ContractFunctionRevertedError);
  if (!(revert instanceof ContractFunctionRevertedError)) return undefined;
  if (revert.data?.errorName) return { name: revert.data.errorName, args: plain(revert.data.args) };
  const raw = revert.raw as Hex | undefined;
  if (raw && raw.length >= 10) {
    try {
      const decoded = decodeErrorResult({ abi: ALL_ERRORS, data: raw });
      return { name: decoded.errorName, args: plain(decoded.args as readonly unknown[] | undefined) };
    } catch {
      return { name: raw.slice(0, 10), args: [] };
    }
  }
  return { name: revert.reason ?? 'unknown', args: [] };
}

/**
 * Turns anything viem throws into a GlassboxError: CHAIN_REVERTED with `details.error` = the
 * custom error name (and `details.args`) for a revert, CHAIN_RPC for transport failures.
 */
export function toChainError(error: unknown, what: string): GlassboxError {
  if (error instanceof GlassboxError) return error;
  const revert = decodeRevert(error);
  if (revert) {
    const args = revert.args.map((a) => String(a)).join(', ');
    return new GlassboxError('CHAIN_REVERTED', `${what} reverted: ${revert.name}(${args})`, {
      details: { error: revert.name, args: revert.args, call: what },
      cause: error,
    });
  }
  const transport =
    error instanceof BaseError &&
    error.walk((e) => e instanceof HttpRequestError || e instanceof TimeoutError) !== null;
  const message = error instanceof BaseError ? error.shortMessage : String(error);
  return new GlassboxError(
    'CHAIN_RPC',
    transport ? `${what}: the RPC could not be reached` : `${what}: ${message}`,
    { details: { call: what }, cause: error },
  );
}
