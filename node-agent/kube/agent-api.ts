/** The agent's API calls over its small HTTP client besides its node object: events and its Node. */
import type { Logger } from "pino";
import { API_VERSION, KIND } from "../../crds/schema.ts";
import type { AgentApi } from "../loop/agent.ts";
import type { KubeHttp } from "../../kube/http-client.ts";
import { perSource } from "../../kube/event-correlator.ts";
import { KubeEventRecorder, type EventRecorderOptions, type RecorderStats } from "../../kube/event-recorder.ts";
import { Watcher, type RestartCause } from "./watcher.ts";
import type { ListWatchClient } from "../../kube/list-watch.ts";

export function agentFieldManager(nodeName: string): string {
  return `kpatch-agent/${nodeName}`;
}

/**
 * The agent's Events, aggregated and rate-bounded (kube/event-recorder.ts): a repeat of an Event
 * within 10 minutes raises its count instead of adding one, and the node's writes of Events are
 * bounded by one token bucket for the whole agent, whatever the object: a burst of 25, then one a
 * minute. Per node rather than per object (client-go's choice, 25 then one per 5 minutes per
 * object) because it is the node count that multiplies: a thousand agents failing the same way
 * write at most 25 000 Events and then ~17 a second, not twice that for the patch and the Node.
 * A minute rather than five since the one bucket covers all of the node's patches.
 */
export const AGENT_EVENT_BURST = 25;
export const AGENT_EVENT_REFILL_MS = 60_000;

export type AgentEvents = AgentApi["event"] & {
  /** What was written, aggregated, dropped over the bound, and lost to API errors. */
  readonly stats: () => RecorderStats;
  /** Resolves once the writes started so far have ended. */
  readonly flush: () => Promise<void>;
};

/** Records an event on the patch and on the Node (best effort: never throws, failures logged at debug). */
export function agentEvents(http: KubeHttp, nodeName: string, log: Logger, opts: Partial<Omit<EventRecorderOptions, "source" | "log">> = {}): AgentEvents {
  const recorder = new KubeEventRecorder(http, {
    burst: AGENT_EVENT_BURST,
    refillMs: AGENT_EVENT_REFILL_MS,
    rateKey: perSource,
    failureLogLevel: "debug",
    ...opts,
    source: { component: "kpatch-agent", host: nodeName },
    log,
  });
  // On the Node always (`kubectl describe node`); warnings on the patch too
  // (`kubectl describe klp`). A load or an unload goes on the Node only: the operator announces
  // those on the patch grouped per status write, not one event per node from a thousand nodes.
  // A Node's events carry the node name as uid, as the kubelet's do (kubectl looks them up so).
  const event: AgentApi["event"] = (patch, type, reason, message) => {
    if (type === "Warning") recorder.record({ apiVersion: API_VERSION, kind: KIND, name: patch.name, ...(patch.uid ? { uid: patch.uid } : {}) }, type, reason, message);
    recorder.record({ apiVersion: "v1", kind: "Node", name: nodeName, uid: nodeName }, type, reason, `${patch.name}: ${message}`);
  };
  return Object.assign(event, { stats: () => recorder.stats, flush: () => recorder.flush() });
}

export interface WatchOptions {
  readonly timeoutSeconds?: number;
  readonly onRestart?: (resource: string, cause: RestartCause) => void;
}

/**
 * Delivers the Node's labels, or undefined once the Node is gone. Metadata only: a kubelet's Node
 * carries 5–20 KiB of images, conditions and addresses and changes with its status; the agent
 * reads its labels alone.
 */
export function watchOwnNode(
  http: ListWatchClient,
  nodeName: string,
  onLabels: (labels: Record<string, string> | undefined) => void,
  log: Logger,
  opts: WatchOptions = {},
): Watcher {
  return new Watcher(http, {
    path: "/api/v1/nodes",
    query: { fieldSelector: `metadata.name=${nodeName}` },
    metadataOnly: true,
    onChange: (m) => {
      const node = m.get(nodeName) as { metadata?: { labels?: Record<string, string> } } | undefined;
      onLabels(node ? (node.metadata?.labels ?? {}) : undefined);
    },
    onError: (err) => log.warn({ err: (err as Error).message }, "Node watch interrupted; relisting"),
    ...watchTuning("nodes", opts),
  });
}

export function watchTuning(resource: string, opts: WatchOptions): { timeoutSeconds?: number; onRestart?: (cause: RestartCause) => void } {
  const onRestart = opts.onRestart;
  return {
    ...(opts.timeoutSeconds !== undefined ? { timeoutSeconds: opts.timeoutSeconds } : {}),
    ...(onRestart ? { onRestart: (cause: RestartCause) => onRestart(resource, cause) } : {}),
  };
}
