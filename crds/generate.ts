/**
 * Generates the CRD YAML from the zod schema (crds/schema.ts). Run `npm run gen:crd` after changing
 * the schema; a unit test fails when the committed YAML differs from what this produces.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildCrd, buildNodeCrd, crdYaml } from "./crd.ts";

/** Each generated file (in crds/ and in the chart) and the CRD it holds. */
export const CRD_FILES: ReadonlyArray<readonly [string, () => Record<string, unknown>]> = [
  ["crds/livepatch.kpatch.dev_kernellivepatches.yaml", buildCrd],
  ["charts/kpatch-operator/crds/livepatch.kpatch.dev_kernellivepatches.yaml", buildCrd],
  ["crds/livepatch.kpatch.dev_kernellivepatchnodes.yaml", buildNodeCrd],
  ["charts/kpatch-operator/crds/livepatch.kpatch.dev_kernellivepatchnodes.yaml", buildNodeCrd],
];

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const [p, build] of CRD_FILES) writeFileSync(p, crdYaml(build()));
  console.log(`wrote ${CRD_FILES.map(([p]) => p).join(", ")}`);
}
