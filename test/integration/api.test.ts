/**
 * The API as an admin meets it: the CRD from crds/ on a real API server, `kubectl explain`, the
 * printer columns, and bad input refused at admission with a message that says what is wrong.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { loadReleasePatternEngine } from "../../crds/module-for-release.ts";
import { KernelLivePatchSpec } from "../../crds/schema.ts";
import type { ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";
import { controlPlane, installCrd, until } from "../support/klp.ts";

const SHA = "a".repeat(64);
const PINNED = `@sha256:${"c".repeat(64)}`;
const good = { kernelRelease: "6.1.0-56-amd64", sha256: SHA, configMap: { namespace: "kpatch-system", name: "mods", key: "fix.ko" } };

let cp: ControlPlaneClient;
beforeAll(async () => {
  cp = await controlPlane();
  await installCrd(cp);
  await loadReleasePatternEngine(); // the TypeScript side checks kernelReleasePattern with RE2
});

async function apply(name: string, spec: unknown, extra: Record<string, unknown> = {}) {
  const doc = { apiVersion: "livepatch.kpatch.dev/v1alpha1", kind: "KernelLivePatch", metadata: { name }, spec, ...extra };
  return cp.kubectl(["apply", "--dry-run=server", "-f", "-"], { input: stringify(doc) });
}

describe("the KernelLivePatch API on a real API server", () => {
  it("is established and explained field by field", async () => {
    // kubectl learns the short name from discovery, which may lag the CRD by a moment.
    const r = await until("kubectl explain", async () => {
      const r = await cp.kubectl(["explain", "klp.spec.rollout.maxUnavailable"]);
      return r.code === 0 ? r : undefined;
    }, 30_000, 1000);
    expect(r.stdout).toContain("How many targeted nodes may be changing at once");
    const spec = await cp.kubectl(["explain", "klp.spec"]);
    for (const field of ["state", "modules", "nodeSelector", "tolerations", "rollout", "transitionTimeoutSeconds", "cves", "description"]) {
      expect(spec.stdout).toContain(field);
    }
  });

  it("defaults what the user leaves out", async () => {
    const r = await cp.kubectl(["apply", "--dry-run=server", "-o", "json", "-f", "-"], {
      input: stringify({ apiVersion: "livepatch.kpatch.dev/v1alpha1", kind: "KernelLivePatch", metadata: { name: "defaults" }, spec: { modules: [good] } }),
    });
    expect(r.code, r.stderr).toBe(0);
    const spec = JSON.parse(r.stdout).spec;
    expect(spec).toMatchObject({ state: "Loaded", transitionTimeoutSeconds: 75, rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0 } });
  });

  it("accepts a full, valid resource", async () => {
    const r = await apply("valid", {
      state: "Staged",
      description: "fixes CVE-2024-1086",
      cves: ["CVE-2024-1086"],
      modules: [
        good,
        { kernelReleasePattern: "6\\.1\\.0-5[0-9]-cloud-amd64", sha256: "b".repeat(64), url: "https://example.com/fix.ko", moduleName: "livepatch-fix" },
        { kernelRelease: "6.1.0-57-amd64", sha256: "d".repeat(64), image: { reference: `registry.example.com:5000/mods:v1${PINNED}`, path: "/lib/fix.ko", pullSecrets: [{ name: "registry-creds" }] } },
      ],
      nodeSelector: { matchLabels: { pool: "a" }, matchExpressions: [{ key: "zone", operator: "In", values: ["x"] }] },
      tolerations: [{ operator: "Exists" }],
      rollout: { maxUnavailable: "25%", paused: true, failureThreshold: 3, soakSeconds: 600 },
      transitionTimeoutSeconds: 120,
    });
    expect(r.code, r.stderr).toBe(0);
  });

  const bad: Array<[string, unknown, string, Record<string, unknown>?]> = [
    ["no modules", { modules: [] }, "spec.modules: Invalid value"],
    ["a progress deadline shorter than two transitions", { modules: [good], rollout: { progressDeadlineSeconds: 100 }, transitionTimeoutSeconds: 60 }, "at least twice transitionTimeoutSeconds"],
    ["the default progress deadline (600) shorter than two transitions", { modules: [good], transitionTimeoutSeconds: 301 }, "at least twice transitionTimeoutSeconds"],
    ["missing modules", {}, "spec.modules: Required value"],
    ["digest too short", { modules: [{ ...good, sha256: "abc" }] }, "spec.modules[0].sha256"],
    ["digest in upper case", { modules: [{ ...good, sha256: "A".repeat(64) }] }, "spec.modules[0].sha256"],
    ["digest missing", { modules: [{ kernelRelease: "r", configMap: good.configMap }] }, "spec.modules[0].sha256: Required value"],
    ["no source", { modules: [{ kernelRelease: "r", sha256: SHA }] }, "exactly one source must be set"],
    ["two sources", { modules: [{ ...good, url: "https://x/y.ko" }] }, "exactly one source must be set"],
    ["three sources", { modules: [{ ...good, url: "https://x/y.ko", image: { reference: `r/m:1${PINNED}`, path: "/m.ko" } }] }, "exactly one source must be set"],
    ["release and pattern", { modules: [{ ...good, kernelReleasePattern: "6.*" }] }, "exactly one of kernelRelease and kernelReleasePattern"],
    ["neither release nor pattern", { modules: [{ sha256: SHA, configMap: good.configMap }] }, "exactly one of kernelRelease and kernelReleasePattern"],
    ["duplicate release", { modules: [good, { ...good, sha256: "c".repeat(64) }] }, "each kernelRelease may appear only once"],
    ["duplicate pattern", { modules: [{ kernelReleasePattern: "6.*", sha256: SHA, url: "https://x/a.ko" }, { kernelReleasePattern: "6.*", sha256: SHA, url: "https://x/b.ko" }] }, "each kernelReleasePattern may appear only once"],
    ["invalid regexp", { modules: [{ kernelReleasePattern: "6.1(", sha256: SHA, url: "https://x/a.ko" }] }, "kernelReleasePattern"],
    // RE2 (the API server) and JavaScript (operator, agents) would read these differently.
    ["RE2-only flag group", { modules: [{ kernelReleasePattern: "(?i)6\\.1\\.0-.*-AMD64", sha256: SHA, url: "https://x/a.ko" }] }, "syntax RE2 and JavaScript share"],
    ["RE2-only named group", { modules: [{ kernelReleasePattern: "(?P<abi>6\\.1\\.0-[0-9]+)-amd64", sha256: SHA, url: "https://x/a.ko" }] }, "syntax RE2 and JavaScript share"],
    ["POSIX class in a pattern", { modules: [{ kernelReleasePattern: "6\\.1\\.0-[[:digit:]]+-amd64", sha256: SHA, url: "https://x/a.ko" }] }, "syntax RE2 and JavaScript share"],
    ["Unicode class escape in a pattern", { modules: [{ kernelReleasePattern: "6\\.1\\.0-\\pN+-amd64", sha256: SHA, url: "https://x/a.ko" }] }, "syntax RE2 and JavaScript share"],
    ["http url", { modules: [{ kernelRelease: "r", sha256: SHA, url: "http://x/y.ko" }] }, "spec.modules[0].url"],
    // isURL(self) (Go's url.ParseRequestURI) and the URL pattern refuse the port "b:c"; WHATWG URL too.
    ["url with an unparseable port", { modules: [{ kernelRelease: "r", sha256: SHA, url: "https://a:b:c/x.ko" }] }, "spec.modules[0].url"],
    // Go finds no host here, WHATWG URL reads x.ko as the host: the URL pattern refuses it.
    ["url without a host", { modules: [{ kernelRelease: "r", sha256: SHA, url: "https:///x.ko" }] }, "spec.modules[0].url"],
    // The URL pattern allows it (hex digits and colons in brackets); only the CEL rule's isURL refuses it.
    ["url with an invalid IPv6 host", { modules: [{ kernelRelease: "r", sha256: SHA, url: "https://[1:2]/x.ko" }] }, "url must parse as an https URL with a host"],
    ["release with a slash", { modules: [{ ...good, kernelRelease: "6.1/../x" }] }, "spec.modules[0].kernelRelease"],
    ["module name with a slash", { modules: [{ ...good, moduleName: "../evil" }] }, "spec.modules[0].moduleName"],
    ["module name too long", { modules: [{ ...good, moduleName: "m".repeat(56) }] }, "spec.modules[0].moduleName"],
    ["image path not a .ko", { modules: [{ kernelRelease: "r", sha256: SHA, image: { reference: `r/m:1${PINNED}`, path: "/m.txt" } }] }, "spec.modules[0].image.path"],
    // A module image must be named by its content (sha256 digest), not only by a tag.
    ["image reference with a tag alone", { modules: [{ kernelRelease: "r", sha256: SHA, image: { reference: "registry.example.com/mods:v1", path: "/m.ko" } }] }, "image.reference must be pinned by digest"],
    ["image reference with a name alone", { modules: [{ kernelRelease: "r", sha256: SHA, image: { reference: "mods", path: "/m.ko" } }] }, "image.reference must be pinned by digest"],
    ["image reference with a sha512 digest", { modules: [{ kernelRelease: "r", sha256: SHA, image: { reference: `r/m@sha512:${"ab".repeat(64)}`, path: "/m.ko" } }] }, "image.reference must be pinned by digest"],
    ["image pull secret with a bad name", { modules: [{ kernelRelease: "r", sha256: SHA, image: { reference: `r/m${PINNED}`, path: "/m.ko", pullSecrets: [{ name: "Bad_Name" }] } }] }, "spec.modules[0].image.pullSecrets[0].name"],
    ["image path relative", { modules: [{ kernelRelease: "r", sha256: SHA, image: { reference: `r/m:1${PINNED}`, path: "m.ko" } }] }, "spec.modules[0].image.path"],
    ["configMap without key", { modules: [{ kernelRelease: "r", sha256: SHA, configMap: { namespace: "a", name: "b" } }] }, "spec.modules[0].configMap.key: Required value"],
    ["configMap bad namespace", { modules: [{ kernelRelease: "r", sha256: SHA, configMap: { namespace: "Bad_NS", name: "b", key: "k" } }] }, "spec.modules[0].configMap.namespace"],
    ["unknown state", { state: "Enabled", modules: [good] }, 'Unsupported value: "Enabled"'],
    ["percent over 100", { modules: [good], rollout: { maxUnavailable: "150%" } }, "maxUnavailable must be a count of at least 1 or a percent between 1% and 100%"],
    ["zero percent", { modules: [good], rollout: { maxUnavailable: "0%" } }, "maxUnavailable must be a count of at least 1"],
    ["negative maxUnavailable", { modules: [good], rollout: { maxUnavailable: -1 } }, "maxUnavailable must be a count of at least 1"],
    ["maxUnavailable not a number or percent", { modules: [good], rollout: { maxUnavailable: "many" } }, "maxUnavailable must be a count of at least 1"],
    ["negative soak", { modules: [good], rollout: { soakSeconds: -5 } }, "spec.rollout.soakSeconds"],
    ["zero failureThreshold", { modules: [good], rollout: { failureThreshold: 0 } }, "spec.rollout.failureThreshold"],
    ["transition timeout too short", { modules: [good], transitionTimeoutSeconds: 1 }, "spec.transitionTimeoutSeconds"],
    ["not a CVE id", { modules: [good], cves: ["heartbleed"] }, "spec.cves[0]"],
    ["In without values", { modules: [good], nodeSelector: { matchExpressions: [{ key: "a", operator: "In" }] } }, "In and NotIn need values"],
    ["Exists with values", { modules: [good], nodeSelector: { matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] } }, "Exists and DoesNotExist take none"],
    ["unknown operator", { modules: [good], nodeSelector: { matchExpressions: [{ key: "a", operator: "Gt", values: ["1"] }] } }, 'Unsupported value: "Gt"'],
    ["typo in a spec field", { modules: [good], nodeSelecter: { matchLabels: { a: "b" } } }, 'unknown field "spec.nodeSelecter"'],
    ["typo in a rollout field", { modules: [good], rollout: { maxUnavialable: 5 } }, 'unknown field "spec.rollout.maxUnavialable"'],
    ["typo in a module field", { modules: [{ ...good, sha265: SHA }] }, 'unknown field "spec.modules[0].sha265"'],
    ["bad toleration effect", { modules: [good], tolerations: [{ operator: "Exists", effect: "Sometimes" }] }, 'Unsupported value: "Sometimes"'],
  ];

  it("has at least 30 malformed cases", () => expect(bad.length).toBeGreaterThanOrEqual(30));

  it.each(bad)("rejects %s", async (_name, spec, message) => {
    const r = await apply(`bad-${_name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}`, spec);
    expect(r.code, `accepted: ${r.stdout}`).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  it("the TypeScript schema refuses the same specs (the agent and controller agree with admission)", () => {
    for (const [name, spec] of bad) {
      expect(KernelLivePatchSpec.safeParse(spec).success, name).toBe(false);
    }
  });
});
