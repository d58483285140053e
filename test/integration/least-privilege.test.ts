/**
 * Least privilege, enforced by the API server: after `helm install`, the operator and two agents
 * run as local processes with tokens issued through the TokenRequest API for the chart's own
 * ServiceAccounts (agent tokens bound to Pods on their nodes, so they carry the node-name claim).
 * The chart's RBAC and admission policy are what is exercised: a normal rollout completes (the
 * operator writes each node's KernelLivePatchNode and rolls the agents' entries up into the patch's
 * status), and an agent forging another node's entry is denied by the API server, both in that
 * node's object (the admission policy) and in the patch's status (RBAC).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION, GROUP, KIND, NODE_KIND, NODE_PLURAL, PLURAL, VERSION, type NodePatchEntry } from "../../crds/schema.ts";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { KubeApiError, KubeHttp } from "../../kube/http-client.ts";
import { buildSimModule } from "../../node-agent/sim/build-module.ts";
import { layoutSimHost } from "../../node-agent/sim/layout.ts";
import type { ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";
import { CHART_DIR, helmClient, setArgs, type Helm } from "../support/helm.ts";
import { Cluster, REPO, condition, controlPlane, entryOf, removeTree, sha256, until } from "../support/klp.ts";

const suffix = Date.now().toString(36);
const NS = `klp-lp-${suffix}`;
const RELEASE = "kpatch-lp";
const RELEASE_K = "6.1.0-56-amd64";
const NODES = [`lp-a-${suffix}`, `lp-b-${suffix}`];
const module = buildSimModule({ name: "klp_lp_fix", vermagic: RELEASE_K });
const cluster = new Cluster();
let cp: ControlPlaneClient;
let helm: Helm;
const children: ChildProcess[] = [];
const roots: string[] = [];
const outputs = new Map<string, () => string>();

async function token(sa: string, boundPod?: string): Promise<string> {
  const args = ["create", "token", sa, "-n", NS, "--duration=1h", ...(boundPod ? ["--bound-object-kind=Pod", `--bound-object-name=${boundPod}`] : [])];
  const r = await cp.kubectl(args);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.trim();
}

function run(name: string, entry: string, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, entry)], { cwd: REPO, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (out += c.toString()));
  outputs.set(name, () => out);
  children.push(child);
  return child;
}

const logs = () => [...outputs.entries()].map(([n, o]) => `--- ${n}\n${o().split("\n").slice(-15).join("\n")}`).join("\n");

beforeAll(async () => {
  cp = await controlPlane();
  helm = await helmClient({ binDir: inject("binDir"), kubeconfig: cp.kubeconfigPath });
  await cluster.ensureNamespace(NS);
  await helm.ok(["install", RELEASE, CHART_DIR, "-n", NS, ...setArgs({ "operator.replicas": "0" })]);
  await cp.kubectl(["apply", "--server-side", "--force-conflicts", "-f", path.join(CHART_DIR, "crds")]);
  for (const plural of [PLURAL, NODE_PLURAL]) await cp.kubectl(["wait", "--for=condition=Established", `crd/${plural}.${GROUP}`, "--timeout=60s"]);
  await cluster.putModuleConfigMap(NS, "modules", { "fix.ko": module });
  for (const n of NODES) {
    await cluster.createNode(n, { "klp-test/suite": `lp-${suffix}` });
    // A Pod bound to the node, so the agent's token carries the node-name claim (as the kubelet's would).
    await cluster.core.createNamespacedPod({
      namespace: NS,
      body: { metadata: { name: `agent-${n}` }, spec: { nodeName: n, serviceAccountName: "kpatch-agent", containers: [{ name: "agent", image: "kpatch-agent:dev", imagePullPolicy: "Never" }] } },
    });
  }
});

afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await cluster.forceDeletePatch(`lp-fix-${suffix}`);
  await helm.run(["uninstall", RELEASE, "-n", NS, "--wait", "--no-hooks"]); // no kubelet for the hook Job here
  for (const n of NODES) await cluster.deleteNode(n);
  await cp.kubectl(["delete", NODE_PLURAL, ...NODES, "--ignore-not-found", "--wait=false"]);
  await cluster.core.deleteNamespace({ name: NS }).catch(() => undefined);
  for (const r of roots) await removeTree(r);
});

describe("the chart's least privilege, with the real processes", () => {
  it("operator and agents on the chart's tokens complete a rollout", async () => {
    const operatorKubeconfig = await cp.tokenKubeconfig(await token("kpatch-operator"));
    run("operator", "operator/main.ts", {
      KUBECONFIG: operatorKubeconfig,
      KLP_NAMESPACE: NS,
      KLP_LEADER_ELECTION: "true",
      KLP_POD_NAME: "operator-local",
      KLP_AGENT_SERVICE_ACCOUNT: "kpatch-agent",
      KLP_METRICS_ADDR: "127.0.0.1:0",
      KLP_HEALTH_ADDR: "127.0.0.1:0",
    });
    for (const n of NODES) {
      const root = await mkdtemp(path.join(tmpdir(), `klp-lp-${n}-`));
      roots.push(root);
      await layoutSimHost(root, { kernelRelease: RELEASE_K, transitionMs: 300 });
      const kubeconfig = await cp.tokenKubeconfig(await token("kpatch-agent", `agent-${n}`));
      run(n, "node-agent/main.ts", { KUBECONFIG: kubeconfig, NODE_NAME: n, KPATCH_HOST_ROOT: root, KPATCH_LOADER: "sim", LOG_LEVEL: "info" });
    }
    await cluster.createPatch(`lp-fix-${suffix}`, {
      modules: [{ kernelRelease: RELEASE_K, sha256: sha256(module), configMap: { namespace: NS, name: "modules", key: "fix.ko" } }],
      nodeSelector: { matchLabels: { "klp-test/suite": `lp-${suffix}` } },
      rollout: { maxUnavailable: "100%" },
    });
    const p = await until("Ready with the chart's tokens", async () => {
      const p = await cluster.getPatch(`lp-fix-${suffix}`);
      return condition(p, "Ready")?.status === "True" ? p : undefined;
    }, 90_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${logs()}`);
    });
    for (const n of NODES) expect(entryOf(p, n)).toMatchObject({ phase: "Loaded", tainted: 45056, taintFlags: "OEK" });
    // The operator held the Lease in its namespace with its own token.
    const lease = await cp.kubectl(["get", "lease", "-n", NS, "kpatch-operator", "-o", "jsonpath={.spec.holderIdentity}"]);
    expect(lease.stdout).toBe("operator-local");
    // The agent DaemonSet was created by the operator's token.
    expect(await cluster.daemonSet(NS)).toBeDefined();
  });

  it("an agent's write of another node's entry is denied by the API server", async () => {
    const [a, b] = NODES as [string, string];
    const patch = `lp-fix-${suffix}`;
    const nodeObjectEntry = async (node: string) =>
      ((await cluster.custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_PLURAL, name: node })) as { status?: { entries?: NodePatchEntry[] } }).status
        ?.entries?.find((e) => e.patch === patch);
    expect(await nodeObjectEntry(b)).toMatchObject({ phase: "Loaded" });
    const http = new KubeHttp(kubeconfigConnection(await cp.tokenKubeconfig(await token("kpatch-agent", `agent-${a}`))));
    const unbound = new KubeHttp(kubeconfigConnection(await cp.tokenKubeconfig(await token("kpatch-agent"))));
    const denied = (client: KubeHttp, path: string, body: object, manager = `kpatch-agent/${a}`) =>
      client
        .json("PATCH", path, { query: { fieldManager: manager, force: true }, contentType: "application/apply-patch+yaml", body })
        .then(() => undefined, (e: unknown) => e);
    const forged = { patch, nodeName: b, phase: "Failed", reason: "Forged" };
    const nodeStatusPath = (n: string) => `/apis/${GROUP}/${VERSION}/${NODE_PLURAL}/${n}/status`;
    const nodeObject = (n: string, entries: object[]) => ({ apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: n }, status: { entries } });
    try {
      // Into node B's object, where the operator reads node B's entries: the admission policy.
      const intoNode = await denied(http, nodeStatusPath(b), nodeObject(b, [forged]));
      expect(intoNode).toBeInstanceOf(KubeApiError);
      // A ValidatingAdmissionPolicy denial is a 403 naming the policy and its message.
      expect((intoNode as KubeApiError).code).toBe(403);
      expect((intoNode as KubeApiError).message).toContain("ValidatingAdmissionPolicy");
      expect((intoNode as KubeApiError).message).toContain(`the agent of node ${a} denied: it tried to write ${NODE_PLURAL}/${b}`);

      // Into the patch's status directly, as agents did before node objects: RBAC.
      const intoPatch = await denied(http, `/apis/${GROUP}/${VERSION}/${PLURAL}/${patch}/status`, {
        apiVersion: API_VERSION,
        kind: KIND,
        metadata: { name: patch },
        status: { nodes: [{ nodeName: b, phase: "Failed", reason: "Forged" }] },
      });
      expect(intoPatch).toBeInstanceOf(KubeApiError);
      expect((intoPatch as KubeApiError).code).toBe(403);
      expect((intoPatch as KubeApiError).message).toContain(`cannot patch resource "${PLURAL}/status"`);

      // Into node B's object's spec, or its own (the operator's projection): RBAC.
      for (const n of [b, a]) {
        const intoSpec = await denied(http, `/apis/${GROUP}/${VERSION}/${NODE_PLURAL}/${n}`, { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: n }, spec: { patches: [] } });
        expect(intoSpec).toBeInstanceOf(KubeApiError);
        expect((intoSpec as KubeApiError).code).toBe(403);
        expect((intoSpec as KubeApiError).message).toContain(`cannot patch resource "${NODE_PLURAL}"`);
      }

      // With a token that names no node (not bound to a Pod), not even into node A's object.
      const noClaim = await denied(unbound, nodeStatusPath(a), nodeObject(a, [{ patch, nodeName: a, phase: "Failed", reason: "Forged" }]));
      expect(noClaim).toBeInstanceOf(KubeApiError);
      expect((noClaim as KubeApiError).code).toBe(403);
      expect((noClaim as KubeApiError).message).toContain("not exactly one");
    } finally {
      http.close();
      unbound.close();
    }
    expect(await nodeObjectEntry(b)).toMatchObject({ phase: "Loaded" });
    expect(await nodeObjectEntry(a)).toMatchObject({ phase: "Loaded" });
    const p = await cluster.getPatch(patch);
    for (const n of NODES) expect(entryOf(p, n)?.phase).toBe("Loaded");
  });
});
