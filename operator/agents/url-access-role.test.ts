import { describe, expect, it } from "vitest";
import { KernelLivePatch as KernelLivePatchSchema, type KernelLivePatch } from "../../crds/schema.ts";
import { loadOperatorConfig } from "../config.ts";
import { desiredUrlAccessRole, namedObjects } from "./url-access-role.ts";

const cfg = loadOperatorConfig({ KLP_NAMESPACE: "kpatch-system", KLP_AGENT_IMAGE: "agent:1" });
const patch = (name: string, modules: Array<Record<string, unknown>>): KernelLivePatch =>
  KernelLivePatchSchema.parse({
    apiVersion: "livepatch.kpatch.dev/v1alpha1",
    kind: "KernelLivePatch",
    metadata: { name },
    spec: { modules: modules.map((m, i) => ({ kernelRelease: `6.1.0-${i}-amd64`, sha256: "a".repeat(64), ...m })) },
  });
const url = "https://artifacts.corp/fix.ko";

describe("namedObjects", () => {
  it.each<[string, KernelLivePatch[], { secrets: string[]; configMaps: string[] }]>([
    ["no patch", [], { secrets: [], configMaps: [] }],
    ["a url without urlAccess", [patch("a", [{ url }])], { secrets: [], configMaps: [] }],
    ["a configMap source names no access object", [patch("a", [{ configMap: { namespace: "x", name: "fix", key: "m" } }])], { secrets: [], configMaps: [] }],
    [
      "token, headers and CA of several patches, distinct and sorted",
      [
        patch("b", [{ url, urlAccess: { bearerTokenSecret: { name: "nexus" }, caBundle: { configMapName: "corp-ca" } } }]),
        patch("a", [
          { url, urlAccess: { headersSecretName: "gitlab", caBundle: { configMapName: "corp-ca" } } },
          { url, urlAccess: { bearerTokenSecret: { name: "artifactory", key: "api" } } },
        ]),
      ],
      { secrets: ["artifactory", "gitlab", "nexus"], configMaps: ["corp-ca"] },
    ],
  ])("%s", (_n, patches, expected) => {
    expect(namedObjects(patches)).toEqual(expected);
  });
});

describe("desiredUrlAccessRole", () => {
  it("grants get on exactly the named objects", () => {
    const role = desiredUrlAccessRole({ secrets: ["artifactory"], configMaps: ["corp-ca"] }, cfg);
    expect(role.metadata).toMatchObject({ name: "kpatch-agent-url-access", namespace: "kpatch-system" });
    expect(role.rules).toEqual([
      { apiGroups: [""], resources: ["secrets"], verbs: ["get"], resourceNames: ["artifactory"] },
      { apiGroups: [""], resources: ["configmaps"], verbs: ["get"], resourceNames: ["corp-ca"] },
    ]);
  });

  it.each([
    ["nothing named: no rule at all", { secrets: [], configMaps: [] }, []],
    ["only a CA: no Secret rule (empty resourceNames would grant every Secret)", { secrets: [], configMaps: ["corp-ca"] }, ["configmaps"]],
    ["only a token: no ConfigMap rule", { secrets: ["t"], configMaps: [] }, ["secrets"]],
  ])("%s", (_n, named, resources) => {
    const rules = desiredUrlAccessRole(named, cfg).rules ?? [];
    expect(rules.map((r) => r.resources?.[0])).toEqual(resources);
    for (const r of rules) expect(r.resourceNames?.length).toBeGreaterThan(0);
  });
});
