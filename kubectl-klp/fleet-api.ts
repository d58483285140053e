/**
 * The plugin's one port to the API server: read every KernelLivePatch and KernelLivePatchNode and
 * the Nodes' labels, and merge-patch a KernelLivePatch's spec. Over the project's own client (kube/http-client.ts).
 *
 * Objects are read as the server sends them, not parsed strictly with the schema: an admin's
 * client must still read a cluster whose CRD is a version older or newer than the plugin.
 */
import { KubeHttp, MERGE } from "../kube/http-client.ts";
import type { Connection } from "../kube/connection.ts";
import type { KernelLivePatch, KernelLivePatchNode } from "../crds/schema.ts";
import { NODE_OBJECTS_PATH, PATCHES_PATH } from "../crds/names.ts";
import type { FleetSnapshot } from "./fleet-view.ts";

export interface FleetApi {
  read(): Promise<FleetSnapshot>;
  mergePatch(name: string, body: Record<string, unknown>): Promise<void>;
  close(): void;
}

export function httpFleetApi(connection: Connection): FleetApi {
  const http = new KubeHttp(connection, { userAgent: "kubectl-klp" });
  const items = async <T>(path: string): Promise<T[]> => (await http.json<{ items?: T[] }>("GET", path)).items ?? [];
  return {
    read: async () => {
      const [patches, nodeObjects, nodes] = await Promise.all([
        items<KernelLivePatch>(PATCHES_PATH),
        items<KernelLivePatchNode>(NODE_OBJECTS_PATH),
        items<{ metadata: { name: string; labels?: Record<string, string> } }>("/api/v1/nodes"),
      ]);
      return { patches, nodeObjects, clusterNodes: nodes.map((n) => ({ name: n.metadata.name, labels: n.metadata.labels ?? {} })) };
    },
    mergePatch: (name, body) => http.send("PATCH", `${PATCHES_PATH}/${encodeURIComponent(name)}`, { body, contentType: MERGE }),
    close: () => http.close(),
  };
}
