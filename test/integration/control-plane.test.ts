// Smoke test of the control-plane fixture (scripts/dev/control-plane/) and the global setup.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { attachControlPlane, startControlPlane, type ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";

const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
const ns = `cp-smoke-${suffix}`;
const nodeName = `cp-smoke-node-${suffix}`;

let cp: ControlPlaneClient;

async function kubectlOk(args: string[], opts: { input?: string; kubeconfig?: string } = {}): Promise<string> {
  const r = await cp.kubectl(args, opts);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

async function kubectlJson<T = any>(args: string[], opts: { input?: string; kubeconfig?: string } = {}): Promise<T> {
  return JSON.parse(await kubectlOk([...args, "-o", "json"], opts)) as T;
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

beforeAll(async () => {
  cp = await attachControlPlane(inject("controlPlaneDir"));
  await kubectlOk(["create", "namespace", ns]);
});

afterAll(async () => {
  if (!cp) return;
  await cp.kubectl(["delete", "namespace", ns, "--wait=false"]);
  await cp.kubectl(["delete", "node", nodeName, "--wait=false"]);
});

describe("shared control plane (global setup)", () => {
  it("provides the kubeconfig and binaries and serves v1.37.2", async () => {
    expect(inject("kubeconfig")).toBe(cp.kubeconfigPath);
    expect(inject("binDir")).toBe(cp.binDir);
    expect(process.env.KUBECONFIG).toBe(cp.kubeconfigPath); // set by the global setup before workers start
    expect(cp.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const v = await kubectlJson<{ clientVersion: { gitVersion: string }; serverVersion: { gitVersion: string } }>(["version"]);
    expect(v.serverVersion.gitVersion).toBe("v1.37.2");
    expect(v.clientVersion.gitVersion).toBe("v1.37.2");
  });

  it("has the kubernetes Service on the first address of the service range", async () => {
    const svc = await kubectlJson(["get", "service", "kubernetes", "-n", "default"]);
    expect(svc.spec.clusterIP).toBe(cp.kubernetesServiceIp);
    expect(cp.kubernetesServiceIp).toBe("10.0.0.1");
  });

  it("accepts a Node with a Ready condition and schedules a DaemonSet pod onto it", async () => {
    await kubectlOk(["create", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: nodeName, labels: { "kubernetes.io/hostname": nodeName, "klp-smoke": suffix } },
      }),
    });
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    await kubectlOk([
      "patch", "node", nodeName, "--subresource=status", "--type=merge", "-p",
      JSON.stringify({
        status: {
          conditions: [
            { type: "Ready", status: "True", reason: "KubeletReady", message: "fake node", lastHeartbeatTime: now, lastTransitionTime: now },
          ],
          addresses: [{ type: "InternalIP", address: "10.1.2.3" }, { type: "Hostname", address: nodeName }],
          capacity: { cpu: "4", memory: "8Gi", pods: "110" },
          allocatable: { cpu: "4", memory: "8Gi", pods: "110" },
        },
      }),
    ]);
    const node = await kubectlJson(["get", "node", nodeName]);
    expect(node.status.conditions.find((c: { type: string }) => c.type === "Ready")?.status).toBe("True");

    await kubectlOk(["create", "serviceaccount", "agent", "-n", ns]);
    await kubectlOk(["create", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "apps/v1",
        kind: "DaemonSet",
        metadata: { name: "agent", namespace: ns },
        spec: {
          selector: { matchLabels: { app: "agent" } },
          template: {
            metadata: { labels: { app: "agent" } },
            spec: {
              serviceAccountName: "agent",
              nodeSelector: { "klp-smoke": suffix },
              containers: [{ name: "agent", image: "registry.invalid/agent:none" }],
            },
          },
        },
      }),
    });
    const pod = await eventually("DaemonSet pod bound to the node", 90_000, async () => {
      const pods = await kubectlJson<{ items: any[] }>(["get", "pods", "-n", ns, "-l", "app=agent"]);
      return pods.items.find((p) => p.spec.nodeName === nodeName);
    });
    expect(pod.status.phase).toBe("Pending"); // no kubelet
    expect(pod.status.conditions.find((c: { type: string }) => c.type === "PodScheduled")?.status).toBe("True");
  });

  it("issues client certificates whose identity the API server sees", async () => {
    const id = await cp.issueClientCert("system:node:x", ["system:nodes"]);
    const who = await kubectlJson(["auth", "whoami"], { kubeconfig: id.kubeconfigPath });
    expect(who.status.userInfo.username).toBe("system:node:x");
    expect(who.status.userInfo.groups).toEqual(expect.arrayContaining(["system:nodes", "system:authenticated"]));
  });

  it("gives pod-bound ServiceAccount tokens that carry the node name", async () => {
    const pod = await eventually("bound DaemonSet pod", 90_000, async () => {
      const pods = await kubectlJson<{ items: any[] }>(["get", "pods", "-n", ns, "-l", "app=agent"]);
      return pods.items.find((p) => p.spec.nodeName === nodeName);
    });
    const token = (
      await kubectlOk([
        "create", "token", "agent", "-n", ns, "--duration=10m",
        "--bound-object-kind=Pod", `--bound-object-name=${pod.metadata.name}`, `--bound-object-uid=${pod.metadata.uid}`,
      ])
    ).trim();
    const anonymous = await cp.tokenKubeconfig();
    const who = await kubectlJson(["auth", "whoami", `--token=${token}`], { kubeconfig: anonymous });
    const user = who.status.userInfo;
    expect(user.username).toBe(`system:serviceaccount:${ns}:agent`);
    expect(user.extra["authentication.kubernetes.io/node-name"]).toEqual([nodeName]);
    expect(user.extra["authentication.kubernetes.io/pod-name"]).toEqual([pod.metadata.name]);
    // the same through a kubeconfig holding the token
    const who2 = await kubectlJson(["auth", "whoami"], { kubeconfig: await cp.tokenKubeconfig(token) });
    expect(who2.status.userInfo.username).toBe(user.username);
  });
});

describe("a private control plane (no controllers)", () => {
  it("keeps its data across restartApiServer() and stops cleanly", async () => {
    const own = await startControlPlane({ controllers: false, binDir: inject("binDir") });
    try {
      expect(own.timings.total).toBeGreaterThan(0);
      expect(own.timings["kube-apiserver"]).toBeGreaterThan(0);
      const before = own.server;
      const r1 = await own.kubectl(["create", "configmap", "survivor", "-n", "default", "--from-literal=k=v"]);
      expect(r1.code, r1.stderr).toBe(0);
      const oldPid = own.pids()["kube-apiserver"];
      await own.restartApiServer();
      expect(own.server).toBe(before);
      expect(own.pids()["kube-apiserver"]).not.toBe(oldPid);
      const r2 = await own.kubectl(["get", "configmap", "survivor", "-n", "default", "-o", "jsonpath={.data.k}"]);
      expect(r2.code, r2.stderr).toBe(0);
      expect(r2.stdout).toBe("v");
      const mem = await own.memory();
      expect(mem["kube-apiserver"]).toBeGreaterThan(0);
    } finally {
      const pids = Object.values(own.pids());
      await own.stop();
      for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
    }
  });
});
