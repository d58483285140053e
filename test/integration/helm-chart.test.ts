// The Helm chart against the real control plane of the integration global setup: lint, what it
// renders, install / upgrade / uninstall, and the admission policy that keeps each agent to its
// own node's status entry (with tokens bound to a Pod on a Node, as the kubelet would project them).
// No kubelet runs here: the operator pod stays Pending, which these tests do not need.
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { OperatorConfig } from "../../operator/config.ts";
import { desiredAgentDaemonSet } from "../../operator/agents/daemonset.ts";
import { attachControlPlane, type ControlPlaneClient } from "../support/control-plane.ts";
import { CHART_CRDS_DIR, CHART_DIR, helmClient, setArgs, type Helm, type K8sObject } from "../support/helm.ts";

const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
const ns = `klp-helm-${suffix}`;
const release = "kpatch-operator";
const nodeA = `helm-a-${suffix}`;
const nodeB = `helm-b-${suffix}`;
const agentPod = `agent-on-a-${suffix}`;
const patchName = `helm-vap-${suffix}`;
const bigPatchName = `helm-vap-big-${suffix}`;
const clusterName = `${release}-${ns}`;
const agentUser = `system:serviceaccount:${ns}:kpatch-agent`;
const KLP_PATH = "/apis/livepatch.kpatch.dev/v1alpha1/kernellivepatches";
const BIG_STATUS_NODES = 10_000;

let cp: ControlPlaneClient;
let helm: Helm;
let ca: Buffer;

// ---------------------------------------------------------------------------------------------
// helpers

async function kubectlOk(args: string[], input?: string): Promise<string> {
  const r = await cp.kubectl(args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

async function kubectlJson<T = any>(args: string[]): Promise<T> {
  return JSON.parse(await kubectlOk([...args, "-o", "json"])) as T;
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
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms (last error: ${String(last)})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface ApiResponse {
  status: number;
  body: any;
}

/** One API request with a bearer token (no client certificate: the token is the identity). */
function api(method: string, path: string, token: string, body?: unknown, contentType = "application/json"): Promise<ApiResponse> {
  const url = new URL(path, cp.server);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca,
        agent: false,
        headers: {
          authorization: `Bearer ${token}`,
          accept: "application/json",
          ...(payload === undefined ? {} : { "content-type": contentType, "content-length": Buffer.byteLength(payload) }),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

/** What an agent does: server-side apply of its own entry into status.nodes (one field manager per node). */
function applyStatusEntries(token: string, name: string, manager: string, nodes: object[], extraStatus: object = {}) {
  return api(
    "PATCH",
    `${KLP_PATH}/${name}/status?fieldManager=${encodeURIComponent(manager)}&force=true`,
    token,
    { apiVersion: "livepatch.kpatch.dev/v1alpha1", kind: "KernelLivePatch", metadata: { name }, status: { nodes, ...extraStatus } },
    "application/apply-patch+yaml",
  );
}

function kernelLivePatch(name: string): object {
  return {
    apiVersion: "livepatch.kpatch.dev/v1alpha1",
    kind: "KernelLivePatch",
    metadata: { name },
    spec: {
      modules: [{ kernelRelease: "6.1.0-56-amd64", sha256: "a".repeat(64), configMap: { namespace: ns, name: "modules", key: "livepatch.ko" } }],
    },
  };
}

async function createReadyNode(name: string): Promise<void> {
  await kubectlOk(["create", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name, labels: { "kubernetes.io/hostname": name } } }));
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  await kubectlOk([
    "patch", "node", name, "--subresource=status", "--type=merge", "-p",
    JSON.stringify({ status: { conditions: [{ type: "Ready", status: "True", reason: "KubeletReady", message: "test node", lastHeartbeatTime: now, lastTransitionTime: now }] } }),
  ]);
}

/** A TokenRequest for the chart's agent ServiceAccount, bound to a Pod when one is given. */
async function agentToken(boundPod?: string): Promise<string> {
  const args = ["create", "token", "kpatch-agent", "-n", ns, "--duration=1h"];
  if (boundPod) args.push("--bound-object-kind=Pod", `--bound-object-name=${boundPod}`);
  return (await kubectlOk(args)).trim();
}

const byKind = (objs: K8sObject[], kind: string) => objs.filter((o) => o.kind === kind);
const one = (objs: K8sObject[], kind: string, name?: string) => {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
  return found[0] as any;
};

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  cp = await attachControlPlane(inject("controlPlaneDir"));
  helm = await helmClient({ binDir: inject("binDir"), kubeconfig: inject("kubeconfig") });
  ca = await readFile(cp.caCertPath);
  // The chart does not create its namespace; the agents it leads to are privileged.
  await kubectlOk(["create", "namespace", ns]);
  await kubectlOk(["label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged"]);
});

afterAll(async () => {
  if (!cp) return;
  await helm?.run(["uninstall", release, "-n", ns, "--wait=false"]);
  await cp.kubectl(["delete", "kernellivepatches", patchName, bigPatchName, "--ignore-not-found", "--wait=false"]);
  await cp.kubectl(["delete", "namespace", ns, `klp-helm-restricted-${suffix}`, "--ignore-not-found", "--wait=false"]);
  await cp.kubectl(["delete", "node", nodeA, nodeB, "--ignore-not-found", "--wait=false"]);
});

describe("chart", () => {
  it("passes helm lint --strict without warnings", async () => {
    const r = await helm.run(["lint", "--strict", CHART_DIR, "--namespace", ns]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("1 chart(s) linted, 0 chart(s) failed");
    expect(r.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
  });

  it("rejects an unknown value at any level (values.schema.json)", async () => {
    for (const typo of ["operatr.replicas=2", "operator.replica=2", "operator.leaderElection.enable=false", "agent.image.tags=x", "admissionPolicy.enabeld=false"]) {
      const r = await helm.run(["template", "x", CHART_DIR, "--set", typo]);
      expect(r.code, typo).not.toBe(0);
      expect(r.stderr, typo).toMatch(/additional properties|additionalProperties/i);
    }
    const bad = await helm.run(["template", "x", CHART_DIR, "--set", "agent.loader=fake"]);
    expect(bad.code).not.toBe(0);
  });

  it("sets every KLP_* variable of operator/config.ts, and they parse", async () => {
    const objs = await helm.template({
      namespace: ns,
      set: { "agent.hostRoot": "/srv/sim-host", "agent.loader": "sim", "agent.priorityClassName": "system-node-critical" },
      setJson: { "agent.nodeSelector": '{"kpatch.dev/enabled":"true"}', "agent.tolerations": '[{"operator":"Exists"}]' },
    });
    const deploy = one(objs, "Deployment");
    const container = deploy.spec.template.spec.containers[0];
    const env = container.env as Array<{ name: string; value?: string; valueFrom?: any }>;
    const names = env.map((e) => e.name).filter((n) => n.startsWith("KLP_"));
    expect([...names].sort()).toEqual(Object.keys(OperatorConfig.shape).sort());
    expect(env.find((e) => e.name === "KLP_NAMESPACE")?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.namespace");
    expect(env.find((e) => e.name === "KLP_POD_NAME")?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.name");

    // What the operator would read in its pod (downward API values filled in) parses strictly.
    const literal = Object.fromEntries(env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
    const cfg = OperatorConfig.parse({ ...literal, KLP_NAMESPACE: ns, KLP_POD_NAME: "kpatch-operator-abc" });
    expect(cfg).toMatchObject({
      KLP_AGENT_IMAGE: "kpatch-agent:0.1.0",
      KLP_AGENT_HOST_ROOT: "/srv/sim-host",
      KLP_AGENT_LOADER: "sim",
      KLP_AGENT_NODE_SELECTOR: { "kpatch.dev/enabled": "true" },
      KLP_AGENT_TOLERATIONS: [{ operator: "Exists" }],
      KLP_AGENT_PRIORITY_CLASS: "system-node-critical",
      KLP_LEADER_ELECTION: true,
      KLP_METRICS_ADDR: ":8080",
      KLP_HEALTH_ADDR: ":8081",
    });

    // The DaemonSet the operator would create runs as the chart's agent ServiceAccount.
    const sas = byKind(objs, "ServiceAccount").map((s) => s.metadata.name);
    const ds = desiredAgentDaemonSet([kernelLivePatch("p") as any], cfg);
    expect(sas).toContain(ds?.spec?.template.spec?.serviceAccountName);
    expect(ds?.spec?.template.spec?.volumes?.find((v) => v.name === "host-sys")?.hostPath?.path).toBe("/srv/sim-host/sys");
  });

  it("renders a restricted operator pod with probes, ports and no DaemonSet", async () => {
    const objs = await helm.template({ namespace: ns });
    expect(byKind(objs, "DaemonSet")).toHaveLength(0);
    expect(byKind(objs, "Namespace")).toHaveLength(0);
    const deploy = one(objs, "Deployment");
    expect(deploy.spec.replicas).toBe(1);
    const c = deploy.spec.template.spec.containers[0];
    expect(c.command).toEqual(["node", "/app/operator.mjs"]);
    expect(c.image).toBe("kpatch-operator:0.1.0");
    expect(c.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(c.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "health" });
    expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "health" });
    expect(c.ports).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: "health", containerPort: 8081 }), expect.objectContaining({ name: "metrics", containerPort: 8080 })]),
    );
    expect(c.resources.limits.memory).toBeDefined();
  });
});

describe("install, admission policy, upgrade, uninstall", () => {
  let boundToken: string;

  it("installs into a fresh namespace with the objects expected", async () => {
    await helm.ok(["install", release, CHART_DIR, "-n", ns, ...setArgs({ "operator.image.tag": "dev", "agent.image.tag": "dev" })]);
    // Helm applies crds/ on a first install only when the CRD is absent; apply it anyway (idempotent).
    await kubectlOk(["apply", "--server-side", "--force-conflicts", "-f", CHART_CRDS_DIR]);
    await kubectlOk(["wait", "--for=condition=Established", "crd/kernellivepatches.livepatch.kpatch.dev", "--timeout=60s"]);

    const deploy = await kubectlJson(["get", "deployment", release, "-n", ns]);
    expect(deploy.spec.template.spec.serviceAccountName).toBe("kpatch-operator");
    for (const sa of ["kpatch-operator", "kpatch-agent"]) await kubectlOk(["get", "serviceaccount", sa, "-n", ns]);
    await kubectlOk(["get", "role,rolebinding", release, "-n", ns]);
    for (const suffixName of ["operator", "agent"]) {
      await kubectlOk(["get", "clusterrole,clusterrolebinding", `${clusterName}-${suffixName}`]);
    }
    const vap = await kubectlJson(["get", "validatingadmissionpolicy", `${clusterName}-agent-status`]);
    expect(vap.spec.matchConditions[0].expression).toContain(agentUser);
    const binding = await kubectlJson(["get", "validatingadmissionpolicybinding", `${clusterName}-agent-status`]);
    expect(binding.spec.validationActions).toEqual(["Deny"]);

    // The API server type-checks the policy against the CRD schema: no warnings.
    const checked = await eventually("policy type checking", 30_000, async () => {
      const v = await kubectlJson(["get", "validatingadmissionpolicy", `${clusterName}-agent-status`]);
      return v.status?.observedGeneration === v.metadata.generation ? v : undefined;
    });
    expect(checked.status.typeChecking?.expressionWarnings ?? []).toEqual([]);

    // The operator pod exists (Pending: no kubelet), and its template passes Pod Security "restricted".
    await eventually("operator pod", 60_000, async () => {
      const list = await kubectlJson(["get", "pods", "-n", ns, "-l", "app.kubernetes.io/name=kpatch-operator"]);
      return list.items.length > 0 ? list.items : undefined;
    });
    const restricted = `klp-helm-restricted-${suffix}`;
    await kubectlOk(["create", "namespace", restricted]);
    await kubectlOk(["label", "namespace", restricted, "pod-security.kubernetes.io/enforce=restricted"]);
    const podSpec = { ...deploy.spec.template.spec, serviceAccountName: "default" };
    const dry = await eventually("server dry-run in a restricted namespace", 30_000, async () => {
      const r = await cp.kubectl(["create", "--dry-run=server", "-n", restricted, "-f", "-"], {
        input: JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name: "restricted-check" }, spec: podSpec }),
      });
      // The namespace's default ServiceAccount appears a moment after the namespace.
      return /serviceaccount/i.test(r.stderr) ? undefined : r;
    });
    expect(dry.stderr).not.toMatch(/violate|forbidden/i);
    expect(dry.code, dry.stderr).toBe(0);
  });

  it("gives the agent's ServiceAccount least privilege", async () => {
    const can = async (verb: string, resource: string, extra: string[] = []) =>
      (await cp.kubectl(["auth", "can-i", verb, resource, `--as=${agentUser}`, ...extra])).stdout.trim();
    expect(await can("list", "kernellivepatches.livepatch.kpatch.dev")).toBe("yes");
    expect(await can("patch", "kernellivepatches.livepatch.kpatch.dev", ["--subresource=status"])).toBe("yes");
    expect(await can("get", "configmaps", ["-n", "default"])).toBe("yes");
    expect(await can("create", "events", ["-n", "default"])).toBe("yes");
    for (const [verb, res] of [["delete", "kernellivepatches.livepatch.kpatch.dev"], ["patch", "kernellivepatches.livepatch.kpatch.dev"], ["get", "secrets"], ["list", "configmaps"], ["patch", "nodes"], ["create", "pods"]] as const) {
      expect(await can(verb, res, ["-n", "default"]), `${verb} ${res}`).toBe("no");
    }
    // The operator may manage DaemonSets and Leases only in its own namespace.
    const op = `--as=system:serviceaccount:${ns}:kpatch-operator`;
    expect((await cp.kubectl(["auth", "can-i", "create", "daemonsets.apps", "-n", ns, op])).stdout.trim()).toBe("yes");
    expect((await cp.kubectl(["auth", "can-i", "create", "daemonsets.apps", "-n", "default", op])).stdout.trim()).toBe("no");
    expect((await cp.kubectl(["auth", "can-i", "update", "leases.coordination.k8s.io", "-n", ns, op])).stdout.trim()).toBe("yes");
    expect((await cp.kubectl(["auth", "can-i", "get", "secrets", "-n", ns, op])).stdout.trim()).toBe("no");
  });

  it("binds an agent token to a Pod on node A: the token names node A", async () => {
    await createReadyNode(nodeA);
    await createReadyNode(nodeB);
    await kubectlOk(
      ["create", "-n", ns, "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: agentPod },
        spec: { nodeName: nodeA, serviceAccountName: "kpatch-agent", containers: [{ name: "agent", image: "kpatch-agent:dev", imagePullPolicy: "Never" }] },
      }),
    );
    boundToken = await agentToken(agentPod);
    const whoami = await cp.kubectl(["auth", "whoami", "-o", "json"], { kubeconfig: await cp.tokenKubeconfig(boundToken) });
    expect(whoami.code, whoami.stderr).toBe(0);
    const who = JSON.parse(whoami.stdout);
    expect(who.status.userInfo.username).toBe(agentUser);
    expect(who.status.userInfo.extra["authentication.kubernetes.io/node-name"]).toEqual([nodeA]);

    for (const name of [patchName, bigPatchName]) await kubectlOk(["create", "-f", "-"], JSON.stringify(kernelLivePatch(name)));
  });

  it("denies the agent of node A writing node B's status entry, with the policy's message", async () => {
    const r = await applyStatusEntries(boundToken, patchName, `kpatch-agent/${nodeA}`, [{ nodeName: nodeB, phase: "Loaded" }]);
    expect(r.status, JSON.stringify(r.body)).toBe(403);
    expect(r.body.message).toContain(`ValidatingAdmissionPolicy '${clusterName}-agent-status'`);
    expect(r.body.message).toContain(`the agent of node ${nodeA} denied`);
    expect(r.body.message).toContain(`touches the entries of ${nodeB}`);
  });

  it("allows the agent of node A writing its own entry, leaving others' entries alone", async () => {
    // The controller (admin here) wrote node B's entry and the operator fields first.
    await kubectlOk([
      "patch", "kernellivepatch", patchName, "--subresource=status", "--type=merge", "-p",
      JSON.stringify({ status: { observedGeneration: 1, nodes: [{ nodeName: nodeB, phase: "Pending" }] } }),
    ]);
    const r = await applyStatusEntries(boundToken, patchName, `kpatch-agent/${nodeA}`, [{ nodeName: nodeA, phase: "Loaded", kernelRelease: "6.1.0-56-amd64" }]);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const klp = await kubectlJson(["get", "kernellivepatch", patchName]);
    expect(klp.status.nodes).toEqual(
      expect.arrayContaining([{ nodeName: nodeB, phase: "Pending" }, { nodeName: nodeA, phase: "Loaded", kernelRelease: "6.1.0-56-amd64" }]),
    );
    expect(klp.status.observedGeneration).toBe(1);
    // Changing its own entry again, and removing it, are the agent's own business too.
    expect((await applyStatusEntries(boundToken, patchName, `kpatch-agent/${nodeA}`, [{ nodeName: nodeA, phase: "Unloaded" }])).status).toBe(200);
    // A mere reordering changes no entry (the policy's exact, order-insensitive path).
    const reordered = await api(
      "PATCH",
      `${KLP_PATH}/${patchName}/status`,
      boundToken,
      { status: { nodes: [{ nodeName: nodeA, phase: "Unloaded" }, { nodeName: nodeB, phase: "Pending" }] } },
      "application/merge-patch+json",
    );
    expect(reordered.status, JSON.stringify(reordered.body)).toBe(200);
  });

  it("denies the agent changing the operator's status fields or removing another node's entry", async () => {
    const r = await applyStatusEntries(boundToken, patchName, `kpatch-agent/${nodeA}`, [{ nodeName: nodeA, phase: "Loaded" }], { observedGeneration: 7 });
    expect(r.status).toBe(403);
    expect(r.body.message).toContain("it changes status.observedGeneration, which only the operator writes");

    // A JSON merge patch replaces the whole list: dropping node B's entry is a foreign change.
    const merge = await api("PATCH", `${KLP_PATH}/${patchName}/status`, boundToken, { status: { nodes: [{ nodeName: nodeA, phase: "Loaded" }] } }, "application/merge-patch+json");
    expect(merge.status).toBe(403);
    expect(merge.body.message).toContain(`touches the entries of ${nodeB}`);
  });

  it("denies an agent token that is not bound to a Pod (no node claim)", async () => {
    const unbound = await agentToken();
    const r = await applyStatusEntries(unbound, patchName, "kpatch-agent/unbound", [{ nodeName: nodeA, phase: "Loaded" }]);
    expect(r.status).toBe(403);
    expect(r.body.message).toContain("authentication.kubernetes.io/node-name");
    expect(r.body.message).toContain("not exactly one");
  });

  it("forbids the agent deleting a KernelLivePatch (RBAC)", async () => {
    const r = await api("DELETE", `${KLP_PATH}/${patchName}`, boundToken);
    expect(r.status).toBe(403);
    expect(r.body.reason).toBe("Forbidden");
    expect(r.body.message).toContain(`User "${agentUser}" cannot delete resource "kernellivepatches"`);
    await kubectlOk(["get", "kernellivepatch", patchName]);
  });

  it("stays within the CEL cost budget on a status with thousands of node entries", async () => {
    // Status plus managedFields of this many minimal entries is ~1 MiB, near what etcd stores for one
    // object (1.5 MiB): far below the CRD's maxItems, which the API server cannot reach in practice.
    const others = Array.from({ length: BIG_STATUS_NODES }, (_, i) => ({ nodeName: `n-${String(i).padStart(5, "0")}`, phase: "Loaded" }));
    const patchFile = path.join(await mkdtemp(path.join(os.tmpdir(), "klp-helm-")), "status.json");
    await writeFile(patchFile, JSON.stringify({ status: { nodes: others } }));
    await kubectlOk(["patch", "kernellivepatch", bigPatchName, "--subresource=status", "--type=merge", "--patch-file", patchFile]);
    const own = await applyStatusEntries(boundToken, bigPatchName, `kpatch-agent/${nodeA}`, [{ nodeName: nodeA, phase: "Loaded" }]);
    expect(own.status, JSON.stringify(own.body).slice(0, 500)).toBe(200);
    // The exact (map-building) path runs when the cheap ones fail, and still names the entry.
    const foreign = await applyStatusEntries(boundToken, bigPatchName, `kpatch-agent/${nodeA}`, [{ nodeName: "n-00042", phase: "Failed" }]);
    expect(foreign.status).toBe(403);
    expect(foreign.body.message).toContain("touches the entries of n-00042");
  });

  it("upgrades with a changed value", async () => {
    await helm.ok(["upgrade", release, CHART_DIR, "-n", ns, ...setArgs({ "operator.image.tag": "dev", "agent.image.tag": "dev", "operator.logLevel": "debug", "agent.loader": "sim", "operator.replicas": "2" })]);
    const deploy = await kubectlJson(["get", "deployment", release, "-n", ns]);
    expect(deploy.spec.replicas).toBe(2);
    const env = deploy.spec.template.spec.containers[0].env as Array<{ name: string; value?: string }>;
    expect(env.find((e) => e.name === "KLP_LOG_LEVEL")?.value).toBe("debug");
    expect(env.find((e) => e.name === "KLP_AGENT_LOADER")?.value).toBe("sim");
    const history = JSON.parse(await helm.ok(["history", release, "-n", ns, "-o", "json"])) as Array<{ revision: number; status: string }>;
    expect(history.at(-1)).toMatchObject({ revision: 2, status: "deployed" });
  });

  it("uninstalls leaving no object of the chart behind except the CRD", async () => {
    await helm.ok(["uninstall", release, "-n", ns, "--wait"]);
    const left = await kubectlOk([
      "get", "deployments,serviceaccounts,roles,rolebindings,services", "-n", ns, "-l", `app.kubernetes.io/instance=${release}`, "-o", "name",
    ]);
    expect(left.trim()).toBe("");
    const clusterLeft = (
      await kubectlOk(["get", "clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings", "-o", "name"])
    )
      .split("\n")
      .filter((n) => n.includes(clusterName));
    expect(clusterLeft).toEqual([]);
    // By Helm's design the CRD (and so every KernelLivePatch) survives an uninstall.
    await kubectlOk(["get", "crd", "kernellivepatches.livepatch.kpatch.dev"]);
    await kubectlOk(["get", "kernellivepatch", patchName]);
  });
});
