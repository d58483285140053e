/**
 * Property tests of the spec validator (`KernelLivePatchSpec.safeParse`): random and mutated specs.
 * Seeded (SEED) so a failure reproduces; fast-check prints the counterexample and its path.
 *
 *   - never throws, whatever it is given;
 *   - a spec built only from valid parts is accepted, and what it returns is accepted again
 *     unchanged (defaults applied once);
 *   - a loosely generated spec (each field drawn from valid and invalid values) is accepted
 *     exactly when an independent oracle says it is valid, and what is accepted satisfies the
 *     documented invariants;
 *   - one invalidating mutation of a valid spec is always refused.
 */
import fc from "fast-check";
import { RE2JS } from "re2js";
import { beforeAll, describe, expect, it } from "vitest";
import { loadReleasePatternEngine } from "./module-for-release.ts";
import { resolveMaxUnavailable } from "../operator/rollout/admit.ts";
import { isValidReleasePattern, moduleForRelease } from "./module-for-release.ts";
import { KernelLivePatchSpec } from "./schema.ts";

// The RE2 engine loads on demand (crds/module-for-release.ts); these tests match and validate patterns.
beforeAll(() => loadReleasePatternEngine());

const SEED = 20_240_611;
const RUNS = 200;
const run = <T>(prop: fc.IProperty<T> | fc.IAsyncProperty<T>, numRuns = RUNS) => fc.assert(prop as fc.IProperty<T>, { seed: SEED, numRuns });

// ---------------------------------------------------------------------------------------------
// Valid parts

const hex64 = fc.stringMatching(/^[a-f0-9]{64}$/);
const release = fc.stringMatching(/^[A-Za-z0-9._+~-]{1,40}$/);
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const pattern = fc.oneof(
  release.map(escapeRe),
  release.map((r) => `${escapeRe(r)}.*`),
  fc.constantFrom("6\\.1\\.0-[0-9]+-amd64", "5\\.10\\..*", "[0-9.]+-cloud-amd64", ".*"),
);
const dnsLabel = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,12}[a-z0-9])?$/);
const configMap = fc.record({ namespace: dnsLabel, name: dnsLabel, key: fc.stringMatching(/^[-._a-zA-Z0-9]{1,20}$/) });
const url = fc.stringMatching(/^[a-z0-9./-]{1,30}$/).map((p) => `https://artifacts.example.com/${p}.ko`);
const pathComponent = fc.stringMatching(/^[a-z0-9]{1,6}((\.|_|__|-{1,2})[a-z0-9]{1,6}){0,2}$/);
const imageReference = fc
  .tuple(
    fc.option(fc.constantFrom("registry.example.com", "localhost:5000", "10.0.0.5:443", "[::1]:5000", "ghcr.io"), { nil: undefined }),
    fc.array(pathComponent, { minLength: 1, maxLength: 3 }),
    fc.option(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}$/), { nil: undefined }),
    // Every module image is pinned: a drawn digest, or a fixed one (drawn as an option so that the
    // rest of the generated specs stay what this seed gave before digests were required).
    fc.option(hex64.map((h) => `sha256:${h}`), { nil: undefined }),
  )
  .map(([host, path, tag, digest]) => `${host === undefined ? "" : `${host}/`}${path.join("/")}${tag === undefined ? "" : `:${tag}`}@${digest ?? `sha256:${"0".repeat(64)}`}`);
const image = fc.record({ reference: imageReference, path: fc.stringMatching(/^\/[a-z0-9_/-]{0,20}$/).map((p) => `${p}.ko`) });
const source = fc.oneof(
  configMap.map((c) => ({ configMap: c })),
  url.map((u) => ({ url: u })),
  image.map((i) => ({ image: i })),
);
const target = fc.oneof(release.map((r) => ({ kernelRelease: r })), pattern.map((p) => ({ kernelReleasePattern: p })));
const moduleName = fc.stringMatching(/^[A-Za-z0-9_-]{1,55}$/);
const validModule = fc
  .tuple(target, hex64, source, fc.option(moduleName, { nil: undefined }))
  .map(([t, sha256, s, name]) => ({ ...t, sha256, ...s, ...(name === undefined ? {} : { moduleName: name }) }));
const targetKey = (m: { kernelRelease?: string; kernelReleasePattern?: string }) =>
  m.kernelRelease !== undefined ? `r:${m.kernelRelease}` : `p:${m.kernelReleasePattern}`;
const validModules = fc.uniqueArray(validModule, { minLength: 1, maxLength: 6, selector: targetKey });
const maxUnavailable = fc.oneof(fc.integer({ min: 1, max: 100_000 }), fc.integer({ min: 1, max: 100 }).map((p) => `${p}%`));
const rollout = fc.record(
  {
    maxUnavailable,
    paused: fc.boolean(),
    failureThreshold: fc.integer({ min: 1, max: 100_000 }),
    soakSeconds: fc.integer({ min: 0, max: 86_400 }),
  },
  { requiredKeys: [] },
);
const labelValue = fc.oneof(fc.constant(""), fc.stringMatching(/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?$/));
const labelKey = fc
  .tuple(fc.option(fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,6}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,6}[a-z0-9])?){0,2}$/), { nil: undefined }), fc.stringMatching(/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?$/))
  .map(([prefix, name]) => (prefix === undefined ? name : `${prefix}/${name}`));
const expression = fc.oneof(
  fc.record({ key: labelKey, operator: fc.constantFrom("In", "NotIn"), values: fc.array(labelValue, { minLength: 1, maxLength: 4 }) }),
  fc.record({ key: labelKey, operator: fc.constantFrom("Exists", "DoesNotExist") }),
);
const nodeSelector = fc.record(
  { matchLabels: fc.dictionary(labelKey, labelValue, { maxKeys: 3 }), matchExpressions: fc.array(expression, { maxLength: 3 }) },
  { requiredKeys: [] },
);
const cve = fc.tuple(fc.integer({ min: 1999, max: 2099 }), fc.integer({ min: 1000, max: 9_999_999 })).map(([y, n]) => `CVE-${y}-${n}`);
const validSpec = fc.record(
  {
    state: fc.constantFrom("Loaded", "Staged", "Unloaded"),
    description: fc.string({ maxLength: 60 }),
    cves: fc.uniqueArray(cve, { maxLength: 5 }),
    modules: validModules,
    nodeSelector,
    rollout,
    // At most half the default progress deadline (600 s): a valid spec leaves room for a stalled load.
    transitionTimeoutSeconds: fc.integer({ min: 15, max: 300 }),
  },
  { requiredKeys: ["modules"] },
);

type Spec = Record<string, unknown> & { modules: Array<Record<string, unknown>> };

// ---------------------------------------------------------------------------------------------
// The invariants every accepted spec satisfies, written independently of the schema

const SHA = /^[a-f0-9]{64}$/;
const PERCENT = /^(100|[1-9][0-9]?)%$/;

/** Only the regular-expression syntax RE2 and JavaScript read alike (checked character by character). */
function portable(p: string): boolean {
  const escapable = new Set(".\\+*?()|[]{}^$/-dDwWsSbBnrtf");
  for (let i = 0; i < p.length; i++) {
    if (p.charCodeAt(i) > 0x7f) return false;
    if (p[i] === "\\" && i + 1 < p.length && !escapable.has(p[i + 1]!)) return false;
    if (p[i] === "(" && p[i + 1] === "?" && i + 2 < p.length && p[i + 2] !== ":") return false;
    if (p.startsWith("[[:", i) || p.startsWith("[]", i) || p.startsWith("[^]", i)) return false;
  }
  return true;
}

/** RE2 compiles it: what the API server (CEL) checks, and the engine the operator and the agents match with. */
function compiles(p: string): boolean {
  try {
    RE2JS.compile(p);
    return true;
  } catch {
    return false;
  }
}

function invariantViolations(spec: KernelLivePatchSpec): string[] {
  const out: string[] = [];
  const say = (ok: boolean, what: string) => void (ok ? undefined : out.push(what));
  say(spec.modules.length >= 1 && spec.modules.length <= 32, "1..32 modules");
  for (const [i, m] of spec.modules.entries()) {
    say([m.configMap, m.url, m.image].filter((s) => s !== undefined).length === 1, `modules[${i}]: exactly one source`);
    say((m.kernelRelease === undefined) !== (m.kernelReleasePattern === undefined), `modules[${i}]: exactly one of kernelRelease/kernelReleasePattern`);
    say(SHA.test(m.sha256), `modules[${i}]: sha256 is 64 lowercase hex`);
    say(m.url === undefined || m.url.startsWith("https://"), `modules[${i}]: https url`);
    say(m.kernelReleasePattern === undefined || compiles(m.kernelReleasePattern), `modules[${i}]: pattern compiles`);
    say(m.kernelReleasePattern === undefined || portable(m.kernelReleasePattern), `modules[${i}]: pattern in the syntax RE2 and JavaScript share`);
    say(m.kernelRelease === undefined || /^[A-Za-z0-9._+~-]{1,128}$/.test(m.kernelRelease), `modules[${i}]: release spelling`);
  }
  const releases = spec.modules.flatMap((m) => (m.kernelRelease === undefined ? [] : [m.kernelRelease]));
  const patterns = spec.modules.flatMap((m) => (m.kernelReleasePattern === undefined ? [] : [m.kernelReleasePattern]));
  say(new Set(releases).size === releases.length, "unique kernelRelease");
  say(new Set(patterns).size === patterns.length, "unique kernelReleasePattern");
  const mu = spec.rollout.maxUnavailable;
  say(typeof mu === "number" ? Number.isSafeInteger(mu) && mu >= 1 : PERCENT.test(mu), "maxUnavailable is a count >= 1 or 1%..100%");
  say(Number.isInteger(spec.rollout.failureThreshold) && spec.rollout.failureThreshold >= 1 && spec.rollout.failureThreshold <= 100_000, "failureThreshold 1..100000");
  say(Number.isInteger(spec.rollout.soakSeconds) && spec.rollout.soakSeconds >= 0 && spec.rollout.soakSeconds <= 86_400, "soakSeconds 0..86400");
  say(typeof spec.rollout.paused === "boolean", "paused defaulted");
  say(Number.isInteger(spec.transitionTimeoutSeconds) && spec.transitionTimeoutSeconds >= 15 && spec.transitionTimeoutSeconds <= 3600, "transitionTimeoutSeconds 15..3600");
  say((spec.rollout.progressDeadlineSeconds ?? 600) >= 2 * spec.transitionTimeoutSeconds, "progress deadline >= 2 x transition timeout");
  say(["Loaded", "Staged", "Unloaded"].includes(spec.state), "state");
  for (const e of spec.nodeSelector?.matchExpressions ?? []) {
    say(["In", "NotIn"].includes(e.operator) === (e.values !== undefined && e.values.length > 0), `selector ${e.key}: values iff In/NotIn`);
  }
  for (const c of spec.cves ?? []) say(/^CVE-[0-9]{4}-[0-9]{4,}$/.test(c), `cve ${c}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Loose specs: each field drawn from valid and invalid values, with an oracle for the whole domain

const looseSha = fc.oneof(hex64, hex64.map((s) => s.toUpperCase()), hex64.map((s) => s.slice(1)), hex64.map((s) => `${s}0`), fc.constantFrom("", "z".repeat(64)));
const loosePattern = fc.oneof(pattern, fc.constantFrom("(", "[a-", "a{2,1}", "\\", "*", "(?<n>a)\\k<n>"));
const looseRelease = fc.oneof(fc.constantFrom("6.1.0-56-amd64", "6.1.0-57-amd64"), release, fc.constantFrom("", "6.1 0", "6.1/0", "x".repeat(129)));
type Edit = (m: Record<string, unknown>) => void;
const set = <T>(key: string, values: fc.Arbitrary<T>): fc.Arbitrary<Edit> => values.map((v) => (m) => void (m[key] = v));
const drop = (key: string): fc.Arbitrary<Edit> => fc.constant((m) => void delete m[key]);
/** A valid module with up to two field edits, each of which may or may not break it. */
const looseModule = fc
  .tuple(
    validModule,
    fc.array(
      fc.oneof(
        set("kernelRelease", looseRelease),
        set("kernelReleasePattern", loosePattern),
        drop("kernelRelease"),
        drop("kernelReleasePattern"),
        set("sha256", looseSha),
        drop("sha256"),
        set("configMap", configMap),
        set("url", fc.oneof(url, fc.constantFrom("http://insecure.example.com/a.ko", "https://", "ftp://x/y.ko"))),
        set("image", image),
        drop("configMap"),
        drop("url"),
        set("moduleName", fc.oneof(moduleName, fc.constantFrom("", "a b", "a".repeat(56), "fix.ko"))),
        set("extra", fc.constant("unknown field")),
      ),
      { maxLength: 1 },
    ),
  )
  .map(([m, edits]) => {
    const out: Record<string, unknown> = { ...m };
    for (const edit of edits) edit(out);
    return out;
  });
/** Mostly valid, sometimes not: each field of a loose spec. */
const mostly = <T, U>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<U>) => fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: invalid, weight: 1 });
const looseSpec = fc.record(
  {
    state: mostly(fc.constantFrom("Loaded", "Staged", "Unloaded"), fc.constantFrom("Running", "loaded", "")),
    modules: mostly(fc.array(looseModule, { minLength: 1, maxLength: 3 }), fc.constant([])),
    rollout: fc.record(
      {
        maxUnavailable: mostly(
          fc.oneof(fc.integer({ min: 1, max: 300 }), fc.constantFrom("100%", "50%", "1%")),
          fc.constantFrom(0, -3, 0.5, 1.5, Number.NaN, "0%", "101%", "5", "05%", " 10%", "10 %"),
        ),
        failureThreshold: mostly(fc.integer({ min: 1, max: 100_000 }), fc.constantFrom(0, -1, 100_001, 2.5)),
        soakSeconds: mostly(fc.integer({ min: 0, max: 86_400 }), fc.constantFrom(-1, 86_401)),
      },
      { requiredKeys: [] },
    ),
    transitionTimeoutSeconds: mostly(fc.integer({ min: 15, max: 3600 }), fc.constantFrom(14, 3601, 0)),
  },
  { requiredKeys: ["modules"] },
);

function oracleModuleValid(m: Record<string, unknown>): boolean {
  if ("extra" in m) return false; // strict objects refuse unknown fields
  const r = m.kernelRelease as string | undefined;
  const p = m.kernelReleasePattern as string | undefined;
  if ((r === undefined) === (p === undefined)) return false;
  if (r !== undefined && !/^[A-Za-z0-9._+~-]{1,128}$/.test(r)) return false;
  if (p !== undefined && (p.length < 1 || p.length > 256 || !compiles(p) || !portable(p))) return false;
  if (!SHA.test(m.sha256 as string)) return false;
  if ([m.configMap, m.url, m.image].filter((s) => s !== undefined).length !== 1) return false;
  if (m.url !== undefined && !/^https:\/\/[^\s]+$/.test(m.url as string)) return false;
  if (m.image !== undefined && !/@sha256:[a-f0-9]{64}$/.test((m.image as { reference: string }).reference)) return false;
  const n = m.moduleName as string | undefined;
  return n === undefined || /^[A-Za-z0-9_-]{1,55}$/.test(n);
}

function oracleValid(s: Record<string, unknown>): boolean {
  const modules = s.modules as Array<Record<string, unknown>>;
  if (modules.length < 1 || modules.length > 32 || !modules.every(oracleModuleValid)) return false;
  const releases = modules.flatMap((m) => (m.kernelRelease === undefined ? [] : [m.kernelRelease]));
  const patterns = modules.flatMap((m) => (m.kernelReleasePattern === undefined ? [] : [m.kernelReleasePattern]));
  if (new Set(releases).size !== releases.length || new Set(patterns).size !== patterns.length) return false;
  if (s.state !== undefined && !["Loaded", "Staged", "Unloaded"].includes(s.state as string)) return false;
  const t = s.transitionTimeoutSeconds as number | undefined;
  if (t !== undefined && (t < 15 || t > 3600)) return false;
  const r = (s.rollout ?? {}) as Record<string, unknown>;
  const mu = r.maxUnavailable;
  if (mu !== undefined && !(typeof mu === "number" ? Number.isInteger(mu) && mu >= 1 : PERCENT.test(mu as string))) return false;
  const ft = r.failureThreshold as number | undefined;
  if (ft !== undefined && (!Number.isInteger(ft) || ft < 1 || ft > 100_000)) return false;
  const soak = r.soakSeconds as number | undefined;
  if (soak !== undefined && !(soak >= 0 && soak <= 86_400)) return false;
  return 600 >= 2 * (t ?? 75); // the default progress deadline (the generator never sets one)
}

// ---------------------------------------------------------------------------------------------
// Mutations that each make a valid spec invalid

type Mutation = { name: string; apply: (s: Spec, i: number) => void };
const at = (s: Spec, i: number) => s.modules[i % s.modules.length]!;
const MUTATIONS: Mutation[] = [
  { name: "no source", apply: (s, i) => void ["configMap", "url", "image"].forEach((k) => delete at(s, i)[k]) },
  { name: "two sources", apply: (s, i) => Object.assign(at(s, i), at(s, i).url ? { image: { reference: "r", path: "/a.ko" } } : { url: "https://x/a.ko" }) },
  { name: "release and pattern", apply: (s, i) => Object.assign(at(s, i), { kernelRelease: "6.1.0-1-amd64", kernelReleasePattern: "6\\.1.*" }) },
  { name: "neither release nor pattern", apply: (s, i) => void (delete at(s, i).kernelRelease, delete at(s, i).kernelReleasePattern) },
  { name: "uppercase sha256", apply: (s, i) => void (at(s, i).sha256 = String(at(s, i).sha256).toUpperCase().replace(/^[0-9]/, "A")) },
  { name: "short sha256", apply: (s, i) => void (at(s, i).sha256 = String(at(s, i).sha256).slice(1)) },
  { name: "non-hex sha256", apply: (s, i) => void (at(s, i).sha256 = `g${String(at(s, i).sha256).slice(1)}`) },
  { name: "duplicate release", apply: (s) => void s.modules.push({ ...s.modules[0]!, kernelRelease: "dup", kernelReleasePattern: undefined }, { ...s.modules[0]!, kernelRelease: "dup", kernelReleasePattern: undefined }) },
  { name: "duplicate pattern", apply: (s) => void s.modules.push({ ...s.modules[0]!, kernelRelease: undefined, kernelReleasePattern: "x.*" }, { ...s.modules[0]!, kernelRelease: undefined, kernelReleasePattern: "x.*" }) },
  { name: "invalid pattern", apply: (s, i) => void (delete at(s, i).kernelRelease, (at(s, i).kernelReleasePattern = "6.1.(")) },
  { name: "http url", apply: (s, i) => void (["configMap", "image"].forEach((k) => delete at(s, i)[k]), (at(s, i).url = "http://x/a.ko")) },
  ...["https://a:b:c/x.ko", "https:///x.ko", "https://[1:2]/x.ko", "https://h/%zz.ko", "https://h\\x.ko"].map((url) => ({
    name: `url ${url}`,
    apply: (s: Spec, i: number) => void (["configMap", "image"].forEach((k) => delete at(s, i)[k]), (at(s, i).url = url)),
  })),
  { name: "image reference with a tag and no digest", apply: (s, i) => void (["configMap", "url"].forEach((k) => delete at(s, i)[k]), (at(s, i).image = { reference: "registry.example.com/mods:1", path: "/a.ko" })) },
  { name: "image reference with an upper-case path", apply: (s, i) => void (["configMap", "url"].forEach((k) => delete at(s, i)[k]), (at(s, i).image = { reference: "registry.example.com/Mods:1", path: "/a.ko" })) },
  { name: "pattern with a class starting with ]", apply: (s, i) => void (delete at(s, i).kernelRelease, (at(s, i).kernelReleasePattern = "6\\.1\\.0-[]0-9]+")) },
  { name: "pattern RE2 refuses and JavaScript compiles", apply: (s, i) => void (delete at(s, i).kernelRelease, (at(s, i).kernelReleasePattern = "6{1001}")) },
  ...["-a", "a/b/c", "Example.com/a", `${"a".repeat(254)}/x`, "a".repeat(64)].flatMap((key) => [
    { name: `matchExpressions key ${key}`, apply: (s: Spec) => void (s.nodeSelector = { matchExpressions: [{ key, operator: "Exists" }] }) },
    { name: `matchLabels key ${key}`, apply: (s: Spec) => void (s.nodeSelector = { matchLabels: { [key]: "x" } }) },
  ]),
  ...["-x", "x_", "a b", "a/b"].flatMap((value) => [
    { name: `matchExpressions value ${value}`, apply: (s: Spec) => void (s.nodeSelector = { matchExpressions: [{ key: "k", operator: "In", values: [value] }] }) },
    { name: `matchLabels value ${value}`, apply: (s: Spec) => void (s.nodeSelector = { matchLabels: { k: value } }) },
  ]),
  { name: "65 matchLabels", apply: (s) => void (s.nodeSelector = { matchLabels: Object.fromEntries(Array.from({ length: 65 }, (_, k) => [`k${k}`, "v"])) }) },
  { name: "unknown module field", apply: (s, i) => void (at(s, i).checksum = "x") },
  { name: "no modules", apply: (s) => void (s.modules = []) },
  { name: "33 modules", apply: (s) => void (s.modules = Array.from({ length: 33 }, (_, k) => ({ ...s.modules[0]!, kernelRelease: `r${k}`, kernelReleasePattern: undefined }))) },
  { name: "maxUnavailable 0", apply: (s) => void (s.rollout = { ...(s.rollout as object), maxUnavailable: 0 }) },
  { name: "maxUnavailable -1", apply: (s) => void (s.rollout = { ...(s.rollout as object), maxUnavailable: -1 }) },
  { name: "maxUnavailable 1.5", apply: (s) => void (s.rollout = { ...(s.rollout as object), maxUnavailable: 1.5 }) },
  { name: "maxUnavailable 0%", apply: (s) => void (s.rollout = { ...(s.rollout as object), maxUnavailable: "0%" }) },
  { name: "maxUnavailable 101%", apply: (s) => void (s.rollout = { ...(s.rollout as object), maxUnavailable: "101%" }) },
  { name: "maxUnavailable '5'", apply: (s) => void (s.rollout = { ...(s.rollout as object), maxUnavailable: "5" }) },
  { name: "failureThreshold 0", apply: (s) => void (s.rollout = { ...(s.rollout as object), failureThreshold: 0 }) },
  { name: "negative soak", apply: (s) => void (s.rollout = { ...(s.rollout as object), soakSeconds: -1 }) },
  { name: "transition timeout 14", apply: (s) => void (s.transitionTimeoutSeconds = 14) },
  { name: "transition timeout above half the default progress deadline", apply: (s) => void (s.transitionTimeoutSeconds = 301) },
  { name: "unknown state", apply: (s) => void (s.state = "Running") },
  { name: "In without values", apply: (s) => void (s.nodeSelector = { matchExpressions: [{ key: "k", operator: "In" }] }) },
  { name: "Exists with values", apply: (s) => void (s.nodeSelector = { matchExpressions: [{ key: "k", operator: "Exists", values: ["v"] }] }) },
  { name: "bad cve", apply: (s) => void (s.cves = ["CVE-24-1"]) },
  { name: "unknown spec field", apply: (s) => void (s.force = true) },
];

/** JSON drops `undefined` members, as the API server would. */
const asJson = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

describe("KernelLivePatchSpec.safeParse (property)", () => {
  it("never throws, whatever it is given", () => {
    run(
      fc.property(fc.oneof(fc.anything(), fc.jsonValue(), fc.record({ modules: fc.array(fc.anything(), { maxLength: 3 }), rollout: fc.anything() })), (value) => {
        const r = KernelLivePatchSpec.safeParse(value);
        expect(typeof r.success).toBe("boolean");
        if (r.success) expect(invariantViolations(r.data)).toEqual([]);
      }),
      500,
    );
  });

  it("accepts every spec built from valid parts, and accepts its own output unchanged", () => {
    run(
      fc.property(validSpec, (spec) => {
        const r = KernelLivePatchSpec.safeParse(spec);
        expect(r.error?.issues ?? []).toEqual([]);
        if (!r.success) return;
        expect(invariantViolations(r.data)).toEqual([]);
        const again = KernelLivePatchSpec.safeParse(asJson(r.data));
        expect(again.success && again.data).toEqual(r.data);
      }),
    );
  });

  it("accepts a loose spec exactly when the oracle says it is valid", () => {
    const seen = { accepted: 0, refused: 0 };
    run(
      fc.property(looseSpec.map(asJson), (spec) => {
        const r = KernelLivePatchSpec.safeParse(spec);
        expect({ accepted: r.success, spec }).toEqual({ accepted: oracleValid(spec), spec });
        if (r.success) expect(invariantViolations(r.data)).toEqual([]);
        seen[r.success ? "accepted" : "refused"]++;
      }),
      600,
    );
    // The generator must exercise both sides of the oracle (counts include shrinking runs).
    expect(Math.min(seen.accepted, seen.refused)).toBeGreaterThan(60);
  });

  it("refuses every single invalidating mutation of a valid spec", () => {
    run(
      fc.property(validSpec, fc.constantFrom(...MUTATIONS), fc.nat(), (spec, mutation, i) => {
        const mutated = structuredClone(spec) as Spec;
        mutation.apply(mutated, i);
        const r = KernelLivePatchSpec.safeParse(asJson(mutated));
        expect({ mutation: mutation.name, accepted: r.success }).toEqual({ mutation: mutation.name, accepted: false });
      }),
      600,
    );
  });

  it("an accepted spec picks a module for any release without throwing, and only a matching one", () => {
    run(
      fc.property(validSpec, fc.oneof(release, fc.string({ maxLength: 40 })), (spec, rel) => {
        const r = KernelLivePatchSpec.safeParse(spec);
        if (!r.success) return;
        const m = moduleForRelease(r.data.modules, rel);
        if (!m) return;
        if (m.kernelRelease !== undefined) expect(m.kernelRelease).toBe(rel);
        else expect(new RegExp(`^(?:${m.kernelReleasePattern})$`).test(rel)).toBe(true);
      }),
    );
  });

  it("maxUnavailable of an accepted spec resolves to 1..max(1, targeted) slots for a percent, >= 1 for a count", () => {
    run(
      fc.property(validSpec, fc.integer({ min: 0, max: 5000 }), (spec, targeted) => {
        const r = KernelLivePatchSpec.safeParse(spec);
        if (!r.success) return;
        const mu = r.data.rollout.maxUnavailable;
        const slots = resolveMaxUnavailable(mu, targeted);
        expect(Number.isInteger(slots) && slots >= 1).toBe(true);
        if (typeof mu === "string") expect(slots).toBeLessThanOrEqual(Math.max(1, targeted));
        else expect(slots).toBe(mu);
      }),
    );
  });
});

// kernelReleasePattern is checked by the API server with CEL's matches(), which is RE2 (Go
// regexp), and matched by the operator and the agents with JavaScript's RegExp. Where the two
// disagree (RE2-only syntax such as `(?i)`, `(?P<n>…)`; syntax both accept with other meanings such
// as `[[:digit:]]`, `\pN`), a patch would silently do nothing or match no node. The schema allows
// only the syntax both read alike (PORTABLE_PATTERN_VIOLATION); test/integration/api.test.ts checks
// that the API server refuses the same patterns.
describe("kernelReleasePattern: the API server's RE2 and the controllers' JavaScript agree", () => {
  const spec = (kernelReleasePattern: string) => ({ modules: [{ kernelReleasePattern, sha256: "a".repeat(64), url: "https://x.example/a.ko" }] });
  it.each(["(?i)6\\.1\\.0-.*-AMD64", "(?P<abi>6\\.1\\.0-[0-9]+)-amd64", "6\\.1\\.0-[[:digit:]]+-amd64", "6\\.1\\.0-\\pN+-amd64", "6\\.1\\.0-\\d+\\z", "6(?=\\.1)", "(6)\\1", "6\\x41", "6\\.1\\.0-56-amd64\u00e9"])(
    "a pattern RE2 and JavaScript read differently is refused: %s",
    (p) => {
      const r = KernelLivePatchSpec.safeParse(spec(p));
      expect(r.success).toBe(false);
      expect(JSON.stringify(r.error?.issues)).toContain("syntax RE2 and JavaScript share");
    },
  );
  it.each([
    ["6\\.1\\.0-5[0-9]-cloud-amd64", "6.1.0-56-cloud-amd64"],
    ["^6\\.1\\.0-\\d+-amd64$", "6.1.0-56-amd64"],
    ["(?:5\\.10|6\\.1)\\.0-.*", "6.1.0-56-amd64"],
    ["6\\.1\\.0-[^-]+-(amd64|arm64)", "6.1.0-56-arm64"],
  ])("the shared syntax is accepted and matches: %s on %s", (p, release) => {
    const r = KernelLivePatchSpec.safeParse(spec(p));
    expect(r.success && moduleForRelease(r.data.modules, release)).toBeTruthy();
  });
  it("random ASCII patterns: whatever the schema accepts compiles in RE2 (the matcher's engine), without flags or lookarounds", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(..."6.1\\0-[]()?:*+|^$dpPzx{}<>=!i".split("")), maxLength: 16 }), (p) => {
        const r = KernelLivePatchSpec.safeParse(spec(p));
        if (!r.success) return;
        expect(isValidReleasePattern(p)).toBe(true);
        expect(p).not.toMatch(/\(\?[^:]/);
      }),
    );
  });
});

