/** The agent's API calls over its small HTTP client besides its node object: events and its Node. */
import type { Logger } from "pino";
import { API_VERSION, KIND } from "../../crds/schema.ts";
import type { AgentApi } from "../loop/agent.ts";
import type { KubeHttp } from "../../kube/http-client.ts";
import { Watcher, type RestartCause } from "./watcher.ts";

export function agentFieldManager(nodeName: string): string {
  return `kpatch-agent/${nodeName}`;
}

/** Records an event on the patch and on the Node (best effort). */
export function agentEvents(http: KubeHttp, nodeName: string, log: Logger): AgentApi["event"] {
  const post = (involvedObject: Record<string, string>, type: string, reason: string, message: string) => {
    const now = new Date().toISOString();
    return http
      .send("POST", "/api/v1/namespaces/default/events", {
        body: {
          metadata: { generateName: `${involvedObject.name}.`, namespace: "default" },
          involvedObject,
          type,
          reason,
          message,
          source: { component: "kpatch-agent", host: nodeName },
          reportingComponent: "kpatch-agent",
          reportingInstance: nodeName,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      })
      .catch((err: unknown) => log.debug({ err: (err as Error).message, reason, kind: involvedObject.kind }, "could not record event"));
  };
  // Best effort. On the Node always (`kubectl describe node`); warnings on the patch too
  // (`kubectl describe klp`). A load or an unload goes on the Node only: the operator announces
  // those on the patch grouped per status write, not one event per node from a thousand nodes.
  // A Node's events carry the node name as uid, as the kubelet's do (kubectl looks them up so).
  return (patch, type, reason, message) => {
    if (type === "Warning") void post({ apiVersion: API_VERSION, kind: KIND, name: patch.name, ...(patch.uid ? { uid: patch.uid } : {}) }, type, reason, message);
    void post({ apiVersion: "v1", kind: "Node", name: nodeName, uid: nodeName }, type, reason, `${patch.name}: ${message}`);
  };
}

export interface WatchOptions {
  readonly timeoutSeconds?: number;
  readonly onRestart?: (resource: string, cause: RestartCause) => void;
}

/** Delivers the Node's labels, or undefined once the Node is gone. */
export function watchOwnNode(
  http: KubeHttp,
  nodeName: string,
  onLabels: (labels: Record<string, string> | undefined) => void,
  log: Logger,
  opts: WatchOptions = {},
): Watcher {
  return new Watcher(http, {
    path: "/api/v1/nodes",
    query: { fieldSelector: `metadata.name=${nodeName}` },
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
