/** The agent's API calls over its small HTTP client: status apply, events, and the two watches. */
import type { Logger } from "pino";
import { API_VERSION, GROUP, KIND, PLURAL, VERSION, type NodeEntry } from "../../crds/schema.ts";
import type { AgentApi } from "../loop/agent.ts";
import type { KubeHttp } from "./http-client.ts";
import { Watcher, type RestartCause } from "./watcher.ts";

export const PATCHES_PATH = `/apis/${GROUP}/${VERSION}/${PLURAL}`;

export function agentFieldManager(nodeName: string): string {
  return `kpatch-agent/${nodeName}`;
}

export function agentApi(http: KubeHttp, nodeName: string, log: Logger): AgentApi {
  const post = (involvedObject: Record<string, string>, type: string, reason: string, message: string) => {
    const now = new Date().toISOString();
    return http
      .json("POST", "/api/v1/namespaces/default/events", {
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
  return {
    async applyEntry(patch, entry: NodeEntry) {
      const written = await http.json<{ metadata?: { resourceVersion?: string } } | undefined>("PATCH", `${PATCHES_PATH}/${encodeURIComponent(patch)}/status`, {
        query: { fieldManager: agentFieldManager(nodeName), force: true },
        contentType: "application/apply-patch+yaml",
        body: { apiVersion: API_VERSION, kind: KIND, metadata: { name: patch }, status: { nodes: [entry] } },
      });
      return written?.metadata?.resourceVersion;
    },
    event(patch, type, reason, message) {
      // Best effort, on both objects: `kubectl describe klp` and `kubectl describe node` show it.
      // A Node's events carry the node name as uid, as the kubelet's do (kubectl looks them up so).
      void post({ apiVersion: API_VERSION, kind: KIND, name: patch.name, ...(patch.uid ? { uid: patch.uid } : {}) }, type, reason, message);
      void post({ apiVersion: "v1", kind: "Node", name: nodeName, uid: nodeName }, type, reason, `${patch.name}: ${message}`);
    },
  };
}

export interface WatchOptions {
  readonly timeoutSeconds?: number;
  readonly onRestart?: (resource: string, cause: RestartCause) => void;
  /** Keep only this node's entry of each patch (see ownPart). */
  readonly ownNode?: string;
}

export function watchPatches(http: KubeHttp, onChange: (objects: Iterable<unknown>) => void, log: Logger, opts: WatchOptions = {}): Watcher {
  const own = opts.ownNode;
  return new Watcher(http, {
    path: PATCHES_PATH,
    ...(own ? { transform: (o: unknown) => ownPart(o, own) } : {}),
    onChange: (m) => onChange(m.values()),
    onError: (err) => log.warn({ err: (err as Error).message }, "KernelLivePatch watch interrupted; relisting"),
    ...watchTuning("kernellivepatches", opts),
  });
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

function watchTuning(resource: string, opts: WatchOptions): { timeoutSeconds?: number; onRestart?: (cause: RestartCause) => void } {
  const onRestart = opts.onRestart;
  return {
    ...(opts.timeoutSeconds !== undefined ? { timeoutSeconds: opts.timeoutSeconds } : {}),
    ...(onRestart ? { onRestart: (cause: RestartCause) => onRestart(resource, cause) } : {}),
  };
}

interface RawPatch {
  metadata?: { managedFields?: unknown };
  status?: { nodes?: Array<{ nodeName?: string }> };
}

/**
 * What an agent keeps of a patch: everything but the managed fields and the other nodes' entries.
 * A patch rolled across N nodes carries N entries and N field managers, and every agent receives
 * every update; keeping (and parsing) only its own entry keeps an agent's memory and CPU flat as
 * the fleet grows.
 */
export function ownPart(raw: unknown, nodeName: string): unknown {
  const p = raw as RawPatch;
  if (typeof p !== "object" || p === null) return raw;
  const { managedFields: _, ...metadata } = p.metadata ?? {};
  const nodes = p.status?.nodes;
  return {
    ...p,
    ...(p.metadata ? { metadata } : {}),
    ...(p.status && Array.isArray(nodes) ? { status: { ...p.status, nodes: nodes.filter((e) => e?.nodeName === nodeName) } } : {}),
  };
}
