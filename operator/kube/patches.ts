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
 * The cache's copy of a patch, without status.nodes: the controller rebuilds the entries from the
 * node objects, and at scale they are most of the object.
 */
export function cachedPatch<T>(o: T): T {
  const p = o as { status?: { nodes?: unknown } };
  if (!p.status || !("nodes" in p.status)) return o;
  const { nodes: _, ...status } = p.status;
  return { ...p, status } as T;
}
