// Upgrading a running installation on a real node: the chart and images of UPGRADE_FROM (an earlier
// commit, built from its own tree) install, two patches are Loaded by the agent pod on the node,
// then the CRDs are applied and `helm upgrade` runs as the chart's README says. Through the whole
// upgrade both modules stay live and are never loaded again; afterwards every patch's status is
// rewritten by the new operator in the current shape (the strict schema of crds/schema.ts) and
// `kubectl wait --for=condition=Ready` holds again. The agent works on a simulated host tree
// (`agent.loader: sim`), never on this machine's kernel; its sim state counts every insmod.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KernelLivePatchStatus, type KernelLivePatch } from "../../crds/schema.ts";
import { OPERATOR_FIELD_MANAGER } from "../../operator/kube/patches.ts";
import { readSimState } from "../../node-agent/sim/sim-files.ts";
import { attachControlPlane, type ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";
import { AGENT_IMAGE, OPERATOR_IMAGE, buildImages, ensureDockerEngine } from "../support/docker.ts";
import { CHART_CRDS_DIR, CHART_DIR, helmClient, setArgs, type Helm } from "../support/helm.ts";
import { startRealNode, type NodeNetwork, type NodeTools, type RealNode } from "../support/real-node.ts";
import { cli, eventually, kubectlOf, namespaceState, type Kubectl } from "./harness.ts";
import { buildPreviousRelease, UPGRADE_FROM, type PreviousRelease } from "./previous-release.ts";

const unavailable = inject("realNodeUnavailable");
if (unavailable) console.warn(`[upgrade] skipping: this machine cannot run a kubelet: ${unavailable}`);

const REPO = path.resolve(import.meta.dirname, "../..");
const RELEASE = "6.1.0-56-amd64";
const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
const ns = "kpatch-upgrade";
const release = "kpatch-operator";
const nodeName = `upgrade-${suffix}`;
const targetLabel = { "klp-upgrade": suffix };
const patches = ["a", "b"].map((x) => ({ name: `upgrade-${x}-${suffix}`, module: `klp_up_${x}_${suffix.replace(/[^a-z0-9]/g, "")}` }));

let cp: ControlPlaneClient;
let kubectl: Kubectl;
let helm: Helm;
let node: RealNode | undefined;
let prev: PreviousRelease;
let work: string;
let hostRoot: string;
const figures: Record<string, unknown> = {};

const context = async () => `${await namespaceState(cp, ns)}\n${(await node?.describe(15)) ?? ""}`;
// With managedFields (kubectl hides them by default): who wrote the status, and when.
const getPatch = async (name: string) => kubectl.json<KernelLivePatch>(["get", "klp", name, "--show-managed-fields"]);

/** Every module live in the node's simulated kernel, and how often each was loaded since boot. */
async function liveModules(): Promise<{ live: string[]; insmods: Record<string, number> }> {
  const st = await readSimState(hostRoot);
  const live = patches.map((p) => p.module).filter((m) => st.modules.some((x) => x.name === m) && existsSync(path.join(hostRoot, "sys/kernel/livepatch", m, "enabled")));
  return { live, insmods: st.insmods };
}

function imageArgs(operatorImage: string, agentImage: string): string[] {
  const [opRepo, opTag] = operatorImage.split(":");
  const [agRepo, agTag] = agentImage.split(":");
  return setArgs({
    "operator.image.repository": opRepo!, "operator.image.tag": opTag!, "operator.image.pullPolicy": "Never",
    "agent.image.repository": agRepo!, "agent.image.tag": agTag!, "agent.image.pullPolicy": "Never",
  });
}

/** The agent pod on the node, Running and ready, from `image`. */
async function agentPodOf(image: string, timeoutMs: number): Promise<any> {
  return eventually(`an agent pod from ${image} ready on ${nodeName}`, timeoutMs, async () => {
    const pods = (await kubectl.json<{ items: any[] }>(["get", "pods", "-n", ns, "-l", "app.kubernetes.io/name=kpatch-agent"])).items;
    return pods.find((p) => !p.metadata.deletionTimestamp && p.spec.containers[0].image.endsWith(image) && p.status?.containerStatuses?.every((c: any) => c.ready));
  }, context);
}

describe.skipIf(!!unavailable)(`upgrading from ${UPGRADE_FROM.slice(0, 12)} on a real node`, () => {
  beforeAll(async () => {
    cp = await attachControlPlane(inject("controlPlaneDir"));
    kubectl = kubectlOf(cp);
    helm = await helmClient({ binDir: inject("binDir"), kubeconfig: inject("kubeconfig") });
    work = await mkdtemp(path.join(os.tmpdir(), "klp-upgrade-"));
    const engine = await ensureDockerEngine();
    if (!engine.ok) throw new Error(`the upgrade test needs the images and no container engine can build them: ${engine.reason}`);

    let t = performance.now();
    await buildImages(["operator", "agent"]);
    const saved = await promisify(execFile)("bash", [path.join(REPO, "scripts/images/save.sh"), path.join(work, "images")]);
    const current = saved.stdout.split("\n").filter((l) => l.endsWith(".tar"));
    prev = await buildPreviousRelease(UPGRADE_FROM, path.join(work, "images"));
    figures.imagesMs = Math.round(performance.now() - t);

    hostRoot = path.join(work, "host");
    await cli(["--host-root", hostRoot, "sim-host", "init", "--kernel-release", RELEASE, "--transition-ms", "300"]);
    t = performance.now();
    node = await startRealNode({ name: nodeName, cp, tools: JSON.parse(inject("realNodeTools")) as NodeTools, network: JSON.parse(inject("realNodeNetwork")) as NodeNetwork, labels: targetLabel, images: [...current, ...prev.tars], log: (l) => process.stderr.write(`[upgrade node] ${l}\n`) });
    figures.nodeStartMs = Math.round(performance.now() - t);
  }, 1_200_000);

  afterAll(async () => {
    if (Object.keys(figures).length) process.stderr.write(`[upgrade] figures ${JSON.stringify(figures)}\n`);
    await node?.stop();
    // The Node object outlives its kubelet: left NotReady, the scheduler could still pick it for a later file's pods.
    if (node) await cp.kubectl(["delete", "node", nodeName, "--wait=false"]);
    if (prev) await rm(prev.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  }, 120_000);

  it("the earlier release installs with its own CRDs and loads two patches on the node", async () => {
    // Its own CRDs whatever an earlier test left: Helm installs crds/ only when they are absent.
    await kubectl(["apply", "--server-side", "--force-conflicts", "-f", path.join(prev.dir, "charts/kpatch-operator/crds")]);
    await kubectl(["create", "namespace", ns]);
    await kubectl(["label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged"]);
    await helm.ok(["install", release, path.join(prev.dir, "charts/kpatch-operator"), "-n", ns, ...imageArgs(prev.operatorImage, prev.agentImage), ...setArgs({ "agent.hostRoot": hostRoot, "agent.loader": "sim" })]);
    await kubectl(["rollout", "status", `deployment/${release}`, "-n", ns, "--timeout=180s"], undefined, 200_000);

    const files: Record<string, Buffer> = {};
    for (const p of patches) {
      const ko = path.join(work, `${p.module}.ko`);
      await cli(["--host-root", hostRoot, "sim-host", "make-module", "--name", p.module, "--vermagic", RELEASE, "-o", ko]);
      files[`${p.module}.ko`] = await readFile(ko);
    }
    await kubectl(["create", "configmap", "modules", "-n", ns, ...Object.keys(files).map((k) => `--from-file=${k}=${path.join(work, k)}`)]);
    for (const p of patches) {
      const sha256 = createHash("sha256").update(files[`${p.module}.ko`]!).digest("hex");
      await kubectl(["apply", "-f", "-"], JSON.stringify({
        apiVersion: "livepatch.kpatch.dev/v1alpha1",
        kind: "KernelLivePatch",
        metadata: { name: p.name },
        spec: { state: "Loaded", modules: [{ kernelRelease: RELEASE, sha256, configMap: { namespace: ns, name: "modules", key: `${p.module}.ko` } }], nodeSelector: { matchLabels: targetLabel }, rollout: { maxUnavailable: 1 } },
      }));
    }
    const t = performance.now();
    for (const p of patches) {
      const wait = await cp.kubectl(["wait", "--for=condition=Ready", `klp/${p.name}`, "--timeout=240s"], { timeoutMs: 260_000 });
      if (wait.code !== 0) throw new Error(`kubectl wait klp/${p.name}: ${wait.stderr}\n${await context()}`);
    }
    figures.prevApplyToReadyMs = Math.round(performance.now() - t);
    await agentPodOf(prev.agentImage, 10_000);
    expect(await liveModules()).toEqual({ live: patches.map((p) => p.module), insmods: Object.fromEntries(patches.map((p) => [p.module, 1])) });
  }, 600_000);

  it("CRDs applied, then helm upgrade: no module leaves the kernel or loads again, every status is rewritten in the current shape, and Ready holds", async () => {
    // Sample the kernel all through the upgrade: a module missing once is an unload.
    const missing: string[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { live } = await liveModules();
        for (const p of patches) if (!live.includes(p.module)) missing.push(`${p.module}@${new Date().toISOString()}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    // A status already in the current shape need not be written again (a no-op apply leaves
    // managedFields as they were); one in an earlier shape must be.
    const inCurrentShape = new Map<string, boolean>();
    for (const p of patches) inCurrentShape.set(p.name, KernelLivePatchStatus.safeParse((await getPatch(p.name)).status).success);
    figures.statusShapeChanged = [...inCurrentShape.values()].some((same) => !same);
    const upgradeStart = new Date(Math.floor(Date.now() / 1000) * 1000);
    const t = performance.now();
    try {
      await kubectl(["apply", "--server-side", "--force-conflicts", "-f", CHART_CRDS_DIR]);
      await helm.ok(["upgrade", release, CHART_DIR, "-n", ns, "--reset-then-reuse-values", ...imageArgs(OPERATOR_IMAGE, AGENT_IMAGE)]);
      await kubectl(["rollout", "status", `deployment/${release}`, "-n", ns, "--timeout=180s"], undefined, 200_000);
      // The new operator renders the agent DaemonSet with the new image; the agent rolls.
      await agentPodOf(AGENT_IMAGE, 240_000);
      for (const p of patches) {
        await eventually(`${p.name}'s status in the current shape (rewritten by the new operator if it was not)`, 120_000, async () => {
          const o = await getPatch(p.name);
          const written = (o.metadata as { managedFields?: Array<{ manager: string; subresource?: string; time?: string }> }).managedFields?.find(
            (f) => f.manager === OPERATOR_FIELD_MANAGER && f.subresource === "status",
          );
          const rewritten = written?.time !== undefined && Date.parse(written.time) >= upgradeStart.getTime();
          return (rewritten || inCurrentShape.get(p.name)) && KernelLivePatchStatus.safeParse(o.status).success;
        }, async () => {
          const o = await getPatch(p.name).catch(() => undefined);
          const parsed = KernelLivePatchStatus.safeParse(o?.status);
          return `status: ${JSON.stringify(o?.status)}\nshape: ${parsed.success ? "current" : parsed.error.message}\nmanagedFields: ${JSON.stringify(o?.metadata && (o.metadata as { managedFields?: unknown }).managedFields)}\n${await context()}\noperator log:\n${await kubectl(["logs", "-n", ns, `deployment/${release}`, "--tail=30"]).catch((e) => String(e))}`;
        });
        const wait = await cp.kubectl(["wait", "--for=condition=Ready", `klp/${p.name}`, "--timeout=60s"], { timeoutMs: 80_000 });
        if (wait.code !== 0) throw new Error(`kubectl wait klp/${p.name} after the upgrade: ${wait.stderr}\n${await context()}`);
      }
      figures.upgradeToReadyMs = Math.round(performance.now() - t);
      // A few more seconds on the new agent: a late unload or reload would show here.
      await new Promise((r) => setTimeout(r, 5_000));
    } finally {
      sampling = false;
      await sampler;
    }
    expect(missing, "modules missing from the kernel during the upgrade").toEqual([]);
    expect(await liveModules()).toEqual({ live: patches.map((p) => p.module), insmods: Object.fromEntries(patches.map((p) => [p.module, 1])) });
    for (const p of patches) {
      const status = KernelLivePatchStatus.parse((await getPatch(p.name)).status);
      expect(status.summary).toMatchObject({ loaded: 1, failed: 0 });
      expect(status.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
    }
  }, 600_000);

  it("cleanup: deleting the patches unloads them; helm uninstall", async () => {
    await kubectl(["delete", "klp", ...patches.map((p) => p.name), "--timeout=180s"], undefined, 200_000);
    expect((await liveModules()).live).toEqual([]);
    await helm.ok(["uninstall", release, "-n", ns, "--wait", "--timeout", "180s"]);
    await kubectl(["delete", "namespace", ns, "--wait=false"]);
  }, 400_000);
});
