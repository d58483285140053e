/**
 * The kubectl plugin against the real API server, with the operator rolling up entries written as
 * agents write them: the CVE posture in each patch's status and kubectl get's CVEs column, the
 * plugin's commands in this process (golden outputs at a fixed time), and the bundled executable
 * run by kubectl itself as a plugin found on PATH.
 *
 * The fleet (the same as kubectl-klp/fleet-view.test.ts): kp-nft fixes CVE-2099-1086 — replaced
 * live on kp-n1 by the cumulative kp-nft-v2, failed on kp-n2, no module for kp-n3's kernel, kp-n4
 * has not reported. kp-nft-v2 fixes it and CVE-2099-0002 — live on kp-n1, not reported on kp-n2.
 * kp-misc lists no CVE and is live on kp-n2. (CVE numbers no other test's patch lists.)
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_VERSION, GROUP, NODE_KIND, NODE_PLURAL, VERSION, type NodeEntry, type NodePatchEntry } from "../../crds/schema.ts";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { KubeHttp } from "../../kube/http-client.ts";
import { main } from "../../kubectl-klp/cli.ts";
import { httpFleetApi } from "../../kubectl-klp/fleet-api.ts";
import { agentFieldManager } from "../../node-agent/kube/agent-api.ts";
import { bundle } from "../../scripts/bundle.ts";
import type { ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";
import { Cluster, controlPlane, installCrd, kubeconfigPath, startOperator, until } from "../support/klp.ts";

const NS = "klp-plugin-test";
const RELEASE = "6.1.0-56-amd64";
const OTHER_RELEASE = "6.12.0-1-amd64";
const CVE_A = "CVE-2099-1086";
const CVE_B = "CVE-2099-0002";
const FLEET = { "klp-plugin-test/fleet": "yes" };
const V2 = { "klp-plugin-test/v2": "yes" };
const mod = (sha: string) => ({ kernelRelease: RELEASE, sha256: sha.repeat(64), configMap: { namespace: NS, name: "mods", key: "fix.ko" } });
const SINCE = "2026-12-03T10:00:00Z";
/** The plugin's clock in this process: five minutes after every entry's lastTransitionTime. */
const NOW = new Date("2026-12-03T10:05:00Z");

const cluster = new Cluster();
let cp: ControlPlaneClient;
let operator: Awaited<ReturnType<typeof startOperator>>;
let http: KubeHttp;
let pluginDir: string;

/** Writes a node's entry as its agent does: a server-side apply of the node's entries, once the operator projected the patch. */
async function agentWrites(patch: string, entry: Partial<NodeEntry> & { nodeName: string; phase: NodeEntry["phase"] }): Promise<void> {
  const p = await cluster.getPatch(patch);
  const objPath = `/apis/${GROUP}/${VERSION}/${NODE_PLURAL}/${entry.nodeName}`;
  type NodeObject = { spec?: { patches?: Array<{ name: string }> }; status?: { entries?: NodePatchEntry[] } };
  const obj = await until(`${patch} projected onto ${entry.nodeName}`, async () => {
    const o = await http.json<NodeObject>("GET", objPath).catch(() => undefined);
    return o?.spec?.patches?.some((x) => x.name === patch) ? o : undefined;
  });
  const others = (obj.status?.entries ?? []).filter((e) => e.patch !== patch);
  const mine = { patch, patchUID: p?.metadata.uid, observedGeneration: p?.metadata.generation ?? 1, lastTransitionTime: SINCE, kernelRelease: RELEASE, ...entry };
  await http.json("PATCH", `${objPath}/status`, {
    query: { fieldManager: agentFieldManager(entry.nodeName), force: true },
    contentType: "application/apply-patch+yaml",
    body: { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: entry.nodeName }, status: { entries: [...others, mine] } },
  });
}

/** The plugin's main in this process, at NOW, against the test control plane. */
async function klp(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, {
    stdout: (t) => void (out += t),
    stderr: (t) => void (err += t),
    env: { KUBECONFIG: kubeconfigPath() },
    now: () => NOW,
    connect: (kubeconfig) => httpFleetApi(kubeconfigConnection(kubeconfig)),
  });
  return { code, out, err };
}

/** `kubectl klp ...`: kubectl finds the bundled plugin on PATH and runs it with the node running this test. */
function kubectlPlugin(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      path.join(cp.binDir, "kubectl"),
      ["klp", ...args],
      { env: { ...process.env, KUBECONFIG: kubeconfigPath(), PATH: [pluginDir, path.dirname(process.execPath), process.env.PATH].join(path.delimiter) }, timeout: 60_000, encoding: "utf8" },
      (e, stdout, stderr) => {
        if (e && typeof (e as NodeJS.ErrnoException).code === "string") reject(e);
        else resolve({ code: e ? Number(e.code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

beforeAll(async () => {
  cp = await controlPlane();
  await installCrd(cp);
  await cluster.ensureNamespace(NS);
  for (const [name, labels] of [["kp-n1", { ...FLEET, ...V2 }], ["kp-n2", { ...FLEET, ...V2 }], ["kp-n3", FLEET], ["kp-n4", FLEET]] as const) {
    await cluster.createNode(name, labels);
  }
  operator = await startOperator({ KLP_NAMESPACE: NS, KLP_AGENT_IMAGE: "kpatch-agent:test" }, "plugin-operator");
  http = new KubeHttp(kubeconfigConnection(kubeconfigPath()));
  await cluster.createPatch("kp-nft", { cves: [CVE_A], modules: [mod("a")], nodeSelector: { matchLabels: FLEET } });
  await cluster.createPatch("kp-nft-v2", { cves: [CVE_A, CVE_B], modules: [mod("b")], nodeSelector: { matchLabels: V2 } });
  await cluster.createPatch("kp-misc", { modules: [mod("c")], nodeSelector: { matchLabels: { "kubernetes.io/hostname": "kp-n2" } } });
  await agentWrites("kp-nft", { nodeName: "kp-n1", phase: "Replaced", replacedBy: "kp-nft-v2", moduleName: "livepatch_nft", taintFlags: "OK" });
  await agentWrites("kp-nft-v2", { nodeName: "kp-n1", phase: "Loaded", moduleName: "livepatch_nft_v2", taintFlags: "OK", lastTransitionTime: "2026-12-03T10:01:00Z" });
  await agentWrites("kp-nft", { nodeName: "kp-n2", phase: "Failed", reason: "VermagicMismatch", moduleName: "livepatch_nft", taintFlags: "K" });
  await agentWrites("kp-misc", { nodeName: "kp-n2", phase: "Loaded", moduleName: "livepatch_misc", taintFlags: "K", lastTransitionTime: "2026-12-03T09:00:00Z" });
  await agentWrites("kp-nft", { nodeName: "kp-n3", phase: "NotApplicable", kernelRelease: OTHER_RELEASE, reason: "NoModuleForRelease" });
  pluginDir = await mkdtemp(path.join(tmpdir(), "klp-plugin-bin-"));
  await bundle("kubectl-klp/main.ts", path.join(pluginDir, "kubectl-klp"));
});

afterAll(async () => {
  for (const p of ["kp-nft", "kp-nft-v2", "kp-misc"]) await cluster.forceDeletePatch(p);
  await operator?.stop();
  http?.close();
  for (const n of ["kp-n1", "kp-n2", "kp-n3", "kp-n4"]) await cluster.deleteNode(n);
  if (pluginDir) await rm(pluginDir, { recursive: true, force: true });
});

describe("the CVE posture in the patch status", () => {
  it("the operator counts, per CVE, the targeted nodes fixed, exposed and out of reach", async () => {
    const summary = async (name: string) => (await cluster.getPatch(name))?.status?.summary;
    await until("kp-nft's CVE counts", async () => isDeepStrictEqual((await summary("kp-nft"))?.cves, [{ id: CVE_A, fixed: 1, exposed: 2, notApplicable: 1 }]));
    // Each patch's status is rolled up on its own: kp-nft's counts being right says nothing of
    // kp-nft-v2's yet (kp-n1's Loaded entry may still be on its way into it).
    const v2 = { cves: [{ id: CVE_B, fixed: 1, exposed: 1, notApplicable: 0 }, { id: CVE_A, fixed: 1, exposed: 1, notApplicable: 0 }], cveExposure: `${CVE_B}, ${CVE_A} (1 exposed)` };
    const last = await until("kp-nft-v2's CVE counts", async () => {
      const s = await summary("kp-nft-v2");
      return isDeepStrictEqual(s?.cves, v2.cves) && s?.cveExposure === v2.cveExposure ? s : undefined;
    }).catch(async (e: unknown) => ({ timedOut: String(e), summary: await summary("kp-nft-v2") }));
    expect(last).toMatchObject(v2);
    expect(await summary("kp-misc")).not.toHaveProperty("cves");
  });

  it("kubectl get klp shows them in the CVEs column", async () => {
    const r = await until("kubectl get klp with both patches' CVEs columns filled", async () => {
      const r = await cp.kubectl(["get", "klp", "kp-nft", "kp-nft-v2", "kp-misc"]);
      return r.code === 0 && r.stdout.includes("(2 exposed)") && r.stdout.includes("(1 exposed)") ? r : undefined;
    });
    const [header, ...rows] = r.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^NAME\s+READY\s+FAILED\s+STATE\s+STATUS\s+AGE\s+CVES$/);
    const cvesAt = header!.indexOf("CVES");
    expect(rows.map((row) => [row.split(/\s+/)[0], row.slice(cvesAt).trim()])).toEqual([
      ["kp-nft", `${CVE_A} (2 exposed)`],
      ["kp-nft-v2", `${CVE_B}, ${CVE_A} (1 exposed)`],
      ["kp-misc", ""],
    ]);
  });
});

describe("kubectl klp, in this process", () => {
  it("status PATCH: each node's release, phase, taint, module, since when", async () => {
    expect(await klp("status", "kp-nft")).toEqual({
      code: 0,
      err: "",
      out: [
        "NODE    RELEASE          PHASE           TAINT   MODULE          SINCE   REASON",
        "kp-n1   6.1.0-56-amd64   Replaced        OK      livepatch_nft   5m      -",
        "kp-n2   6.1.0-56-amd64   Failed          K       livepatch_nft   5m      VermagicMismatch",
        "kp-n3   6.12.0-1-amd64   NotApplicable   -       -               5m      NoModuleForRelease",
        "kp-n4   -                Pending         -       -               -       -",
        "",
      ].join("\n"),
    });
  });

  it("cves CVE: nodes fixed, exposed, not applicable across the patches listing it", async () => {
    expect((await klp("cves", CVE_A)).out).toBe(
      ["CVE             FIXED   EXPOSED   NOT APPLICABLE   PATCHES", "CVE-2099-1086   1       2         1                kp-nft,kp-nft-v2", ""].join("\n"),
    );
  });

  it("cves CVE --exposed: which nodes, and why", async () => {
    expect((await klp("cves", CVE_A, "--exposed")).out).toBe(EXPOSED_GOLDEN);
  });

  it("cves -o json: names, not counts", async () => {
    const r = await klp("cves", CVE_B, "-o", "json");
    expect(JSON.parse(r.out)).toEqual([
      {
        id: CVE_B,
        patches: ["kp-nft-v2"],
        fixed: ["kp-n1"],
        exposed: ["kp-n2"],
        notApplicable: [],
        exposedNodes: [{ node: "kp-n2", kernelRelease: RELEASE, patches: [{ patch: "kp-nft-v2", phase: "Pending" }] }],
      },
    ]);
  });

  it("nodes: what is live in each kernel, its CVEs and taint", async () => {
    expect((await klp("nodes", "kp-n1", "kp-n2", "kp-n3", "kp-n4")).out).toBe(
      [
        "NODE    RELEASE          LIVE               CVES                          TAINT   FAILED",
        "kp-n1   6.1.0-56-amd64   kp-nft,kp-nft-v2   CVE-2099-0002,CVE-2099-1086   OK      -",
        "kp-n2   6.1.0-56-amd64   kp-misc            -                             K       kp-nft",
        "kp-n3   6.12.0-1-amd64   -                  -                             -       -",
        "kp-n4   -                -                  -                             -       -",
        "",
      ].join("\n"),
    );
  });

  it("a patch that does not exist: exit 1", async () => {
    expect(await klp("status", "kp-nope")).toEqual({ code: 1, out: "", err: 'error: kernellivepatches.livepatch.kpatch.dev "kp-nope" not found\n' });
  });

  it("pause and resume set spec.rollout.paused", async () => {
    expect(await klp("pause", "kp-nft")).toEqual({
      code: 0,
      err: "",
      out: "kernellivepatch/kp-nft paused: no new node is admitted to change; nodes already changing finish (spec.rollout.paused=true)\n",
    });
    expect((await cluster.getPatch("kp-nft"))?.spec.rollout.paused).toBe(true);
    expect((await klp("pause", "kp-nft")).out).toBe("kernellivepatch/kp-nft already paused (spec.rollout.paused=true)\n");
    expect((await klp("resume", "kp-nft")).code).toBe(0);
    expect((await cluster.getPatch("kp-nft"))?.spec.rollout.paused).toBe(false);
  });

  it("retry sets spec.retry; --node refuses a node where nothing failed", async () => {
    const before = (await cluster.getPatch("kp-nft"))?.spec.retry;
    expect(await klp("retry", "kp-nft", "--node", "kp-n1")).toEqual({
      code: 1,
      out: "",
      err: "error: kp-n1 is not Failed or Stalled for kp-nft (it is Replaced): nothing to retry there\n",
    });
    expect((await cluster.getPatch("kp-nft"))?.spec.retry).toBe(before);
    expect(await klp("retry", "kp-nft", "--node", "kp-n2")).toEqual({
      code: 0,
      err: "",
      out: "kernellivepatch/kp-nft retry requested (spec.retry=2026-12-03T10:05:00.000Z); spec.retry has no node of its own: every node where it failed or stalled tries again: kp-n2; at the pace of spec.rollout.maxUnavailable\n",
    });
    expect((await cluster.getPatch("kp-nft"))?.spec.retry).toBe("2026-12-03T10:05:00.000Z");
  });
});

const EXPOSED_GOLDEN = [
  "CVE             NODE    RELEASE          PATCHES",
  "CVE-2099-1086   kp-n2   6.1.0-56-amd64   kp-nft Failed (VermagicMismatch), kp-nft-v2 Pending",
  "CVE-2099-1086   kp-n4   -                kp-nft Pending",
  "",
].join("\n");

describe("the bundled executable, as kubectl runs it", () => {
  it("kubectl klp cves CVE --exposed prints what main prints", async () => {
    expect(await kubectlPlugin(["cves", CVE_A, "--exposed"])).toEqual({ code: 0, stdout: EXPOSED_GOLDEN, stderr: "" });
  });
  it("kubectl klp with a bad command line exits 2", async () => {
    expect(await kubectlPlugin(["retry"])).toEqual({ code: 2, stdout: "", stderr: "error: retry needs a KernelLivePatch name\nSee 'kubectl klp --help'.\n" });
  });
});
