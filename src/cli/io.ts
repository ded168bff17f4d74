import { homedir } from 'node:os';
import { formatUnits } from 'viem';
import { join } from 'node:path';
import { ErrorCodes, GlassboxError, isGlassboxError, type ErrorCode } from '../protocol/errors.js';

/**
 * Where a command writes; tests pass their own to capture output. `write` (text without a newline)
 * is for streamed output; without it, a command prints the whole text once it has it.
 */
export type Io = { out(line: string): void; err(line: string): void; write?(text: string): void };

export const processIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  write: (text) => process.stdout.write(text),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** Options every command shares. */
export type GlobalOptions = { store: string; json: boolean };

/** Where Glassbox keeps its files: $GLASSBOX_HOME, else ~/.glassbox. */
export function glassboxHome(): string {
  return process.env.GLASSBOX_HOME ?? join(homedir(), '.glassbox');
}

export function defaultStoreDir(): string {
  return process.env.GLASSBOX_STORE ?? join(glassboxHome(), 'store');
}

/** JSON for machines: bigint as decimal strings, typed arrays as plain arrays. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint') return v.toString();
    if (ArrayBuffer.isView(v) && !(v instanceof DataView))
      return Array.from(v as unknown as ArrayLike<unknown>, (x) =>
        typeof x === 'bigint' ? x.toString() : x,
      );
    return v;
  });
}

/**
 * An amount of the staking and payment token, the one way every command prints money: tokens (18
 * decimals) for people, and the base units that flags such as --max-price take.
 */
export function formatAmount(baseUnits: bigint): string {
  return `${formatUnits(baseUnits, 18)} tokens (${baseUnits} base units)`;
}

/**
 * An offer's prices, formatted by `format`: one price per inference when there is no input price
 * (a tensor model), else the price per output token and per input token (an LLM).
 */
export function formatPrices(
  prices: { price: bigint; inputPrice: bigint },
  format: (amount: bigint) => string = formatAmount,
): string {
  if (prices.inputPrice === 0n) return format(prices.price);
  return `${format(prices.price)} per output token, ${format(prices.inputPrice)} per input token`;
}

/** Aligned `key  value` lines for people. */
export function printFields(io: Io, fields: [string, string][]): void {
  const width = Math.max(...fields.map(([k]) => k.length));
  for (const [key, value] of fields) io.out(`${key.padEnd(width)}  ${value}`);
}

const HINTS: Partial<Record<ErrorCode, string>> = {
  INPUT_UNKNOWN: "see the model's inputs with `glassbox model inspect <model>`",
  INPUT_MISSING: "see the model's inputs with `glassbox model inspect <model>`",
  INPUT_DTYPE: "see the model's input dtypes with `glassbox model inspect <model>`",
  INPUT_RANK: "see the model's input shapes with `glassbox model inspect <model>`",
  INPUT_DIM: "see the model's input shapes with `glassbox model inspect <model>`",
  INPUT_VALUE: 'inputs are JSON numbers (int64 as decimal strings; NaN, Infinity and -0 as strings)',
  MODEL_NOT_FOUND:
    'pack the model first with `glassbox model pack <file.onnx>`, or pass the .onnx file itself',
  BLOB_CORRUPT: 'the store holds a damaged file: delete it and pack or fetch the model again',
  MODEL_INVALID: 'check that the file is an ONNX model (opset <= 21) that onnxruntime can load',
  MODEL_TOO_LARGE: 'raise the limit with --max-model-bytes if you trust the model',
  INPUT_TOO_LARGE: 'raise the limit with --max-input-bytes',
  RUN_TIMEOUT: 'raise the limit with --timeout (ms)',
  RUN_FAILED:
    'the model itself failed on these inputs (its message is above): check them against `glassbox model inspect <model>`',
  REQUEST_TOO_LARGE: 'send smaller inputs, or use providers whose bodyLimitBytes admits them',
  RESPONSE_TOO_LARGE:
    'a provider sent more than the client reads; if its answers are that large, raise the SDK option maxResponseBytes',
  USAGE: 'run the command with --help',
};

/** One line saying what went wrong, and one saying what to do; returns the exit code. */
export function reportError(io: Io, error: unknown): number {
  if (isGlassboxError(error)) {
    io.err(`error: ${error.shortMessage} [${error.code}]`);
    for (const line of error.metaMessages) io.err(`  ${line}`);
    io.err(`hint: ${HINTS[error.code] ?? ErrorCodes[error.code]}`);
    return 1;
  }
  const file = fileProblem(error);
  if (file) {
    io.err(`error: ${file}`);
    io.err('hint: check the path and its permissions');
    return 1;
  }
  io.err(`error: ${error instanceof Error ? error.message : String(error)}`);
  io.err('hint: this is a bug in glassbox; please report it with the command you ran');
  return 2;
}

const FILE_PROBLEMS: Record<string, string> = {
  ENOENT: 'no such file or folder',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'is a folder, not a file',
  ENOTDIR: 'a part of the path is not a folder',
};

/** A file the user named that cannot be read or written: their path, not our bug. */
function fileProblem(error: unknown): string | undefined {
  const e = error as NodeJS.ErrnoException;
  const what = typeof e?.code === 'string' ? FILE_PROBLEMS[e.code] : undefined;
  return what && typeof e.path === 'string' ? `${e.path}: ${what} [${e.code}]` : undefined;
}

export function usageError(message: string, cause?: unknown): GlassboxError {
  return new GlassboxError('USAGE', message, { cause });
}
