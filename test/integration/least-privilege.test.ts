/**
 * Least privilege, enforced by the API server: after `helm install`, the operator and two agents
 * run as local processes with tokens issued through the TokenRequest API for the chart's own
 * ServiceAccounts (agent tokens bound to Pods on their nodes, so they carry the node-name claim).
 * The chart's RBAC and admission policy are what is exercised: a normal rollout completes (the
 * operator writes each node's KernelLivePatchNode and rolls the agents' entries up into the patch's
 * status), and an agent forging another node's entry is denied by the API server, both in that
 * node's object (the admission policy) and in the patch's status (RBAC). Then the allow/deny matrix
 * of both ServiceAccounts, the operator's finalizer-only policy, and the agent's policy self-check
 * with the node write policy present and absent.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION, GROUP, KIND, NODE_KIND, NODE_PLURAL, PLURAL, VERSION, type Condition, type NodePatchEntry } from "../../crds/schema.ts";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { KubeApiError, KubeHttp, MERGE } from "../../kube/http-client.ts";
import { probeNodeWritePolicy } from "../../node-agent/kube/policy-check.ts";
import { buildSimModule } from "../../node-agent/sim/build-module.ts";
import { layoutSimHost } from "../../node-agent/sim/layout.ts";
import { freePorts, type ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";
import { CHART_DIR, helmClient, setArgs, type Helm } from "../support/helm.ts";
import { Cluster, REPO, condition, controlPlane, entryOf, removeTree, sha256, until } from "../support/klp.ts";

const suffix = Date.now().toString(36);
const NS = `klp-lp-${suffix}`;
const RELEASE = "kpatch-lp";
const RELEASE_K = "6.1.0-56-amd64";
const NODES = [`lp-a-${suffix}`, `lp-b-${suffix}`];
/** Joins later, while the node write policy is off: its agent must refuse to act. */
const LATE_NODE = `lp-c-${suffix}`;
const AGENT_USER = `system:serviceaccount:${NS}:kpatch-agent`;
const OPERATOR_USER = `system:serviceaccount:${NS}:kpatch-operator`;
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
  for (const n of [...NODES, LATE_NODE]) {
    if (n !== LATE_NODE) await cluster.createNode(n, { "klp-test/suite": `lp-${suffix}` });
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
  for (const n of [...NODES, LATE_NODE]) await cluster.deleteNode(n).catch(() => undefined);
  await cp.kubectl(["delete", NODE_PLURAL, ...NODES, LATE_NODE, "--ignore-not-found", "--wait=false"]);
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

  it("RBAC: the allow/deny matrix of the agent and the operator ServiceAccounts", async () => {
    const KLPN = `${NODE_PLURAL}.${GROUP}`;
    const KLP = `${PLURAL}.${GROUP}`;
    type Row = [who: string, verb: string, resource: string, ns: string | undefined, extra: string[], allowed: boolean];
    const agent = (verb: string, resource: string, ns: string | undefined, allowed: boolean, extra: string[] = []): Row => [AGENT_USER, verb, resource, ns, extra, allowed];
    const op = (verb: string, resource: string, ns: string | undefined, allowed: boolean, extra: string[] = []): Row => [OPERATOR_USER, verb, resource, ns, extra, allowed];
    const status = ["--subresource=status"];
    const rows: Row[] = [
      // The agent: its node objects (status only), Nodes, module ConfigMaps in the release namespace, Events in default.
      ...["get", "list", "watch"].map((v) => agent(v, KLPN, undefined, true)),
      agent("patch", KLPN, undefined, true, status),
      agent("update", KLPN, undefined, false, status),
      ...["create", "patch", "update", "delete"].map((v) => agent(v, KLPN, undefined, false)),
      ...["get", "list", "watch"].map((v) => agent(v, "nodes", undefined, true)),
      agent("patch", "nodes", undefined, false),
      agent("get", "configmaps", NS, true),
      agent("list", "configmaps", NS, false),
      agent("get", "configmaps", "default", false),
      agent("get", "configmaps", "kube-system", false),
      agent("create", "events", "default", true),
      agent("patch", "events", "default", true),
      agent("create", "events.events.k8s.io", "default", true),
      agent("create", "events", NS, false),
      agent("create", "events", "kube-system", false),
      ...["get", "list", "watch", "patch", "delete"].map((v) => agent(v, KLP, undefined, false)),
      agent("patch", KLP, undefined, false, status),
      agent("get", "secrets", NS, false),
      agent("get", "daemonsets.apps", NS, false),
      agent("create", "pods", NS, false),
      // The operator: KernelLivePatches (patch for the finalizer, status), node objects, its DaemonSet and Lease by name.
      ...["get", "list", "watch", "patch"].map((v) => op(v, KLP, undefined, true)),
      ...["create", "update", "delete"].map((v) => op(v, KLP, undefined, false)),
      op("patch", KLP, undefined, true, status),
      op("update", KLP, undefined, false, status),
      op("update", KLP, undefined, false, ["--subresource=finalizers"]),
      ...["get", "list", "watch", "create", "patch", "delete"].map((v) => op(v, KLPN, undefined, true)),
      op("patch", KLPN, undefined, false, status),
      ...["list", "watch", "create"].map((v) => op(v, "daemonsets.apps", NS, true)),
      ...["get", "patch", "delete"].map((v) => op(v, "daemonsets.apps/kpatch-agent", NS, true)),
      ...["get", "patch", "delete", "update"].map((v) => op(v, "daemonsets.apps/someone-elses", NS, false)),
      op("update", "daemonsets.apps/kpatch-agent", NS, false),
      op("create", "daemonsets.apps", "default", false),
      op("create", "leases.coordination.k8s.io", NS, true),
      ...["get", "patch"].map((v) => op(v, "leases.coordination.k8s.io/kpatch-operator", NS, true)),
      op("patch", "leases.coordination.k8s.io/someone-elses", NS, false),
      op("update", "leases.coordination.k8s.io/kpatch-operator", NS, false),
      op("create", "leases.coordination.k8s.io", "default", false),
      op("create", "events", "default", true),
      op("create", "events", NS, false),
      op("get", "configmaps", NS, false),
      op("get", "secrets", NS, false),
      op("patch", "nodes", undefined, false),
    ];
    const wrong: string[] = [];
    for (const [who, verb, resource, ns, extra, allowed] of rows) {
      const r = await cp.kubectl(["auth", "can-i", verb, resource, `--as=${who}`, ...(ns ? ["-n", ns] : []), ...extra]);
      const got = r.stdout.trim() === "yes";
      if (got !== allowed) wrong.push(`${who.split(":").pop()} ${verb} ${resource}${ns ? ` -n ${ns}` : ""} ${extra.join(" ")}: ${r.stdout.trim() || r.stderr.trim()}, expected ${allowed ? "yes" : "no"}`);
    }
    expect(wrong).toEqual([]);
  });

  it("RBAC: agent.moduleConfigMapNamespaces names the namespaces (a Role in each), [\"*\"] all of them", async () => {
    const rendered = async (set: string[]) => {
      const r = await helm.run(["template", RELEASE, CHART_DIR, "-n", NS, ...set]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    const roles = (yaml: string) => [...yaml.matchAll(/kind: Role\nmetadata:\n {2}name: (\S+)\n {2}namespace: (\S+)/g)].map((m) => `${m[2]}/${m[1]}`);
    const byDefault = await rendered([]);
    expect(roles(byDefault).filter((r) => r.endsWith("-agent-modules"))).toEqual([`${NS}/${RELEASE}-${NS}-agent-modules`]);
    expect(roles(await rendered(["--set", "agent.moduleConfigMapNamespaces={a,b}"])).filter((r) => r.endsWith("-agent-modules")).map((r) => r.split("/")[0])).toEqual(["a", "b"]);
    const all = await rendered(["--set", "agent.moduleConfigMapNamespaces={*}"]);
    expect(roles(all).filter((r) => r.endsWith("-agent-modules"))).toEqual([]);
    expect(all).toMatch(/kind: ClusterRole\n[\s\S]*?-agent\n[\s\S]*?resources: \["configmaps"\]/);
  });

  it("the operator may change a KernelLivePatch's finalizers, not its spec or labels (admission policy)", async () => {
    const patch = `lp-fix-${suffix}`;
    const http = new KubeHttp(kubeconfigConnection(await cp.tokenKubeconfig(await token("kpatch-operator"))));
    const dryRun = (body: object) =>
      http.send("PATCH", `/apis/${GROUP}/${VERSION}/${PLURAL}/${patch}`, { query: { dryRun: "All", fieldManager: "kpatch-operator" }, contentType: MERGE, body }).then(() => undefined, (e: unknown) => e);
    try {
      const current = (await cluster.getPatch(patch))!;
      expect(await dryRun({ metadata: { finalizers: [...(current.metadata.finalizers ?? []), "example.com/other"] } })).toBeUndefined();
      for (const forbidden of [{ spec: { state: "Unloaded" } }, { metadata: { labels: { forged: "1" } } }, { metadata: { annotations: { forged: "1" } } }]) {
        const e = await dryRun(forbidden);
        expect(e, JSON.stringify(forbidden)).toBeInstanceOf(KubeApiError);
        expect((e as KubeApiError).code).toBe(403);
        expect((e as KubeApiError).message).toContain("may change the finalizers of a KernelLivePatch, never its spec");
      }
    } finally {
      http.close();
    }
  });

  it("the agent's policy self-check: refused with the policy, allowed without it; an agent without it does not act until it is back", async () => {
    const [a] = NODES as [string, string];
    const agentHttp = new KubeHttp(kubeconfigConnection(await cp.tokenKubeconfig(await token("kpatch-agent", `agent-${a}`))));
    try {
      // With the chart's policy (the default): refused by the admission policy.
      expect(await probeNodeWritePolicy(agentHttp, a)).toMatchObject({ kind: "denied", by: "admission" });

      // Without it: the dry run would be written.
      await helm.ok(["upgrade", RELEASE, CHART_DIR, "-n", NS, "--reuse-values", ...setArgs({ "admissionPolicy.enabled": "false" })]);
      await until("the API server without the policy", async () => (await probeNodeWritePolicy(agentHttp, a)).kind === "allowed", 30_000);
      expect(await probeNodeWritePolicy(agentHttp, a)).toMatchObject({ kind: "allowed" });
    } finally {
      agentHttp.close();
    }

    // A node joins now: its agent finds the policy missing, says so, and does not act.
    await cluster.createNode(LATE_NODE, { "klp-test/suite": `lp-${suffix}` });
    const root = await mkdtemp(path.join(tmpdir(), `klp-lp-${LATE_NODE}-`));
    roots.push(root);
    await layoutSimHost(root, { kernelRelease: RELEASE_K, transitionMs: 300 });
    const [metricsPort] = (await freePorts(1)) as [number];
    const kubeconfig = await cp.tokenKubeconfig(await token("kpatch-agent", `agent-${LATE_NODE}`));
    run(LATE_NODE, "node-agent/main.ts", {
      KUBECONFIG: kubeconfig, NODE_NAME: LATE_NODE, KPATCH_HOST_ROOT: root, KPATCH_LOADER: "sim", LOG_LEVEL: "info",
      METRICS_PORT: String(metricsPort), POLICY_RECHECK_SECONDS: "1",
    });
    const out = outputs.get(LATE_NODE)!;
    await until("the agent's refusal", () => out().includes("NodeWritePolicyMissing") || out().includes("not acting until it does"), 30_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${logs()}`);
    });
    const metricsText = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metricsText).toContain(`kpatch_agent_node_write_policy{node="${LATE_NODE}"} 0`);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status).toBe(503);
    const event = await until("the Warning event on the Node", async () => {
      const r = await cp.kubectl(["get", "events", "-n", "default", "--field-selector", `involvedObject.name=${LATE_NODE},reason=NodeWritePolicyMissing`, "-o", "json"]);
      const items = (JSON.parse(r.stdout || "{}") as { items?: Array<{ type: string; message: string }> }).items ?? [];
      return items[0];
    }, 30_000);
    expect(event.type).toBe("Warning");
    expect(event.message).toContain("not acting");
    // The operator projects the patch onto the new node's object; its agent writes nothing there.
    const patch = `lp-fix-${suffix}`;
    const lateEntry = async () =>
      ((await cluster.custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_PLURAL, name: LATE_NODE }).catch(() => undefined)) as { status?: { entries?: NodePatchEntry[] } } | undefined)
        ?.status?.entries?.find((e) => e.patch === patch);
    await until("the patch projected onto the new node", async () => {
      const o = (await cluster.custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_PLURAL, name: LATE_NODE }).catch(() => undefined)) as
        | { spec?: { patches?: Array<{ name: string }> } }
        | undefined;
      return o?.spec?.patches?.some((p) => p.name === patch);
    }, 60_000);
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await lateEntry()).toBeUndefined();
    // What an admin sees on the node's object (kubectl get klpn <node> -o yaml): the condition.
    const policyCondition = async () =>
      ((await cluster.custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_PLURAL, name: LATE_NODE })) as { status?: { conditions?: Condition[] } }).status
        ?.conditions?.find((c) => c.type === "NodeWritePolicy");
    const missing = await until("the NodeWritePolicy condition on the node's object", policyCondition, 30_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${logs()}`);
    });
    expect(missing).toMatchObject({ status: "False", reason: "NodeWritePolicyMissing" });
    expect(missing.message).toContain("not acting");

    // The policy back: the waiting agent's next check passes and it loads the patch.
    await helm.ok(["upgrade", RELEASE, CHART_DIR, "-n", NS, "--reuse-values", ...setArgs({ "admissionPolicy.enabled": "true" })]);
    await until("the late node's entry Loaded", async () => (await lateEntry())?.phase === "Loaded", 90_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${logs()}`);
    });
    expect(out()).toContain('"nodeWritePolicy":"enforced"');
    // The same apply that carries the entry carries the condition: True now, the entry kept.
    expect(await policyCondition()).toMatchObject({ status: "True", reason: "NodeWritePolicyEnforced" });
    expect(await lateEntry()).toMatchObject({ phase: "Loaded" });
  });
});
