import {
  BaseError,
  ContractFunctionExecutionError,
  ContractFunctionRevertedError,
  decodeErrorResult,
  HttpRequestError,
  TimeoutError,
  type ContractErrorArgs,
  type ContractErrorName as AbiErrorName,
  type Hex,
} from 'viem';
import { GlassboxError, type GlassboxErrorOptions } from '../protocol/errors.js';
import {
  DevTokenAbi,
  DisputeManagerAbi,
  ModelRegistryAbi,
  PaymentEscrowAbi,
  ProviderRegistryAbi,
  ReceiptLedgerAbi,
} from './artifacts/index.js';

/*
 * Errors typed per cause, in viem's ErrorType pattern: each action exports an `XErrorType`, the
 * union of the custom errors its contract call can revert with (`ContractRevertErrorType<'A' |
 * 'B'>`) and `ChainCallErrorType`. A caller branches with `isContractRevert(error, 'A')`, which
 * narrows `error.args` to A's decoded arguments; a name that is not a custom error of our
 * contracts does not compile. All of them stay GlassboxErrors (CHAIN_REVERTED, CHAIN_RPC), so what
 * crosses HTTP and the CLI keeps its code and `details.error`.
 */

/** Every ABI of ours, end to end: the custom errors a Glassbox call can revert with come from it. */
type GlassboxAbis = readonly [
  ...typeof DevTokenAbi,
  ...typeof ModelRegistryAbi,
  ...typeof ProviderRegistryAbi,
  ...typeof PaymentEscrowAbi,
  ...typeof ReceiptLedgerAbi,
  ...typeof DisputeManagerAbi,
];

/** The name of a custom error of our contracts (or of the token, or OpenZeppelin's). */
export type ContractErrorName = AbiErrorName<GlassboxAbis>;

/**
 * The decoded arguments of custom error `N`, in declaration order (a tuple; `Iterable` tells the
 * compiler so where `N` is still generic).
 */
export type ContractErrorArgsOf<N extends ContractErrorName> = ContractErrorArgs<GlassboxAbis, N> &
  Iterable<unknown>;

type GlassboxAbiError = Extract<GlassboxAbis[number], { type: 'error' }>;

/**
 * Every custom error item of our ABIs, for decoding a revert whichever contract it came from (a
 * DisputeManager call can revert with the token's or a registry's error). Items of the same
 * signature decode alike, so repeats are harmless.
 */
const ALL_ERRORS: readonly GlassboxAbiError[] = [
  ...DevTokenAbi,
  ...ModelRegistryAbi,
  ...ProviderRegistryAbi,
  ...PaymentEscrowAbi,
  ...ReceiptLedgerAbi,
  ...DisputeManagerAbi,
].filter((item): item is GlassboxAbiError => item.type === 'error');

/** JSON-safe arguments for `details.args`: bigints become decimal strings. */
const plain = (args: Iterable<unknown>) =>
  Array.from(args, (a) => (typeof a === 'bigint' ? a.toString() : a));

type RevertOptions = { readonly hash?: Hex; readonly cause?: unknown };

/**
 * The message and GlassboxError options of a revert of `call` with `error` (a custom error's name,
 * or why there is none) and its arguments: `details` are what crosses HTTP and the CLI (arguments
 * as JSON), with the transaction's hash once it was mined.
 */
function reverted(
  call: string,
  error: string,
  args: Iterable<unknown> | undefined,
  { hash, cause }: RevertOptions,
): [string, GlassboxErrorOptions] {
  const json = args === undefined ? [] : plain(args);
  const shown = args === undefined ? error : `${error}(${json.map(String).join(', ')})`;
  return [
    hash ? `${call} reverted on chain: ${shown} (tx ${hash})` : `${call} reverted: ${shown}`,
    { details: { error, args: json, call, ...(hash ? { hash } : {}) }, cause },
  ];
}

/** A call reverted with custom error `N` of our contracts; `args` are its decoded arguments. */
export class ContractRevertError<N extends ContractErrorName = ContractErrorName> extends GlassboxError {
  override name = 'ContractRevertError';
  declare readonly code: 'CHAIN_REVERTED';
  readonly errorName: N;
  readonly args: ContractErrorArgsOf<N>;

  constructor(
    revert: { errorName: N; args: ContractErrorArgsOf<N> },
    call: string,
    options: RevertOptions = {},
  ) {
    super('CHAIN_REVERTED', ...reverted(call, revert.errorName, revert.args, options));
    this.errorName = revert.errorName;
    this.args = revert.args;
  }
}

/** `ContractRevertError<A> | ContractRevertError<B>` for `N = A | B`: narrows on `errorName`. */
export type ContractRevertErrorType<N extends ContractErrorName> = N extends ContractErrorName
  ? ContractRevertError<N>
  : never;

/**
 * A call reverted without a custom error of our ABIs: a `require` message, a panic, an unknown
 * selector, or a transaction whose on-chain revert could not be replayed. `reason` says which.
 */
export class UnknownRevertError extends GlassboxError {
  override name = 'UnknownRevertError';
  declare readonly code: 'CHAIN_REVERTED';
  readonly reason: string;

  constructor(reason: string, call: string, options: RevertOptions = {}) {
    super('CHAIN_REVERTED', ...reverted(call, reason, undefined, options));
    this.reason = reason;
  }
}

/** The RPC could not be reached, or answered with an error that is not a revert. */
export class ChainRpcError extends GlassboxError {
  override name = 'ChainRpcError';
  declare readonly code: 'CHAIN_RPC';

  constructor(message: string, call: string, cause: unknown) {
    super('CHAIN_RPC', message, { details: { call }, cause });
  }
}

/**
 * What any chain call can throw besides its custom errors: a revert we cannot name, an RPC
 * failure, or a GlassboxError of its own (USAGE for a send without an account).
 */
export type ChainCallErrorType = UnknownRevertError | ChainRpcError | GlassboxError;

/** Whether `error` is a revert with custom error `name`; narrows `error.args` to its arguments. */
export function isContractRevert<N extends ContractErrorName>(
  error: unknown,
  name: N,
): error is ContractRevertError<N> {
  return error instanceof ContractRevertError && error.errorName === name;
}

/**
 * The revert inside anything viem throws: a custom error decoded with every ABI of ours, or the
 * reason it reverted without one; undefined when `error` is not a revert.
 */
export function decodeRevert(
  error: unknown,
):
  | { errorName: ContractErrorName; args: ContractErrorArgsOf<ContractErrorName> }
  | { reason: string }
  | undefined {
  if (!(error instanceof BaseError)) return undefined;
  const revert = error.walk((e) => e instanceof ContractFunctionRevertedError);
  if (!(revert instanceof ContractFunctionRevertedError)) return undefined;
  const raw = revert.raw;
  if (raw && raw.length >= 10) {
    try {
      const decoded = decodeErrorResult({ abi: ALL_ERRORS, data: raw });
      // viem also knows Error(string) and Panic(uint256): those keep viem's reason below
      // viem leaves `args` out for an error without parameters
      if (isGlassboxErrorName(decoded.errorName))
        return { errorName: decoded.errorName, args: decoded.args ?? [] };
    } catch {
      return { reason: revert.reason ?? `unknown error ${raw.slice(0, 10)}` };
    }
  }
  return { reason: revert.reason ?? 'unknown' };
}

const ERROR_NAMES: ReadonlySet<string> = new Set(ALL_ERRORS.map((e) => e.name));
const isGlassboxErrorName = (name: string): name is ContractErrorName => ERROR_NAMES.has(name);

/** The contract function a viem error was about, when it says. */
function functionNameOf(error: unknown): string | undefined {
  if (!(error instanceof BaseError)) return undefined;
  const call = error.walk((e) => e instanceof ContractFunctionExecutionError);
  return call instanceof ContractFunctionExecutionError ? call.functionName : undefined;
}

/**
 * Turns anything viem throws into a typed GlassboxError: ContractRevertError for a custom error
 * (decoded with our ABIs), UnknownRevertError for another revert, ChainRpcError for the rest.
 * `what` names the call when the error does not (`eth_chainId`, `deploy X`).
 */
export function toChainError(
  error: unknown,
  what = functionNameOf(error) ?? 'chain call',
  options: { hash?: Hex } = {},
): GlassboxError {
  if (error instanceof GlassboxError) return error;
  const revert = decodeRevert(error);
  if (revert && 'errorName' in revert)
    return new ContractRevertError(revert, what, { ...options, cause: error });
  if (revert) return new UnknownRevertError(revert.reason, what, { ...options, cause: error });
  const transport =
    error instanceof BaseError &&
    error.walk((e) => e instanceof HttpRequestError || e instanceof TimeoutError) !== null;
  const message = error instanceof BaseError ? error.shortMessage : String(error);
  return new ChainRpcError(
    transport ? `${what}: the RPC could not be reached` : `${what}: ${message}`,
    what,
    error,
  );
}
