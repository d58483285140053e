/** Thin adapter over the API server for KernelLivePatch objects: the operator's only writes to them. */
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { API_VERSION, GROUP, KIND, PLURAL, VERSION, type KernelLivePatch, type KernelLivePatchStatus } from "../../crds/schema.ts";

export const OPERATOR_FIELD_MANAGER = "kpatch-operator";

export class PatchClient {
  constructor(private readonly api: CustomObjectsApi) {}

  async list(): Promise<{ items: unknown[]; metadata?: { resourceVersion?: string } }> {
    return (await this.api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })) as never;
  }

  /** Server-side apply of the whole status: the controller alone writes it (entries come from the node objects). */
  async applyStatus(name: string, status: KernelLivePatchStatus): Promise<void> {
    await this.api.patchClusterCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        name,
        body: { apiVersion: API_VERSION, kind: KIND, metadata: { name }, status },
        fieldManager: OPERATOR_FIELD_MANAGER,
        force: true,
      },
      setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
    );
  }

  /** Replaces the finalizer list, guarded by resourceVersion (409 when the object moved). */
  async setFinalizers(patch: KernelLivePatch, finalizers: string[]): Promise<void> {
    await this.api.patchClusterCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        name: patch.metadata.name,
        body: { metadata: { finalizers, resourceVersion: patch.metadata.resourceVersion } },
        fieldManager: OPERATOR_FIELD_MANAGER,
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
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
