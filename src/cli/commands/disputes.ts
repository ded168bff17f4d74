import type { Command } from 'commander';
import {
  getChallenge,
  getChallengeCount,
  getChallengesResolved,
  getVote,
  type ChallengeInfo,
} from '../../chain/index.js';
import { call } from '../../api/client.js';
import { routes } from '../../api/routes.js';
import type { NodeStatus } from '../../api/schemas.js';
import { DEFAULT_MAX_RESPONSE_BYTES } from '../../protocol/body.js';
import { GlassboxError } from '../../protocol/errors.js';
import { connectionOptions, openChain, resolveConnection, type ConnectionFlags } from '../connection.js';
import { formatAmount, printFields, toJson } from '../io.js';
import { jsonOption } from '../options.js';
import type { Context } from '../program.js';

/** `glassbox disputes` and `glassbox node status`: what keeps providers honest. */
export function registerDisputeCommands(program: Command, node: Command, ctx: Context): void {
  connectionOptions(jsonOption(program.command('disputes')))
    .description('list challenges on chain: kind, status, committee and votes, outcome and amounts')
    .action(async (flags: ConnectionFlags & { json: boolean }) => {
      const chain = await openChain(await resolveConnection(flags));
      const count = await getChallengeCount(chain);
      const resolved = new Map((await getChallengesResolved(chain)).map((e) => [e.args.id, e.args] as const));
      const rows = [];
      for (let id = 0n; id < count; id++) {
        const c = await getChallenge(chain, id);
        const votes = await Promise.all(
          c.committee.map(async (member) => ({
            member,
            ...(await getVote(chain, { challengeId: id, member })),
          })),
        );
        rows.push({ ...c, votes, outcome: resolved.get(id) });
      }
      if (flags.json) return ctx.io.out(toJson(rows));
      if (rows.length === 0) return ctx.io.out('no disputes');
      for (const r of rows) printDispute(ctx, r);
    });

  jsonOption(node.command('status'))
    .description(
      "a running node's roles, and what its verifier sampled, checked and challenged and its committee duties",
    )
    .requiredOption('--url <url>', 'the node, e.g. http://127.0.0.1:8545')
    .action(async (flags: { url: string; json: boolean }) => {
      let status: NodeStatus;
      try {
        const node = {
          endpoint: flags.url,
          name: `the node at ${flags.url}`,
          timeoutMs: 5000,
          maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES,
        };
        status = await call(node, routes.status, {});
      } catch (cause) {
        throw new GlassboxError('PROVIDER_UNAVAILABLE', `no node status at ${flags.url}`, {
          cause,
          field: 'url',
          metaMessages: [cause instanceof Error ? cause.message.split('\n')[0]! : String(cause)],
        });
      }
      if (flags.json) return ctx.io.out(toJson(status));
      printFields(ctx.io, [
        ['state', String(status.state)],
        ['roles', status.roles.join(', ')],
        ['address', status.address],
      ]);
      const v = status.verifier;
      if (v)
        printFields(ctx.io, [
          ['sample rate', v.sampleRate.toFixed(4)],
          ['batches seen', String(v.batchesSeen)],
          [
            'samples',
            `${v.sampled}: ${Object.entries(v.outcomes)
              .map(([k, n]) => `${n} ${k}`)
              .join(', ')}`,
          ],
          ['re-execution time', `${v.computeMs.toFixed(1)} ms`],
          [
            `challenges (${v.challengeCount}${v.challengeCount > v.challenges.length ? `, the latest ${v.challenges.length}` : ''})`,
            v.challenges
              .map(
                (c) =>
                  `#${c.challengeId} ${c.kind} ${c.provider}${c.step === undefined ? '' : ` step ${c.step}`}`,
              )
              .join('; ') || 'none',
          ],
        ]);
      const duties = status.committee?.duties;
      if (duties)
        printFields(ctx.io, [
          [
            `committee duties (${status.committee!.dutyCount}${status.committee!.dutyCount > duties.length ? `, the latest ${duties.length}` : ''})`,
            duties
              .map(
                (d) =>
                  `#${d.challengeId} ${d.guilty === undefined ? 'undecided' : d.guilty ? 'guilty' : 'innocent'}${d.revealed ? ' revealed' : d.committed ? ' committed' : ''}`,
              )
              .join('; ') || 'none',
          ],
        ]);
    });
}

function printDispute(
  ctx: Context,
  r: ChallengeInfo & {
    votes: { member: string; committed: boolean; revealed: boolean; guilty: boolean }[];
    outcome?: { slashed: bigint; reward: bigint };
  },
): void {
  printFields(ctx.io, [
    ['challenge', `#${r.challengeId} ${r.kind} against ${r.provider}, by ${r.challenger}`],
    ['status', r.status],
    ...(r.divergence
      ? [
          [
            'divergence',
            `step ${r.divergence.step}: provider ${r.divergence.providerHash}, challenger ${r.divergence.challengerHash}`,
          ] as [string, string],
        ]
      : []),
    ...(r.token
      ? [['token claim', `${r.token.check} fails at position ${r.token.position}`] as [string, string]]
      : []),
    [
      'committee',
      r.votes
        .map(
          (v) =>
            `${v.member} ${v.revealed ? (v.guilty ? 'guilty' : 'innocent') : v.committed ? 'committed' : 'silent'}`,
        )
        .join('; ') || '-',
    ],
    ['votes', `${r.guilty} guilty, ${r.innocent} innocent (${r.revealed}/${r.committee.length} revealed)`],
    ['bond', formatAmount(r.bond)],
    ...(r.outcome
      ? [
          [
            'amounts',
            r.status === 'upheld'
              ? `slashed ${formatAmount(r.outcome.slashed)}, challenger rewarded ${formatAmount(r.outcome.reward)}`
              : r.status === 'rejected'
                ? `bond lost ${formatAmount(r.outcome.slashed)}, provider got ${formatAmount(r.outcome.reward)}`
                : 'bond refunded',
          ] as [string, string],
        ]
      : []),
  ]);
  ctx.io.out('');
}
