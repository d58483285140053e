/**
 * What the operator keeps of a Node: its name, uid and labels (targeting, the node object's owner
 * reference) and its resourceVersion (a change invalidates a readiness read). The Nodes are watched
 * as metadata only (PartialObjectMetadata): their images, addresses, capacity and conditions, most
 * of a kubelet's Node, never reach the operator through the watch. Readiness, which only a few
 * decisions read and only for a few nodes at a time, is read on demand (node-readiness.ts).
 */
import type { KubernetesObject, V1Node } from "@kubernetes/client-node";
import type { NodeReadiness } from "../rollout/settled.ts";

export interface NodeView extends KubernetesObject {
  metadata?: NodeViewMeta;
}

interface NodeViewMeta {
  name?: string;
  uid?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
}

const VIEW_KEYS = new Set(["name", "uid", "resourceVersion", "labels"]);

/** The Node's Ready condition: False and Unknown are not ready; a Node without one gives no evidence (ready). */
export function nodeReadiness(node: V1Node): NodeReadiness {
  const c = node.status?.conditions?.find((x) => x.type === "Ready");
  if (!c) return { ready: true };
  const since = iso(c.lastTransitionTime);
  return { ready: c.status === "True", ...(since ? { since } : {}) };
}

/**
 * The cache's copy of a Node or of its PartialObjectMetadata (idempotent: a copy passed in again
 * comes back as it is).
 */
export function cachedNode<T>(o: T): T {
  if (isView(o)) return o;
  const m = (o as NodeView).metadata ?? {};
  const view: NodeView = {
    metadata: {
      ...(m.name !== undefined ? { name: m.name } : {}),
      ...(m.uid !== undefined ? { uid: m.uid } : {}),
      ...(m.resourceVersion !== undefined ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.labels ? { labels: m.labels } : {}),
    },
  };
  return view as T;
}

function isView(o: unknown): boolean {
  const keys = Object.keys(o as object);
  if (keys.length !== 1 || keys[0] !== "metadata") return false;
  return Object.keys((o as NodeView).metadata ?? {}).every((k) => VIEW_KEYS.has(k));
}

/** The API's JSON gives times as strings; the client library's types say Date. */
function iso(t: Date | string | undefined): string | undefined {
  if (t === undefined) return undefined;
  return typeof t === "string" ? t : t.toISOString();
}
