/**
 * The API's names and paths, and which entry belongs to which patch: what a client needs at run
 * time without the schema (schema.ts re-exports all of it; importing schema.ts brings zod along,
 * which the kubectl plugin does without).
 */
export const GROUP = "livepatch.kpatch.dev";
export const VERSION = "v1alpha1";
export const KIND = "KernelLivePatch";
export const PLURAL = "kernellivepatches";
export const API_VERSION = `${GROUP}/${VERSION}`;
/** The API path of the KernelLivePatch collection. */
export const PATCHES_PATH = `/apis/${GROUP}/${VERSION}/${PLURAL}`;
export const FINALIZER = `${GROUP}/unload`;

export const NODE_KIND = "KernelLivePatchNode";
export const NODE_PLURAL = "kernellivepatchnodes";
/** The API path of the KernelLivePatchNode collection. */
export const NODE_OBJECTS_PATH = `/apis/${GROUP}/${VERSION}/${NODE_PLURAL}`;

/**
 * Whether an entry written for the patch uid `patchUID` is about the patch whose uid is `uid`, not
 * one an earlier patch of the same name left behind (an entry without a uid predates uids and
 * counts as this patch's).
 */
export function ofThisPatch(patchUID: string | undefined, uid: string | undefined): boolean {
  return patchUID === undefined || patchUID === uid;
}
