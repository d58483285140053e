/** The agent's API calls over its small HTTP client: status apply, events, and the two watches. */
import type { Logger } from "pino";
import { API_VERSION, GROUP, KIND, PLURAL, VERSION, type NodeEntry } from "../../crds/schema.ts";
import type { AgentApi } from "../loop/agent.ts";
import type { KubeHttp } from "./http-client.ts";
import { Watcher } from "./watcher.ts";

export const PATCHES_PATH = `/apis/${GROUP}/${VERSION}/${PLURAL}`;

export function agentFieldManager(nodeName: string): string {
  return `kpatch-agent/${nodeName}`;
}

export function agentApi(http: KubeHttp, nodeName: string, log: Logger): AgentApi {
  return {
    async applyEntry(patch, entry: NodeEntry) {
      await http.json("PATCH", `${PATCHES_PATH}/${encodeURIComponent(patch)}/status`, {
        query: { fieldManager: agentFieldManager(nodeName), force: true },
        contentType: "application/apply-patch+yaml",
        body: { apiVersion: API_VERSION, kind: KIND, metadata: { name: patch }, status: { nodes: [entry] } },
      });
    },
    event(patch, type, reason, message) {
      const now = new Date().toISOString();
      http
        .json("POST", "/api/v1/namespaces/default/events", {
          body: {
            metadata: { generateName: `${patch.name}.`, namespace: "default" },
            involvedObject: { apiVersion: API_VERSION, kind: KIND, name: patch.name, ...(patch.uid ? { uid: patch.uid } : {}) },
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
        .catch((err: unknown) => log.debug({ err: (err as Error).message, reason }, "could not record event"));
    },
  };
}

export function watchPatches(http: KubeHttp, onChange: (objects: Iterable<unknown>) => void, log: Logger): Watcher {
  return new Watcher(http, {
    path: PATCHES_PATH,
    onChange: (m) => onChange(m.values()),
    onError: (err) => log.warn({ err: (err as Error).message }, "KernelLivePatch watch interrupted; relisting"),
  });
}

export function watchOwnNode(http: KubeHttp, nodeName: string, onLabels: (labels: Record<string, string>) => void, log: Logger): Watcher {
  return new Watcher(http, {
    path: "/api/v1/nodes",
    query: { fieldSelector: `metadata.name=${nodeName}` },
    onChange: (m) => {
      const node = m.get(nodeName) as { metadata?: { labels?: Record<string, string> } } | undefined;
      if (node) onLabels(node.metadata?.labels ?? {});
    },
    onError: (err) => log.warn({ err: (err as Error).message }, "Node watch interrupted; relisting"),
  });
}
