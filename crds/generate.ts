/**
 * Generates the CRD YAML from the zod schema (crds/schema.ts). Run `npm run gen:crd` after changing
 * the schema; a unit test fails when the committed YAML differs from what this produces.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildCrd, crdYaml } from "./crd.ts";

export const CRD_PATHS = [
  "crds/livepatch.kpatch.dev_kernellivepatches.yaml",
  "charts/kpatch-operator/crds/livepatch.kpatch.dev_kernellivepatches.yaml",
];

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = crdYaml(buildCrd());
  for (const p of CRD_PATHS) writeFileSync(p, text);
  console.log(`wrote ${CRD_PATHS.join(", ")}`);
}
