// The Helm chart against the real control plane of the integration global setup: lint, what it
// renders, install / upgrade / uninstall, the agents' RBAC, and the admission policy that keeps each
// agent to the status of its own node's KernelLivePatchNode (with tokens bound to a Pod on a Node,
// as the kubelet would project them). No kubelet runs here: the operator pod stays Pending, which
// these tests do not need; the node objects the operator would write are written by the test.
import { readFile } from "node:fs/promises";
import https from "node:https";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { OperatorConfig } from "../../operator/config.ts";
import { desiredAgentDaemonSet } from "../../operator/agents/daemonset.ts";
import { attachControlPlane, type ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";
import { CHART_CRDS_DIR, CHART_DIR, helmClient, setArgs, type Helm, type K8sObject } from "../support/helm.ts";

const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
const ns = `klp-helm-${suffix}`;
const release = "kpatch-operator";
const nodeA = `helm-a-${suffix}`;
const nodeB = `helm-b-${suffix}`;
const agentPod = `agent-on-a-${suffix}`;
const patchName = `helm-vap-${suffix}`;
const clusterName = `${release}-${ns}`;
const agentUser = `system:serviceaccount:${ns}:kpatch-agent`;
const API_VERSION = "livepatch.kpatch.dev/v1alpha1";
const KLP_PATH = `/apis/${API_VERSION}/kernellivepatches`;
const KLPN_PATH = `/apis/${API_VERSION}/kernellivepatchnodes`;

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

/**
 * What an agent does: server-side apply of its entries into the status of the KernelLivePatchNode
 * `node` (its own, when it behaves), under the field manager of the node it runs on.
 */
function applyNodeEntries(token: string, node: string, manager: string, entries: object[], extra: object = {}) {
  return api(
    "PATCH",
    `${KLPN_PATH}/${node}/status?fieldManager=${encodeURIComponent(manager)}&force=true`,
    token,
    { apiVersion: API_VERSION, kind: "KernelLivePatchNode", metadata: { name: node }, status: { entries }, ...extra },
    "application/apply-patch+yaml",
  );
}

const entry = (node: string, phase: string, more: object = {}) => ({ patch: patchName, nodeName: node, phase, ...more });

/** What the operator does (no operator runs here): server-side apply of a node object's spec, owned by the Node. */
async function applyNodeObject(node: string): Promise<void> {
  const n = await kubectlJson(["get", "node", node]);
  const klp = await kubectlJson(["get", "kernellivepatch", patchName]);
  const obj = {
    apiVersion: API_VERSION,
    kind: "KernelLivePatchNode",
    metadata: { name: node, ownerReferences: [{ apiVersion: "v1", kind: "Node", name: node, uid: n.metadata.uid }] },
    spec: {
      patches: [
        {
          name: patchName,
          uid: klp.metadata.uid,
          generation: klp.metadata.generation,
          creationTimestamp: klp.metadata.creationTimestamp,
          admitted: true,
          spec: klp.spec,
        },
      ],
    },
  };
  await kubectlOk(["apply", "--server-side", "--field-manager=kpatch-operator", "--force-conflicts", "-f", "-"], JSON.stringify(obj));
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
  // --no-hooks: no kubelet runs the pre-delete hook's Job in this layer (the node layer runs it).
  await helm?.run(["uninstall", release, "-n", ns, "--wait=false", "--no-hooks"]);
  await cp.kubectl(["delete", "kernellivepatches", patchName, "--ignore-not-found", "--wait=false"]);
  await cp.kubectl(["delete", "kernellivepatchnodes", nodeA, nodeB, "--ignore-not-found", "--wait=false"]);
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
      set: { "agent.hostRoot": "/srv/sim-host", "agent.loader": "sim", "agent.priorityClassName": "system-node-critical", "agent.moduleCopy.runAsUser": "4242" },
      setJson: { "agent.nodeSelector": '{"kpatch.dev/enabled":"true"}', "agent.tolerations": '[{"operator":"Exists"}]', "agent.imagePullSecrets": '[{"name":"registry-creds"}]' },
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
      KLP_AGENT_IMAGE_PULL_SECRETS: [{ name: "registry-creds" }],
      KLP_AGENT_MODULE_COPY_UID: 4242,
      KLP_LEADER_ELECTION: true,
      KLP_METRICS_ADDR: ":8080",
      KLP_HEALTH_ADDR: ":8081",
    });

    // The DaemonSet the operator would create runs as the chart's agent ServiceAccount.
    const sas = byKind(objs, "ServiceAccount").map((s) => s.metadata.name);
    const ds = desiredAgentDaemonSet([kernelLivePatch("p") as any], cfg);
    expect(sas).toContain(ds?.spec?.template.spec?.serviceAccountName);
    expect(ds?.spec?.template.spec?.volumes?.find((v) => v.name === "host-sys")?.hostPath?.path).toBe("/srv/sim-host/sys");
    expect(ds?.spec?.template.spec?.imagePullSecrets).toEqual([{ name: "registry-creds" }]);
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
    // helm uninstall is refused while patches exist: a pre-delete hook runs the operator's check.
    const hook = one(objs, "Job");
    expect(hook.metadata.annotations["helm.sh/hook"]).toBe("pre-delete");
    expect(hook.spec.template.spec.containers[0].command).toEqual(["node", "/app/operator.mjs", "uninstall-check"]);
    expect(hook.spec.template.spec.serviceAccountName).toBe(deploy.spec.template.spec.serviceAccountName);
  });
});

describe("install, admission policy, upgrade, uninstall", () => {
  let boundToken: string;

  it("installs into a fresh namespace with the objects expected", async () => {
    await helm.ok(["install", release, CHART_DIR, "-n", ns, ...setArgs({ "operator.image.tag": "dev", "agent.image.tag": "dev" })]);
    // Helm applies crds/ on a first install only when the CRD is absent; apply it anyway (idempotent).
    await kubectlOk(["apply", "--server-side", "--force-conflicts", "-f", CHART_CRDS_DIR]);
    for (const crd of ["kernellivepatches", "kernellivepatchnodes"]) {
      await kubectlOk(["wait", "--for=condition=Established", `crd/${crd}.livepatch.kpatch.dev`, "--timeout=60s"]);
    }

    const deploy = await kubectlJson(["get", "deployment", release, "-n", ns]);
    expect(deploy.spec.template.spec.serviceAccountName).toBe("kpatch-operator");
    for (const sa of ["kpatch-operator", "kpatch-agent"]) await kubectlOk(["get", "serviceaccount", sa, "-n", ns]);
    await kubectlOk(["get", "role,rolebinding", release, "-n", ns]);
    for (const suffixName of ["operator", "agent"]) {
      await kubectlOk(["get", "clusterrole,clusterrolebinding", `${clusterName}-${suffixName}`]);
    }
    const vap = await kubectlJson(["get", "validatingadmissionpolicy", `${clusterName}-agent-status`]);
    expect(vap.spec.matchConditions[0].expression).toContain(agentUser);
    expect(vap.spec.matchConstraints.resourceRules.map((r: { resources: string[] }) => r.resources).flat()).toEqual(["kernellivepatchnodes/status"]);
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
    const can = async (verb: string, resource: string, extra: string[] = [], as = `--as=${agentUser}`) =>
      (await cp.kubectl(["auth", "can-i", verb, resource, as, ...extra])).stdout.trim();
    const KLPN = "kernellivepatchnodes.livepatch.kpatch.dev";
    const KLP = "kernellivepatches.livepatch.kpatch.dev";
    for (const verb of ["get", "list", "watch"]) expect(await can(verb, KLPN), `${verb} ${KLPN}`).toBe("yes");
    expect(await can("patch", KLPN, ["--subresource=status"])).toBe("yes");
    // Module ConfigMaps: the release namespace only by default (agent.moduleConfigMapNamespaces).
    expect(await can("get", "configmaps", ["-n", ns])).toBe("yes");
    expect(await can("get", "configmaps", ["-n", "default"])).toBe("no");
    expect(await can("create", "events", ["-n", "default"])).toBe("yes");
    const denied: Array<[string, string, string[]?]> = [
      // The agent no longer touches KernelLivePatches at all: the operator rolls its entries up.
      ["get", KLP], ["list", KLP], ["watch", KLP], ["patch", KLP, ["--subresource=status"]], ["update", KLP, ["--subresource=status"]],
      ["patch", KLP], ["delete", KLP],
      // Its node object: status only; the spec, its creation and deletion are the operator's.
      ["create", KLPN], ["patch", KLPN], ["update", KLPN], ["delete", KLPN], ["update", KLPN, ["--subresource=status"]],
      ["get", "secrets", ["-n", "default"]], ["list", "configmaps", ["-n", "default"]], ["patch", "nodes"], ["create", "pods", ["-n", "default"]],
    ];
    for (const [verb, res, extra = []] of denied) expect(await can(verb, res, extra), `${verb} ${res} ${extra.join(" ")}`).toBe("no");
    // The operator writes the node objects (server-side apply creates them: create + patch) and deletes
    // them, but not their status, which is the agents'.
    const op = `--as=system:serviceaccount:${ns}:kpatch-operator`;
    for (const verb of ["list", "watch", "create", "patch", "delete"]) expect(await can(verb, KLPN, [], op), `operator ${verb} ${KLPN}`).toBe("yes");
    expect(await can("patch", KLPN, ["--subresource=status"], op)).toBe("no");
    expect(await can("patch", KLP, ["--subresource=status"], op)).toBe("yes");
    // The operator may manage DaemonSets and Leases only in its own namespace.
    expect(await can("create", "daemonsets.apps", ["-n", ns], op)).toBe("yes");
    expect(await can("create", "daemonsets.apps", ["-n", "default"], op)).toBe("no");
    // ...and by name where RBAC can check one: its Lease.
    expect(await can("patch", "leases.coordination.k8s.io/kpatch-operator", ["-n", ns], op)).toBe("yes");
    expect(await can("get", "secrets", ["-n", ns], op)).toBe("no");
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

    await kubectlOk(["create", "-f", "-"], JSON.stringify(kernelLivePatch(patchName)));
    // Before the operator has written its node's object, the agent cannot bring it into being: a
    // status write never creates (and RBAC gives the agent no create).
    const early = await applyNodeEntries(boundToken, nodeA, `kpatch-agent/${nodeA}`, [entry(nodeA, "Pending")]);
    expect(early.status, JSON.stringify(early.body)).toBe(404);
    expect((await cp.kubectl(["get", "kernellivepatchnode", nodeA])).code).not.toBe(0);
    for (const n of [nodeA, nodeB]) await applyNodeObject(n);
  });

  it("lets the agent of node A read its node object as the agent does (field selector on its name)", async () => {
    const r = await api("GET", `${KLPN_PATH}?fieldSelector=${encodeURIComponent(`metadata.name=${nodeA}`)}`, boundToken);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.items.map((o: { metadata: { name: string } }) => o.metadata.name)).toEqual([nodeA]);
    expect(r.body.items[0].spec.patches.map((p: { name: string }) => p.name)).toEqual([patchName]);
  });

  it("allows the agent of node A writing the status of its own node object, and nothing else of it", async () => {
    // Node B's agent (admin here) has written its entry.
    await kubectlOk(["patch", "kernellivepatchnode", nodeB, "--subresource=status", "--type=merge", "-p", JSON.stringify({ status: { entries: [entry(nodeB, "Pending")] } })]);

    const r = await applyNodeEntries(boundToken, nodeA, `kpatch-agent/${nodeA}`, [entry(nodeA, "Loaded", { kernelRelease: "6.1.0-56-amd64" })]);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    let a = await kubectlJson(["get", "kernellivepatchnode", nodeA]);
    expect(a.status.entries).toEqual([entry(nodeA, "Loaded", { kernelRelease: "6.1.0-56-amd64" })]);
    // Changing its entries again is the agent's own business too, with any patch type.
    expect((await applyNodeEntries(boundToken, nodeA, `kpatch-agent/${nodeA}`, [entry(nodeA, "Unloaded")])).status).toBe(200);
    const merge = await api("PATCH", `${KLPN_PATH}/${nodeA}/status`, boundToken, { status: { entries: [entry(nodeA, "Staged")] } }, "application/merge-patch+json");
    expect(merge.status, JSON.stringify(merge.body)).toBe(200);

    // A spec sent to the status subresource is dropped: the operator's projection stays as it was.
    const withSpec = await applyNodeEntries(boundToken, nodeA, `kpatch-agent/${nodeA}`, [entry(nodeA, "Loaded")], { spec: { patches: [] } });
    expect(withSpec.status, JSON.stringify(withSpec.body)).toBe(200);
    a = await kubectlJson(["get", "kernellivepatchnode", nodeA]);
    expect(a.spec.patches.map((p: { name: string }) => p.name)).toEqual([patchName]);
    expect(a.status.entries).toEqual([entry(nodeA, "Loaded")]);
    // Node B's object is untouched.
    expect((await kubectlJson(["get", "kernellivepatchnode", nodeB])).status.entries).toEqual([entry(nodeB, "Pending")]);
  });

  it("denies the agent of node A writing node B's object, with the policy's message", async () => {
    const r = await applyNodeEntries(boundToken, nodeB, `kpatch-agent/${nodeA}`, [entry(nodeB, "Failed", { reason: "Forged" })]);
    expect(r.status, JSON.stringify(r.body)).toBe(403);
    expect(r.body.message).toContain(`ValidatingAdmissionPolicy '${clusterName}-agent-status'`);
    expect(r.body.message).toContain(`the agent of node ${nodeA} denied`);
    expect(r.body.message).toContain(`tried to write kernellivepatchnodes/${nodeB}`);
    expect(r.body.message).toContain(`only the status of the object of its own node, kernellivepatchnodes/${nodeA}`);
    // Whatever the patch type, and even under node B's own field manager.
    const merge = await api("PATCH", `${KLPN_PATH}/${nodeB}/status`, boundToken, { status: { entries: [] } }, "application/merge-patch+json");
    expect(merge.status, JSON.stringify(merge.body)).toBe(403);
    expect(merge.body.message).toContain(`tried to write kernellivepatchnodes/${nodeB}`);
    const asB = await applyNodeEntries(boundToken, nodeB, `kpatch-agent/${nodeB}`, [entry(nodeB, "Failed")]);
    expect(asB.status).toBe(403);
    expect((await kubectlJson(["get", "kernellivepatchnode", nodeB])).status.entries).toEqual([entry(nodeB, "Pending")]);
  });

  it("denies an agent token that is not bound to a Pod (no node claim)", async () => {
    const unbound = await agentToken();
    const r = await applyNodeEntries(unbound, nodeA, "kpatch-agent/unbound", [entry(nodeA, "Loaded")]);
    expect(r.status).toBe(403);
    expect(r.body.message).toContain(`kernellivepatchnodes/${nodeA} by ${agentUser} denied`);
    expect(r.body.message).toContain("authentication.kubernetes.io/node-name");
    expect(r.body.message).toContain("not exactly one");
  });

  it("forbids the agent writing KernelLivePatches, or its node object other than its status (RBAC)", async () => {
    const forbidden = (r: ApiResponse, verb: string, resource: string) => {
      expect(r.status, JSON.stringify(r.body)).toBe(403);
      expect(r.body.reason).toBe("Forbidden");
      expect(r.body.message).toContain(`User "${agentUser}" cannot ${verb} resource "${resource}"`);
    };
    // The old model's write, an entry in the patch's status.nodes: gone with the agent's access to patches.
    forbidden(
      await api(
        "PATCH",
        `${KLP_PATH}/${patchName}/status?fieldManager=${encodeURIComponent(`kpatch-agent/${nodeA}`)}&force=true`,
        boundToken,
        { apiVersion: API_VERSION, kind: "KernelLivePatch", metadata: { name: patchName }, status: { nodes: [{ nodeName: nodeA, phase: "Loaded" }] } },
        "application/apply-patch+yaml",
      ),
      "patch",
      "kernellivepatches/status",
    );
    forbidden(await api("GET", KLP_PATH, boundToken), "list", "kernellivepatches");
    forbidden(await api("DELETE", `${KLP_PATH}/${patchName}`, boundToken), "delete", "kernellivepatches");

    // Its own node object's spec (the operator's projection): neither update, patch nor apply; nor delete.
    const own = await kubectlJson(["get", "kernellivepatchnode", nodeA]);
    forbidden(await api("PUT", `${KLPN_PATH}/${nodeA}`, boundToken, { ...own, spec: { patches: [] } }), "update", "kernellivepatchnodes");
    forbidden(await api("PATCH", `${KLPN_PATH}/${nodeA}`, boundToken, { spec: { patches: [] } }, "application/merge-patch+json"), "patch", "kernellivepatchnodes");
    forbidden(
      await api(
        "PATCH",
        `${KLPN_PATH}/${nodeA}?fieldManager=${encodeURIComponent(`kpatch-agent/${nodeA}`)}&force=true`,
        boundToken,
        { apiVersion: API_VERSION, kind: "KernelLivePatchNode", metadata: { name: nodeA }, spec: { patches: [] } },
        "application/apply-patch+yaml",
      ),
      "patch",
      "kernellivepatchnodes",
    );
    forbidden(await api("DELETE", `${KLPN_PATH}/${nodeA}`, boundToken), "delete", "kernellivepatchnodes");
    forbidden(
      await api("POST", KLPN_PATH, boundToken, { apiVersion: API_VERSION, kind: "KernelLivePatchNode", metadata: { name: `forged-${suffix}` }, spec: { patches: [] } }),
      "create",
      "kernellivepatchnodes",
    );
    expect((await kubectlJson(["get", "kernellivepatchnode", nodeA])).spec.patches.map((p: { name: string }) => p.name)).toEqual([patchName]);
    await kubectlOk(["get", "kernellivepatch", patchName]);
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

  it("uninstalls leaving no object of the chart behind except the CRDs", async () => {
    // --no-hooks: no kubelet runs the pre-delete hook's Job in this layer (the node layer runs it).
    await helm.ok(["uninstall", release, "-n", ns, "--wait", "--no-hooks"]);
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
    // By Helm's design the CRDs (and so every KernelLivePatch and node object) survive an uninstall.
    await kubectlOk(["get", "crd", "kernellivepatches.livepatch.kpatch.dev", "kernellivepatchnodes.livepatch.kpatch.dev"]);
    await kubectlOk(["get", "kernellivepatch", patchName]);
    await kubectlOk(["get", "kernellivepatchnode", nodeA, nodeB]);
  });
});
