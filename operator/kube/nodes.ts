/**
 * What the operator's cache keeps of a Node: its name, uid and labels (targeting, the node
 * object's owner reference) and whether it is Ready — not its images, addresses, capacity and
 * conditions, most of a Node's bytes.
 */
import type { KubernetesObject, V1Node } from "@kubernetes/client-node";
import type { NodeReadiness } from "../rollout/settled.ts";

export interface NodeView extends KubernetesObject {
  metadata?: { name?: string; uid?: string; resourceVersion?: string; labels?: Record<string, string> };
  readiness: NodeReadiness;
}

/** The Node's Ready condition: False and Unknown are not ready; a Node without one gives no evidence (ready). */
export function nodeReadiness(node: V1Node): NodeReadiness {
  const c = node.status?.conditions?.find((x) => x.type === "Ready");
  if (!c) return { ready: true };
  const since = iso(c.lastTransitionTime);
  return { ready: c.status === "True", ...(since ? { since } : {}) };
}

/** The cache's copy (idempotent: a copy passed in again comes back as it is). */
export function cachedNode<T>(o: T): T {
  if ((o as Partial<NodeView>).readiness) return o;
  const n = o as V1Node;
  const m = n.metadata ?? {};
  const view: NodeView = {
    ...(n.apiVersion ? { apiVersion: n.apiVersion } : {}),
    ...(n.kind ? { kind: n.kind } : {}),
    metadata: {
      ...(m.name !== undefined ? { name: m.name } : {}),
      ...(m.uid !== undefined ? { uid: m.uid } : {}),
      ...(m.resourceVersion !== undefined ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.labels ? { labels: m.labels } : {}),
    },
    readiness: nodeReadiness(n),
  };
  return view as T;
}

/** The API's JSON gives times as strings; the client library's types say Date. */
function iso(t: Date | string | undefined): string | undefined {
  if (t === undefined) return undefined;
  return typeof t === "string" ? t : t.toISOString();
}
