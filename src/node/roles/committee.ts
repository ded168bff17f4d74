import { getAddress, type Hex } from 'viem';
import {
  commitVote,
  getChallenge,
  getProvider,
  getVote,
  revealVote,
  type ChallengeInfo,
} from '../../chain/index.js';
import { dataHash } from '../../protocol/data.js';
import { decodeTensors } from '../../protocol/encoding.js';
import type { ModelPackage } from '../../protocol/manifest.js';
import type { Receipt } from '../../protocol/receipt.js';
import type { TraceStepResult } from '../../runtime/engine.js';
import type { Engines } from '../../runtime/registry.js';
import type { Startable } from '../worker.js';
import { settleWhenDue } from './challenges.js';
import { recheck, runSafely } from './check.js';
import { addressOf, eachGuarded, roleWorker, type ModelSource, type RoleComponents } from './components.js';
import type { ParsedEvidence, ProviderFetches } from './providers.js';
import type { Duty } from './store.js';

/*
 * The committee member (docs/architecture.md; docs/protocol.md, Sampling and disputes: "disputes: a stake-weighted random committee re-executes and
 * votes"): it reads CommitteeDrawn events naming this node, re-executes the challenged receipt
 * from the challenger's evidence, then commits, reveals and resolves in time. The vote and its
 * salt are stored before the commit is sent, and each step checks the chain first, so a member
 * restarted at any point carries on where it stopped.
 */

export type CommitteeInit = { readonly pollIntervalMs: number };

export type CommitteeComponents = RoleComponents & {
  /** The engines it re-executes with, by the model's format. */
  readonly engines: Engines;
  readonly models: ModelSource;
  readonly providers: ProviderFetches;
};

export type CommitteeStatus = {
  readonly duties: readonly {
    challengeId: string;
    decision?: 'vote' | 'abstain';
    guilty?: boolean;
    detail?: string;
    computeMs: number;
    committed: boolean;
    revealed: boolean;
    settled: boolean;
  }[];
};

export type CommitteeMember = Startable & {
  /** One pass now (or right after the one in flight); a failure is logged, never thrown. */
  tick(): Promise<void>;
  status(): CommitteeStatus;
};

type Judgement =
  | { readonly kind: 'vote'; readonly guilty: boolean; readonly detail: string; readonly computeMs: number }
  | { readonly kind: 'abstain'; readonly detail: string };
const vote = (guilty: boolean, detail: string, computeMs = 0): Judgement => ({
  kind: 'vote',
  guilty,
  detail,
  computeMs,
});
const abstain = (detail: string): Judgement => ({ kind: 'abstain', detail: `cannot judge: ${detail}` });

export const committeeMember =
  (init: CommitteeInit) =>
  (c: CommitteeComponents): CommitteeMember => {
    const { chain, serial, log, events, store, engines, providers } = c;
    const me = addressOf(chain);

    async function scanDuties(): Promise<void> {
      await events.follow(
        'challenges',
        { contract: 'disputeManager', eventName: 'CommitteeDrawn' },
        async ({ events: drawn }) => {
          for (const e of drawn)
            if (e.args.committee.some((m) => getAddress(m) === me)) store.addDuty(e.args.id);
        },
      );
    }

    /**
     * Re-executes the challenged receipt from the challenger's evidence and decides: guilty,
     * innocent, or abstain when this member cannot judge (the model is nowhere to be had, another
     * runtime, its own failure). An abstention commits nothing and costs the vote penalty, so a
     * member that can't judge is never counted as vouching for the provider (audit C-3).
     */
    async function judge(info: ChallengeInfo): Promise<Judgement | undefined> {
      const byId = { contract: 'disputeManager', args: { id: info.challengeId } } as const;
      const receipt: Receipt | undefined = (
        await events.findLatest({ ...byId, eventName: 'ChallengedReceipt' })
      )?.args.receipt;
      const opened = await events.findLatest({ ...byId, eventName: 'ChallengeOpened' });
      if (!receipt || !opened) return abstain('no challenged receipt on chain');
      const ours = engines.list.map((engine) => engine.runtimeHash);
      if (!ours.includes(receipt.runtime))
        return abstain(`runtime ${receipt.runtime} differs from ours (${ours.join(', ')})`);
      const evidence = await fetchEvidence(opened.args.inputsUri, receipt, info);
      // The challenger must make its case: no valid evidence, no model to run, no outputs to compare
      // with (below) all count against it. Holding them against the members instead would let a
      // challenger void its own challenges at their expense.
      if (evidence === 'later') return undefined;
      if (!evidence) return vote(false, 'the challenger served no valid evidence');
      const { endpoint } = await getProvider(chain, receipt.provider);
      const pkg = await c.models(receipt.model, [endpoint, new URL(opened.args.inputsUri).origin]);
      if (!pkg)
        return vote(false, `model ${receipt.model} is served neither by the provider nor by the challenger`);
      if (info.divergence) return judgeStep(receipt, pkg, evidence.inputs, info.divergence);
      // A token challenge claims a check fails at a position of a generation: judged on that claim
      // alone, by scoring the claimed ids through it (teacher forcing; nothing is generated).
      if (info.token && !engines.list.some((e) => e.kind === 'tokens' && e.format === pkg.manifest.format))
        return vote(
          false,
          `a token challenge of a receipt whose model (${pkg.manifest.format}) generates no tokens`,
        );
      const found = await recheck({
        receipt,
        inputs: evidence.inputs,
        ...(evidence.outputs ? { outputs: evidence.outputs } : {}),
        engines,
        pkg,
        ...(info.token ? { claim: info.token } : {}),
      });
      if (found.kind === 'skipped') return abstain(found.detail);
      if (found.kind === 'unproven')
        return vote(false, `the challenger did not make its case: ${found.detail}`);
      if (found.kind === 'mismatch') return vote(true, found.detail, found.computeMs);
      const { token } = info;
      return vote(
        false,
        token
          ? `the claim does not hold: ${token.check} passes through position ${token.position}`
          : 'our re-execution agrees with the receipt',
        found.computeMs,
      );
    }

    /** Judges a bisected challenge on the one step it names: whose hash does our run give there? */
    async function judgeStep(
      receipt: Receipt,
      pkg: ModelPackage,
      inputs: Uint8Array,
      d: NonNullable<ChallengeInfo['divergence']>,
    ): Promise<Judgement> {
      // Only up to the named operator: nothing after it bears on the verdict.
      const attempt = await runSafely(() =>
        engines.for(pkg, { trace: true }).traceStep(pkg, decodeTensors(inputs), d.step),
      );
      if ('invalid' in attempt)
        return vote(true, `the receipt's inputs are not valid for the model: ${attempt.invalid}`);
      if ('failed' in attempt) return abstain(attempt.failed);
      const ours: TraceStepResult = attempt.value;
      return vote(
        ours.step.hash !== d.providerHash,
        `step ${d.step} (${ours.step.op} ${ours.step.node}): ours ${ours.step.hash}, provider ${d.providerHash}, challenger ${d.challengerHash}`,
        ours.durationMs,
      );
    }

    /**
     * The challenger's evidence, over http(s) or a data: URI only (the URI is the challenger's to
     * choose), validated, and its inputs must be the receipt's; undefined when it is none of that,
     * 'later' while it may still come.
     */
    async function fetchEvidence(
      uri: string,
      receipt: Receipt,
      info: ChallengeInfo,
    ): Promise<{ inputs: Uint8Array; outputs?: Uint8Array } | 'later' | undefined> {
      let body: ParsedEvidence;
      try {
        if (!['http:', 'https:', 'data:'].includes(new URL(uri).protocol)) return undefined;
        body = await providers.evidence(uri);
      } catch {
        // Unreachable or garbled now: try again on later passes (the accused could flood the
        // challenger for a moment), and hold it against the challenger only near the deadline.
        const lastCall = info.commitDeadlineMs - Math.max(4 * init.pollIntervalMs, 5_000);
        return Date.now() < lastCall ? 'later' : undefined;
      }
      const inputs = new Uint8Array(Buffer.from(body.inputs, 'base64'));
      if (dataHash(inputs) !== receipt.inputHash) return undefined;
      return {
        inputs,
        ...(body.outputs ? { outputs: new Uint8Array(Buffer.from(body.outputs, 'base64')) } : {}),
      };
    }

    async function performDuty(duty: Duty): Promise<void> {
      const info = await getChallenge(chain, duty.challengeId);
      const id = duty.challengeId;
      if (info.status !== 'open') return void store.markDuty(id, { settled: true });
      const now = Date.now();
      let decision = duty.decision;
      if (!decision && now < info.commitDeadlineMs) {
        const judged = await judge(info);
        if (!judged) return; // the evidence may come: judge on a later pass
        decision = judged.kind === 'vote' ? { ...judged, salt: randomSalt() } : judged;
        store.decide(id, decision, judged.kind === 'vote' ? judged.computeMs : 0); // before the commit: a restart reveals this
        log.info(
          {
            challengeId: id.toString(),
            decision: decision.kind,
            guilty: judged.kind === 'vote' ? judged.guilty : undefined,
            detail: decision.detail,
          },
          'committee decision',
        );
      }
      if (!decision) return; // too late to commit: nothing to reveal either
      if (decision.kind === 'abstain') {
        if (await settleWhenDue(c, info)) store.markDuty(id, { settled: true });
        return;
      }
      const ballot = decision;
      const onChain = () => getVote(chain, { challengeId: id, member: me });
      if (!duty.committed) {
        if (!(await onChain()).committed) {
          if (now >= info.commitDeadlineMs) return;
          await serial(() =>
            commitVote(chain, { challengeId: id, guilty: ballot.guilty, salt: ballot.salt }),
          );
        }
        store.markDuty(id, { committed: true });
        return; // reveal on a later pass, once the chain says reveals are open
      }
      const revealOpen = now >= info.commitDeadlineMs || info.committed === info.committee.length;
      if (!duty.revealed && revealOpen && now < info.revealDeadlineMs) {
        if (!(await onChain()).revealed)
          await serial(() =>
            revealVote(chain, { challengeId: id, guilty: ballot.guilty, salt: ballot.salt }),
          );
        store.markDuty(id, { revealed: true });
        log.info({ challengeId: id.toString(), guilty: ballot.guilty }, 'committee vote revealed');
        return;
      }
      if (await settleWhenDue(c, info)) store.markDuty(id, { settled: true });
    }

    const worker = roleWorker(log, 'committee', init.pollIntervalMs, async () => {
      await scanDuties();
      // one duty that fails must not make this member miss the commits of the others
      await eachGuarded(
        log,
        store.duties().filter((d) => !d.settled),
        (d) => ({ challengeId: d.challengeId.toString() }),
        'a committee duty failed; retrying',
        performDuty,
      );
    });

    return {
      start: () => worker.start(),
      stop: () => worker.stop(),
      tick: () => worker.run(),
      status: () => ({
        duties: store.duties().map((d) => ({
          challengeId: d.challengeId.toString(),
          ...(d.decision?.kind === 'vote' ? { guilty: d.decision.guilty } : {}),
          ...(d.decision ? { decision: d.decision.kind, detail: d.decision.detail } : {}),
          computeMs: d.computeMs,
          committed: d.committed,
          revealed: d.revealed,
          settled: d.settled,
        })),
      }),
    };
  };

function randomSalt(): Hex {
  return `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex')}`;
}
