/** Thin adapter over the API server for KernelLivePatch objects: the operator's only writes to them. */
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { API_VERSION, GROUP, KIND, PLURAL, VERSION, type KernelLivePatch, type KernelLivePatchStatus } from "../../crds/schema.ts";

export const OPERATOR_FIELD_MANAGER = "kpatch-operator";

export class PatchClient {
  constructor(private readonly api: CustomObjectsApi) {}

  async list(): Promise<{ items: unknown[]; metadata?: { resourceVersion?: string } }> {
    return (await this.api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })) as never;
  }

  /** Server-side apply of the controller-owned part of status; agents own their nodes[] entries. */
  async applyStatus(name: string, status: Omit<KernelLivePatchStatus, "nodes">): Promise<void> {
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

  /**
   * Removes node entries by name. A JSON patch with a `test` per entry, so an entry that moved (an
   * agent wrote meanwhile) makes the whole patch fail and the reconcile retry on fresh data.
   */
  async removeEntries(patch: KernelLivePatch, nodeNames: readonly string[]): Promise<void> {
    const nodes = patch.status?.nodes ?? [];
    const ops = nodes
      .map((e, i) => ({ e, i }))
      .filter(({ e }) => nodeNames.includes(e.nodeName))
      .sort((a, b) => b.i - a.i)
      .flatMap(({ e, i }) => [
        { op: "test", path: `/status/nodes/${i}/nodeName`, value: e.nodeName },
        { op: "remove", path: `/status/nodes/${i}` },
      ]);
    if (ops.length === 0) return;
    await this.api.patchClusterCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: PLURAL, name: patch.metadata.name, body: ops, fieldManager: OPERATOR_FIELD_MANAGER },
      setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
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
