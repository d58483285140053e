/**
 * A simulated node: the real agent loop, with its own API client, on a simulated host tree. The
 * demo, the integration tests and the benchmarks run many of these in one process.
 */
import path from "node:path";
import type { Logger } from "pino";
import { createLoader } from "../create-loader.ts";
import { createHostDriver } from "../host/driver.ts";
import { watchOwnNode } from "../kube/agent-api.ts";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { KubeHttp } from "../../kube/http-client.ts";
import { nodeChannel } from "../kube/node-channel.ts";
import { Agent, type AgentDeps } from "../loop/agent.ts";
import { moduleSources } from "../loop/sources.ts";

export interface SimNodeOptions {
  readonly name: string;
  /** A host tree laid out by layoutSimHost. */
  readonly root: string;
  readonly kubeconfig: string;
  readonly log: Logger;
  readonly resyncMs?: number;
  readonly onAction?: AgentDeps["onAction"];
  /** The operator's namespace, where urlAccess's Secrets and ConfigMaps are read (POD_NAMESPACE in a pod). */
  readonly accessNamespace?: string;
}

export interface RunningSimNode {
  readonly agent: Agent;
  stop(): Promise<void>;
}

export async function startSimNode(o: SimNodeOptions): Promise<RunningSimNode> {
  const driver = createHostDriver({ hostRoot: o.root, loader: createLoader(o.root, "sim"), log: o.log });
  const http = new KubeHttp(kubeconfigConnection(o.kubeconfig));
  const channel = nodeChannel(http, o.name, o.log);
  const agent = new Agent({
    nodeName: o.name,
    driver,
    api: channel.api,
    sources: moduleSources({ http, imageModulesDir: path.join(o.root, ".images"), maxBytes: 64 << 20, ...(o.accessNamespace ? { accessNamespace: o.accessNamespace } : {}) }),
    log: o.log,
    ...(o.resyncMs !== undefined ? { resyncMs: o.resyncMs } : {}),
    ...(o.onAction ? { onAction: o.onAction } : {}),
  });
  const nodeWatch = watchOwnNode(http, o.name, (labels) => agent.updateNode(labels), o.log);
  await Promise.all([nodeWatch.start(), channel.start((patches, fromObject) => agent.updatePatches(patches, fromObject))]);
  return {
    agent,
    async stop() {
      nodeWatch.stop();
      channel.stop();
      await agent.stop();
      http.close();
    },
  };
}
