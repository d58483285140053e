import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { buildCrd, buildNodeCrd, crdYaml } from "./crd.ts";
import { CRD_FILES } from "./generate.ts";

describe("generated CRD", () => {
  it.each(CRD_FILES)("%s matches what crds/generate.ts produces (run `npm run gen:crd`)", (path, build) => {
    expect(readFileSync(path, "utf8")).toBe(crdYaml(build()));
  });

  it("is structural: no additionalProperties beside properties, no $schema", () => {
    const offenders: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (node === null || typeof node !== "object") return;
      const o = node as Record<string, unknown>;
      if ("$schema" in o) offenders.push(`${path}: $schema`);
      if ("properties" in o && "additionalProperties" in o) offenders.push(`${path}: additionalProperties`);
      for (const [k, v] of Object.entries(o)) walk(v, `${path}.${k}`);
    };
    walk(buildCrd(), "");
    walk(buildNodeCrd(), "node");
    expect(offenders).toEqual([]);
  });
});
