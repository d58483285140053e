/**
 * Kubernetes Events on KernelLivePatches (cluster-scoped objects' events live in `default`),
 * aggregated and rate-bounded (kube/event-recorder.ts): a repeat within 10 minutes raises the
 * earlier Event's count; each patch may write 25 Events of one type and reason at once, then one
 * every 5 minutes (client-go's bound, per reason rather than per type so that a long rollout's
 * progress events cannot use up its RolloutComplete's). Over the bound an event is dropped and
 * counted (`stats().dropped`). Never throws; failures are logged.
 */
import type { Logger } from "pino";
import type { KubeHttp } from "../../kube/http-client.ts";
import { API_VERSION, KIND } from "../../crds/schema.ts";
import { EVENT_BURST, EVENT_REFILL_MS, perObjectReason, type CorrelatorOptions, type ObjectReference } from "../../kube/event-correlator.ts";
import { KubeEventRecorder, type EventRecorderOptions, type RecorderStats } from "../../kube/event-recorder.ts";

export interface PatchRef {
  readonly name: string;
  readonly uid?: string | undefined;
}

export interface EventRecorder {
  patchEvent(patch: PatchRef, type: "Normal" | "Warning", reason: string, message: string): void;
}

/** client-go's burst and refill, with one bucket per patch, type and reason. */
export const OPERATOR_EVENT_BOUND = { burst: EVENT_BURST, refillMs: EVENT_REFILL_MS, rateKey: perObjectReason } as const satisfies CorrelatorOptions;

/** The involved object of a patch's Event. */
export function patchReference(patch: PatchRef): ObjectReference {
  return { apiVersion: API_VERSION, kind: KIND, name: patch.name, ...(patch.uid ? { uid: patch.uid } : {}) };
}

export interface OperatorEventRecorder extends EventRecorder {
  /** What was written, aggregated, dropped over the bound, and lost to API errors. */
  stats(): RecorderStats;
  /** Resolves once the writes started so far have ended. */
  flush(): Promise<void>;
}

export function eventRecorder(http: KubeHttp, component: string, log: Logger, opts: Partial<Omit<EventRecorderOptions, "source" | "log">> = {}): OperatorEventRecorder {
  const recorder = new KubeEventRecorder(http, {
    ...OPERATOR_EVENT_BOUND,
    ...opts,
    source: { component },
    log,
  });
  return {
    patchEvent(patch, type, reason, message) {
      recorder.record(patchReference(patch), type, reason, message);
    },
    stats: () => recorder.stats,
    flush: () => recorder.flush(),
  };
}
