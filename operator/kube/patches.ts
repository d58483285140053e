/** Thin adapter over the API server for KernelLivePatch objects: the operator's only writes to them. */
import { API_VERSION, KIND, PATCHES_PATH, type KernelLivePatch, type KernelLivePatchStatus } from "../../crds/schema.ts";
import { APPLY, MERGE, type KubeHttp } from "../../kube/http-client.ts";

export const OPERATOR_FIELD_MANAGER = "kpatch-operator";

export class PatchClient {
  constructor(private readonly http: KubeHttp) {}

  /** Server-side apply of the whole status: the controller alone writes it (entries come from the node objects). */
  async applyStatus(name: string, status: KernelLivePatchStatus): Promise<void> {
    await this.http.send("PATCH", `${PATCHES_PATH}/${encodeURIComponent(name)}/status`, {
      query: { fieldManager: OPERATOR_FIELD_MANAGER, force: true },
      contentType: APPLY,
      body: { apiVersion: API_VERSION, kind: KIND, metadata: { name }, status },
    });
  }

  /** Replaces the finalizer list, guarded by resourceVersion (409 when the object moved). */
  async setFinalizers(patch: KernelLivePatch, finalizers: string[]): Promise<void> {
    await this.http.send("PATCH", `${PATCHES_PATH}/${encodeURIComponent(patch.metadata.name)}`, {
      query: { fieldManager: OPERATOR_FIELD_MANAGER },
      contentType: MERGE,
      body: { metadata: { finalizers, resourceVersion: patch.metadata.resourceVersion } },
    });
  }
}

/**
 * The cache's copy of a patch, without status.nodes (the controller rebuilds the entries from the
 * node objects) and without status.rollout.admitted, the list an operator before
 * status.rollout.admittedCount wrote: the node objects' projections hold admission now, and the
 * schema no longer has the field, so a patch still carrying it until its next status write parses.
 */
export function cachedPatch<T>(o: T): T {
  const p = o as { status?: { nodes?: unknown; rollout?: { admitted?: unknown } } };
  const oldRollout = p.status?.rollout !== undefined && "admitted" in p.status.rollout;
  if (!p.status || (!("nodes" in p.status) && !oldRollout)) return o;
  const { nodes: _, ...status } = p.status;
  if (oldRollout) {
    const { admitted: _a, ...rollout } = p.status.rollout!;
    return { ...p, status: { ...status, rollout } } as T;
  }
  return { ...p, status } as T;
}
