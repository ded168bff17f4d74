import type { Address } from 'viem';
import { accountOf, exclusive, type GlassboxClient, type TxResult } from './client.js';
import { readFrom, sendTo, type ContractName } from './contracts.js';

/** Mints devnet tokens (DevToken only: anyone may mint). */
export function mintDevTokens(
  client: GlassboxClient,
  params: { to: Address; amount: bigint },
): Promise<TxResult> {
  return sendTo(client, 'token', 'mint', [params.to, params.amount]);
}

export function getTokenBalance(client: GlassboxClient, account: Address): Promise<bigint> {
  return readFrom(client, 'token', 'balanceOf', [account]);
}

export function getAllowance(
  client: GlassboxClient,
  params: { owner: Address; spender: Address },
): Promise<bigint> {
  return readFrom(client, 'token', 'allowance', [params.owner, params.spender]);
}

export function approveToken(
  client: GlassboxClient,
  params: { spender: Address; amount: bigint },
): Promise<TxResult> {
  return sendTo(client, 'token', 'approve', [params.spender, params.amount]);
}

/** Approves `contract` to pull `amount` from the account unless it already may. */
export async function ensureAllowance(
  client: GlassboxClient,
  contract: ContractName,
  amount: bigint,
): Promise<TxResult | undefined> {
  const spender = client.deployment.contracts[contract];
  const owner = accountOf(client).address;
  if ((await getAllowance(client, { owner, spender })) >= amount) return undefined;
  return approveToken(client, { spender, amount });
}

/**
 * Approves `contract` for `amount` if needed, then runs `spend` (the call that pulls it), as one
 * step of the account: another flow of the same account can't see the fresh allowance, skip its
 * own approval and spend it first (the classic check-then-act race, which left the second flow's
 * call reverting). `spend` must send through the client it is given.
 */
export function withAllowance<T>(
  client: GlassboxClient,
  contract: ContractName,
  amount: bigint,
  spend: (held: GlassboxClient) => Promise<T>,
): Promise<T> {
  return exclusive(client, async (held) => {
    await ensureAllowance(held, contract, amount);
    return spend(held);
  });
}
