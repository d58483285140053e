// The built agent image (kpatch-agent:dev) as the operator would run it, against the real control
// plane: testcontainers starts it with a simulated host tree (made by the image's own kpatch-agent
// CLI) as its host root, the sim loader, and a kubeconfig holding a token of the chart's agent
// ServiceAccount bound to a Pod on its Node, so its writes also pass the chart's RBAC and
// admission policy. Checks that it writes its node's status entries (and, once admitted, loads).
// Where no container engine can run, the tests print why and skip.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { StartedTestContainer } from "testcontainers";
import { buildSimModule } from "../../node-agent/sim/build-module.ts";
import { attachControlPlane, type ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";
import { AGENT_IMAGE, buildImages, configureTestcontainers, ensureDockerEngine } from "../support/docker.ts";
import { CHART_CRDS_DIR, CHART_DIR, helmClient, setArgs, type Helm } from "../support/helm.ts";

const engine = await ensureDockerEngine();
if (!engine.ok) console.warn(`[image-agent] skipping: no container engine can run here: ${engine.reason}`);

const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
const ns = `klp-img-${suffix}`;
const release = "kpatch-operator";
const nodeName = `img-node-${suffix}`;
const kernelRelease = "6.1.0-56-amd64";
const moduleName = `klp_img_${suffix}`;
const applicable = `img-applicable-${suffix}`;
const notApplicable = `img-na-${suffix}`;

let cp: ControlPlaneClient;
let helm: Helm;
let work: string;
let agent: StartedTestContainer | undefined;
let agentLogs = "";

async function kubectlOk(args: string[], input?: string): Promise<string> {
  const r = await cp.kubectl(args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

async function getPatch(name: string): Promise<any> {
  return JSON.parse(await kubectlOk(["get", "kernellivepatch", name, "-o", "json"]));
}

async function eventually<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not reached within ${timeoutMs} ms (last error: ${String(last)})\nagent logs:\n${agentLogs.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The agent's entry for a patch, as it wrote it into its node's KernelLivePatchNode. */
async function entryOf(patch: string): Promise<any> {
  const r = await cp.kubectl(["get", "kernellivepatchnode", nodeName, "-o", "json"]);
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout).status?.entries ?? []).find((e: any) => e.patch === patch);
}

/**
 * Plays the operator's part (no operator runs here): projects both patches onto the node's
 * KernelLivePatchNode, the applicable one admitted or not.
 */
async function project(admitted: boolean): Promise<void> {
  const projection = async (name: string, admit: boolean) => {
    const p = await getPatch(name);
    return { name, uid: p.metadata.uid, generation: p.metadata.generation, creationTimestamp: p.metadata.creationTimestamp, admitted: admit, spec: p.spec };
  };
  const obj = {
    apiVersion: "livepatch.kpatch.dev/v1alpha1",
    kind: "KernelLivePatchNode",
    metadata: { name: nodeName },
    spec: { patches: [await projection(applicable, admitted), await projection(notApplicable, false)] },
  };
  await kubectlOk(["apply", "--server-side", "--field-manager=kpatch-operator", "--force-conflicts", "-f", "-"], JSON.stringify(obj));
}

describe.skipIf(!engine.ok)(`agent image ${AGENT_IMAGE}`, () => {
  beforeAll(async () => {
    configureTestcontainers();
    cp = await attachControlPlane(inject("controlPlaneDir"));
    helm = await helmClient({ binDir: inject("binDir"), kubeconfig: inject("kubeconfig") });
    work = await mkdtemp(path.join(os.tmpdir(), "klp-img-"));
    await buildImages(["agent"]);

    // The chart gives the agent ServiceAccount, its RBAC and the admission policy.
    await kubectlOk(["create", "namespace", ns]);
    await kubectlOk(["label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged"]);
    await helm.ok(["install", release, CHART_DIR, "-n", ns, ...setArgs({ "operator.image.tag": "dev", "agent.image.tag": "dev", "agent.loader": "sim" })]);
    await kubectlOk(["apply", "--server-side", "--force-conflicts", "-f", CHART_CRDS_DIR]);
    await kubectlOk(["wait", "--for=condition=Established", "crd/kernellivepatches.livepatch.kpatch.dev", "crd/kernellivepatchnodes.livepatch.kpatch.dev", "--timeout=60s"]);

    // The Node, and the agent Pod object the token is bound to (the container plays that pod).
    await kubectlOk(["create", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: nodeName, labels: { "kubernetes.io/hostname": nodeName } } }));
    await kubectlOk(
      ["create", "-n", ns, "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: `kpatch-agent-${suffix}` },
        spec: { nodeName, serviceAccountName: "kpatch-agent", containers: [{ name: "agent", image: AGENT_IMAGE, imagePullPolicy: "Never" }] },
      }),
    );
    const token = (await kubectlOk(["create", "token", "kpatch-agent", "-n", ns, "--duration=1h", "--bound-object-kind=Pod", `--bound-object-name=kpatch-agent-${suffix}`])).trim();
    const kubeconfig = await cp.tokenKubeconfig(token);

    // A module for the node's kernel, in a ConfigMap; and a patch for another kernel.
    const ko = buildSimModule({ name: moduleName, vermagic: kernelRelease });
    const sha256 = createHash("sha256").update(ko).digest("hex");
    await kubectlOk(
      ["create", "-n", ns, "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "modules" }, binaryData: { "livepatch.ko": ko.toString("base64") } }),
    );
    const patch = (name: string, release: string) => ({
      apiVersion: "livepatch.kpatch.dev/v1alpha1",
      kind: "KernelLivePatch",
      metadata: { name },
      spec: { modules: [{ kernelRelease: release, sha256, configMap: { namespace: ns, name: "modules", key: "livepatch.ko" } }] },
    });
    await kubectlOk(["create", "-f", "-"], JSON.stringify(patch(applicable, kernelRelease)));
    await kubectlOk(["create", "-f", "-"], JSON.stringify(patch(notApplicable, "5.10.0-99-amd64")));
    await project(false);

    // The simulated host, made by the image's own CLI.
    const { GenericContainer, Wait } = await import("testcontainers");
    const hostRoot = path.join(work, "host");
    const init = await new GenericContainer(AGENT_IMAGE)
      .withNetworkMode("none")
      .withBindMounts([{ source: work, target: "/work", mode: "rw" }])
      .withCommand(["node", "/app/kpatch-agent.mjs", "sim-host", "init", "--host-root", "/work/host", "--kernel-release", kernelRelease])
      .withWaitStrategy(Wait.forOneShotStartup())
      .withStartupTimeout(60_000)
      .start();
    await init.stop();

    agent = await new GenericContainer(AGENT_IMAGE)
      .withNetworkMode("host")
      .withBindMounts([
        { source: hostRoot, target: "/host", mode: "rw" },
        { source: kubeconfig, target: "/etc/kpatch-agent/kubeconfig", mode: "ro" },
      ])
      .withEnvironment({ NODE_NAME: nodeName, KPATCH_HOST_ROOT: "/host", KPATCH_LOADER: "sim", KUBECONFIG: "/etc/kpatch-agent/kubeconfig", LOG_LEVEL: "debug" })
      .withLogConsumer((stream) => stream.on("data", (c: Buffer | string) => (agentLogs = (agentLogs + c.toString()).slice(-200_000))))
      .withWaitStrategy(Wait.forLogMessage(/watching this node's KernelLivePatchNode/))
      .withStartupTimeout(60_000)
      .start();
  });

  afterAll(async () => {
    await agent?.stop({ timeout: 10_000 }).catch(() => undefined);
    if (cp) {
      await helm?.run(["uninstall", release, "-n", ns, "--wait=false", "--no-hooks"]); // no kubelet for the hook Job here
      await cp.kubectl(["delete", "kernellivepatches", applicable, notApplicable, "--ignore-not-found", "--wait=false"]);
      await cp.kubectl(["delete", "namespace", ns, "--ignore-not-found", "--wait=false"]);
      await cp.kubectl(["delete", "node", nodeName, "--ignore-not-found", "--wait=false"]);
      await cp.kubectl(["delete", "kernellivepatchnode", nodeName, "--ignore-not-found", "--wait=false"]);
    }
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("reports NotApplicable for a patch without a module for its kernel", async () => {
    const entry = await eventually("NotApplicable entry", 60_000, async () => {
      const e = await entryOf(notApplicable);
      return e?.phase === "NotApplicable" ? e : undefined;
    });
    expect(entry.kernelRelease).toBe(kernelRelease);
  });

  it("writes its node's entry on an applicable patch once admitted, and loads the module", async () => {
    // Not admitted: the agent holds still and writes nothing (Pending is the controller's to report).
    expect(await entryOf(applicable)).toBeUndefined();
    // Play the operator: admit the node for the current generation.
    await project(true);
    const loaded = await eventually("Loaded entry", 90_000, async () => {
      const e = await entryOf(applicable);
      return e?.phase === "Loaded" ? e : undefined;
    });
    expect(loaded).toMatchObject({ nodeName, phase: "Loaded", kernelRelease, enabled: true });
    // The simulated kernel agrees: the module is live there.
    const enabled = await readFile(path.join(work, "host/sys/kernel/livepatch", moduleName, "enabled"), "utf8");
    expect(enabled.trim()).toBe("1");
  });
});
