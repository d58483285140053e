/** Thin adapter over the API server for KernelLivePatchNode objects: the operator writes their spec. */
import { createHash } from "node:crypto";
import { API_VERSION, GROUP, NODE_KIND, NODE_OBJECTS_PATH, ofThisPatch, type NodeEntry, type NodePatchEntry, type PatchOnNode } from "../../crds/schema.ts";
import { APPLY, ignoreNotFound, type KubeHttp } from "../../kube/http-client.ts";
import { OPERATOR_FIELD_MANAGER } from "./patches.ts";

/** Annotation holding the hash of the projection last written, so the cache need not keep the spec. */
export const PROJECTION_HASH = `${GROUP}/projection-hash`;

/** What the cache keeps of one projected patch: whose, which generation, and whether the node is admitted for it. */
export type ProjectedAdmission = Pick<PatchOnNode, "uid" | "generation" | "admitted">;

/**
 * What the operator's cache keeps of a node object: of the spec, only the hash of it and each
 * projected patch's admission (the record of admission: the operator rebuilds its rollout state
 * from it after a restart); of the status, the agent's entries as each patch's status shows them,
 * indexed by patch (converted once per version of the object, not once per roll-up: a roll-up reads
 * every node object). The entries are kept once: at 15,000 nodes × 10 patches a second copy as the
 * agent wrote them cost tens of MiB.
 */
export interface NodeObjectView {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; resourceVersion?: string; annotations?: Record<string, string> };
  byPatch?: ReadonlyMap<string, { readonly uid: string | undefined; readonly entry: NodeEntry }>;
  /** Per projected patch name. */
  projected?: ReadonlyMap<string, ProjectedAdmission>;
}

export class NodeObjectClient {
  constructor(private readonly http: KubeHttp) {}

  /**
   * Creates or updates the node's object by server-side apply. Owned by the Node (its uid), so the
   * garbage collector removes it with the Node even when the operator is not running; `hash` is the
   * projection's (projectionHash), which the cache keeps instead of the spec. The benchmark's floor
   * writes objects that have no Node, without either.
   */
  async applySpec(node: { name: string; uid?: string }, patches: readonly PatchOnNode[], hash?: string): Promise<void> {
    await this.http.send("PATCH", `${NODE_OBJECTS_PATH}/${encodeURIComponent(node.name)}`, {
      query: { fieldManager: OPERATOR_FIELD_MANAGER, force: true },
      contentType: APPLY,
      body: {
        apiVersion: API_VERSION,
        kind: NODE_KIND,
        metadata: {
          name: node.name,
          ...(hash ? { annotations: { [PROJECTION_HASH]: hash } } : {}),
          ...(node.uid ? { ownerReferences: [{ apiVersion: "v1", kind: "Node", name: node.name, uid: node.uid }] } : {}),
        },
        spec: { patches },
      },
    });
  }

  async delete(name: string): Promise<void> {
    await ignoreNotFound(this.http.json("DELETE", `${NODE_OBJECTS_PATH}/${encodeURIComponent(name)}`));
  }
}

/** The hash of a projection, as the annotation PROJECTION_HASH holds it: an unchanged projection is never written again. */
export function projectionHash(patches: readonly PatchOnNode[]): string {
  return createHash("sha256").update(JSON.stringify(patches)).digest("hex").slice(0, 16);
}

/** The cache's copy: the spec (a thousand copies of every patch's spec at scale) reduced to its hash and each patch's admission. */
export function cachedNodeObject<T>(o: T): T {
  const { spec, status, ...rest } = o as NodeObjectView & { spec?: { patches?: Array<Partial<PatchOnNode>> }; status?: { entries?: NodePatchEntry[] } };
  const projected = new Map<string, ProjectedAdmission>();
  for (const p of spec?.patches ?? []) {
    if (typeof p.name !== "string") continue;
    projected.set(p.name, { uid: p.uid ?? "", generation: p.generation ?? 0, admitted: p.admitted === true });
  }
  const nodeName = rest.metadata?.name ?? "";
  const byPatch = new Map(
    (status?.entries ?? []).map((e) => {
      const { patch, patchUID, ...entry } = e;
      return [patch, { uid: patchUID, entry: { ...entry, nodeName } }] as const;
    }),
  );
  return { ...rest, byPatch, projected } as T;
}

/** The node's entry for this patch in the cache's copy (not one left by an earlier patch of the same name). */
export function cachedEntryOf(o: NodeObjectView | undefined, patch: { metadata: { name: string; uid?: string } }): NodeEntry | undefined {
  const hit = o?.byPatch?.get(patch.metadata.name);
  return hit && ofThisPatch(hit.uid, patch.metadata.uid) ? hit.entry : undefined;
}
