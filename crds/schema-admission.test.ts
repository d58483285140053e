/**
 * The zod side of the admission rules of issue 17: module URLs, image references, label keys and
 * values, and kernelReleasePattern syntax. Each refusal is checked by its rule's own message, so a
 * case fails when that rule is gone even where another rule would refuse the input too. (The API
 * server's side of the same rules — the generated CRD's pattern and x-kubernetes-validations —
 * is what test/integration/api.test.ts checks.)
 */
import { beforeAll, describe, expect, it } from "vitest";
import { loadReleasePatternEngine } from "./module-for-release.ts";
import { KernelLivePatchSpec, PatchOnNode } from "./schema.ts";

// The RE2 engine loads on demand (crds/module-for-release.ts); these tests match and validate patterns.
beforeAll(() => loadReleasePatternEngine());

const SHA = "a".repeat(64);
const module = (m: Record<string, unknown>) => ({ modules: [{ kernelRelease: "6.1.0-56-amd64", sha256: SHA, ...m }] });
const selector = (nodeSelector: unknown) => ({ ...module({ url: "https://x.example/a.ko" }), nodeSelector });

/** Each issue as `path: message`. */
function issues(spec: unknown): string[] {
  const r = KernelLivePatchSpec.safeParse(spec);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

const URL_GRAMMAR = "modules.0.url: url must be an https URL: https://[userinfo@]host";
const URL_PARSE = "modules.0.url: url must parse as an https URL with a host";

describe("spec.modules[].url", () => {
  it.each([
    "https://artifacts.example.com/livepatch-fix.ko",
    "https://x/a.ko",
    "https://artifacts.example.com./a.ko",
    "https://10.0.0.5:8443/a.ko",
    "https://[::1]:8443/a.ko",
    "https://[2001:db8::ffff:10.0.0.5]/a.ko",
    "https://reader:s%40cret@artifacts.example.com/a.ko",
    "https://artifacts.example.com/a%20b.ko?version=1&arch=amd64",
    "https://artifacts.example.com:65535",
  ])("accepts %s", (url) => {
    expect(issues(module({ url }))).toEqual([]);
  });

  // WHATWG URL (Node) parses these; Go's url.ParseRequestURI (the API server's isURL) refuses them,
  // or reads another host: only the grammar keeps the two sides in agreement.
  it.each([
    ["no host (WHATWG reads x.ko as the host)", "https:///x.ko"],
    ["a %-escape in the host", "https://a%41.example/x.ko"],
    ["a backslash (WHATWG reads it as /)", "https://h.example\\x.ko"],
    ["an invalid %-escape in the path", "https://h.example/%zz.ko"],
    ["a fragment", "https://h.example/x.ko#v2"],
    ["a numeric last label (WHATWG reads an IPv4 address)", "https://123/x.ko"],
    ["a non-ASCII host", "https://bücher.example/x.ko"],
    ["a character outside RFC 3986", "https://h.example/{x}.ko"],
    ["http", "http://h.example/x.ko"],
    ["no scheme", "h.example/x.ko"],
  ])("refuses a URL outside the grammar both parsers agree on: %s", (_why, url) => {
    expect(issues(module({ url }))).toContainEqual(expect.stringContaining(URL_GRAMMAR));
  });

  it.each([
    ["an IPv6 address with two groups", "https://[1:2]/x.ko"],
    ["an IPv4 address in brackets", "https://[10.0.0.5]/x.ko"],
    ["two :: in an IPv6 address", "https://[1::2::3]/x.ko"],
  ])("refuses a URL in the grammar that does not parse (CEL isURL, WHATWG URL): %s", (_why, url) => {
    expect(issues(module({ url }))).toEqual([URL_PARSE]);
  });

  it("refuses https://a:b:c/x.ko by both rules (isURL and new URL() fail on the port b:c)", () => {
    const found = issues(module({ url: "https://a:b:c/x.ko" }));
    expect(found).toContainEqual(expect.stringContaining(URL_GRAMMAR));
    expect(found).toContainEqual(URL_PARSE);
  });
});

describe("spec.modules[].image.reference", () => {
  const image = (reference: string) => module({ image: { reference, path: "/lib/modules/fix.ko" } });
  const DIGEST = `@sha256:${"0123456789abcdef".repeat(4)}`;
  it.each([
    `mods${DIGEST}`,
    `r/m:1${DIGEST}`,
    `registry.example.com:5000/team/livepatch-mods:v1.2_3${DIGEST}`,
    `ghcr.io/org/mods${DIGEST}`,
    `localhost/mods:1${DIGEST}`,
    `[::1]:5000/mods${DIGEST}`,
    `a__b/c.d-e--f${DIGEST}`,
  ])("accepts %s", (reference) => {
    expect(issues(image(reference))).toEqual([]);
  });

  // In the grammar, but not pinned to content: a tag can be moved to other bytes in the registry.
  const PINNED = "modules.0.image.reference: image.reference must be pinned by digest";
  it.each([
    ["a name alone", "mods"],
    ["a tag", "r/m:1"],
    ["a host, port and tag", "registry.example.com:5000/team/livepatch-mods:v1.2_3"],
    ["a digest of another algorithm", `r/m@sha512:${"ab".repeat(64)}`],
    ["a sha256 digest in upper case", `r/m@sha256:${"0123456789ABCDEF".repeat(4)}`],
    ["a sha256 digest of 63 characters", `r/m@sha256:${"a".repeat(63)}`],
    ["a sha256 digest of 65 characters", `r/m@sha256:${"a".repeat(65)}`],
  ])("refuses a reference not pinned by a sha256 digest: %s", (_why, reference) => {
    expect(issues(image(reference))).toContainEqual(expect.stringContaining(PINNED));
  });

  it("takes pull secrets by name, at most 8, each a DNS subdomain", () => {
    const withSecrets = (pullSecrets: unknown) => module({ image: { reference: `r/m${DIGEST}`, path: "/m.ko", pullSecrets } });
    expect(issues(withSecrets([{ name: "registry-creds" }, { name: "mirror.creds" }]))).toEqual([]);
    expect(issues(withSecrets(Array.from({ length: 9 }, (_, i) => ({ name: `s${i}` }))))).toContainEqual(expect.stringMatching(/^modules\.0\.image\.pullSecrets: /));
    expect(issues(withSecrets([{ name: "Bad_Name" }]))).toContainEqual(expect.stringMatching(/^modules\.0\.image\.pullSecrets\.0\.name: /));
    expect(issues(withSecrets([{ name: "s", namespace: "other" }]))).toContainEqual(expect.stringMatching(/^modules\.0\.image\.pullSecrets\.0: /));
  });

  it.each([
    ["an upper-case path", "registry.example.com/Team/mods:1"],
    ["an empty tag", "r/m:"],
    ["an empty path component", "r//m"],
    ["a short digest", "r/m@sha256:0123abcd"],
    ["a digest without algorithm", `r/m@${"a".repeat(64)}`],
    ["a leading separator", "-r/m"],
    ["a tag with a space", "r/m:v 1"],
    ["only a tag", ":1"],
    ["a scheme", "https://registry.example.com/m"],
    ["a tag starting with a dot", "r/m:.1"],
  ])("refuses %s", (_why, reference) => {
    expect(issues(image(reference))).toContainEqual(expect.stringMatching(/^modules\.0\.image\.reference: image\.reference must be an image reference/));
  });
});

describe("spec.nodeSelector label keys and values", () => {
  const KEY = "label keys are [prefix/]name";
  const VALUE = "label values are empty or at most 63 characters";
  const goodKeys = ["pool", "kubernetes.io/os", "node-role.kubernetes.io/worker", "A_b.c-D9", "a".repeat(63), `${"a.".repeat(126)}a/${"b".repeat(63)}`];
  const badKeys = [
    ["a name starting with a dash", "-a"],
    ["a name ending with a dot", "a."],
    ["two slashes", "a/b/c"],
    ["an upper-case prefix", "Example.com/a"],
    ["an empty name", "example.com/"],
    ["an empty prefix", "/a"],
    ["a name of 64 characters", "a".repeat(64)],
    ["a prefix of 254 characters", `${"a".repeat(254)}/x`],
    ["a space", "a b"],
    ["a colon", "a:b"],
  ];

  it.each(goodKeys)("accepts the key %s in matchLabels and matchExpressions", (key) => {
    expect(issues(selector({ matchLabels: { [key]: "x" } }))).toEqual([]);
    expect(issues(selector({ matchExpressions: [{ key, operator: "Exists" }] }))).toEqual([]);
  });

  it.each(badKeys)("refuses a key with %s in matchLabels", (_why, key) => {
    expect(issues(selector({ matchLabels: { [key]: "x" } }))).toContainEqual(expect.stringContaining(`nodeSelector.matchLabels: ${KEY}`));
  });

  it.each(badKeys)("refuses a key with %s in matchExpressions", (_why, key) => {
    expect(issues(selector({ matchExpressions: [{ key, operator: "Exists" }] }))).toContainEqual(
      expect.stringContaining(`nodeSelector.matchExpressions.0.key: ${KEY}`),
    );
  });

  it.each(["", "linux", "v1.2_3-x", "A", "a".repeat(63)])("accepts the value '%s'", (value) => {
    expect(issues(selector({ matchLabels: { k: value } }))).toEqual([]);
    expect(issues(selector({ matchExpressions: [{ key: "k", operator: "In", values: [value] }] }))).toEqual([]);
  });

  it.each(["-x", "x_", ".x", "a b", "a/b", "a:b", "é"])("refuses the value '%s'", (value) => {
    expect(issues(selector({ matchLabels: { k: value } }))).toContainEqual(expect.stringContaining(`nodeSelector.matchLabels.k: ${VALUE}`));
    expect(issues(selector({ matchExpressions: [{ key: "k", operator: "In", values: [value] }] }))).toContainEqual(
      expect.stringContaining(`nodeSelector.matchExpressions.0.values.0: ${VALUE}`),
    );
  });

  it("matchLabels holds at most 64 labels (the bound that lets the API server afford its CEL rule over the keys)", () => {
    const labels = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
    expect(issues(selector({ matchLabels: labels(64) }))).toEqual([]);
    expect(issues(selector({ matchLabels: labels(65) }))).toEqual(["nodeSelector.matchLabels: at most 64 entries"]);
  });
});

describe("spec.modules[].kernelReleasePattern syntax", () => {
  const pattern = (kernelReleasePattern: string) => ({ modules: [{ kernelReleasePattern, sha256: SHA, url: "https://x.example/a.ko" }] });

  it.each(["6\\.1\\.0-[]0-9]+-amd64", "6\\.1\\.0-[^]a]+"])("refuses a class starting with ] (RE2 and JavaScript read it differently): %s", (p) => {
    expect(issues(pattern(p))).toContainEqual(expect.stringContaining("no class starting with ]"));
  });

  it.each(["6{1001}", "[\\b]6"])("refuses what RE2 (the API server, the matcher) does not compile, though JavaScript does: %s", (p) => {
    expect(() => new RegExp(p)).not.toThrow();
    expect(issues(pattern(p))).toContainEqual("modules.0.kernelReleasePattern: kernelReleasePattern must be a valid regular expression");
  });

  it("accepts what RE2 compiles, though JavaScript does not (the API server accepts it, and the matcher is RE2)", () => {
    expect(() => new RegExp("^*6\\.1\\..*")).toThrow();
    expect(issues(pattern("^*6\\.1\\..*"))).toEqual([]);
  });
});

describe("KernelLivePatchNode spec.patches[].spec (PatchOnNode)", () => {
  // What the operator writes: a patch's spec as the API server defaulted it, projected for a node.
  const projection = (spec: unknown) => ({ name: "fix", uid: "u1", generation: 3, creationTimestamp: "2026-12-01T00:00:00Z", admitted: true, spec });
  const written = KernelLivePatchSpec.parse(module({ url: "https://x.example/a.ko" }));

  it("accepts the projection the operator writes, and reads its spec as the KernelLivePatch spec", () => {
    const r = PatchOnNode.safeParse(projection(written));
    expect(r.success).toBe(true);
    expect(r.data?.spec).toEqual(written);
    expect(r.data?.spec.rollout.soakSeconds).toBe(written.rollout.soakSeconds);
  });

  it("refuses a spec the KernelLivePatch itself refuses (the same rules, on reading)", () => {
    const r = PatchOnNode.safeParse(projection({ ...written, modules: [] }));
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.path.join("."))).toContain("spec.modules");
  });
});
