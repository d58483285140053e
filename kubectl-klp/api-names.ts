/**
 * What the plugin needs of crds/schema.ts at run time, without the schema: importing it brings zod
 * along (750 KB of the bundle, 200 ms of every command's start on an idle machine). Types still
 * come from schema.ts; api-names.test.ts holds these equal to the schema's own.
 */
export const KLP_PATH = "/apis/livepatch.kpatch.dev/v1alpha1/kernellivepatches";
export const KLPN_PATH = "/apis/livepatch.kpatch.dev/v1alpha1/kernellivepatchnodes";

/** schema.ts ofThisPatch: an entry without a uid predates uids and counts as this patch's. */
export function ofThisPatch(patchUID: string | undefined, uid: string | undefined): boolean {
  return patchUID === undefined || patchUID === uid;
}
