import { describe, expect, it } from "vitest";
import { KernelLivePatch as KernelLivePatchSchema, type KernelLivePatch } from "../../crds/schema.ts";
import { loadOperatorConfig } from "../config.ts";
import { desiredAgentDaemonSet, unionAffinity, unionTolerations } from "./daemonset.ts";

const IMG = `reg/mods:1@sha256:${"c".repeat(64)}`;
const cfg = loadOperatorConfig({ KLP_NAMESPACE: "kpatch-system", KLP_AGENT_IMAGE: "agent:1" });
const patch = (name: string, spec: Record<string, unknown> = {}): KernelLivePatch =>
  KernelLivePatchSchema.parse({
    apiVersion: "livepatch.kpatch.dev/v1alpha1",
    kind: "KernelLivePatch",
    metadata: { name },
    spec: { modules: [{ kernelRelease: "6.1.0-56-amd64", sha256: "a".repeat(64), url: "https://example.com/m.ko" }], ...spec },
  });

describe("unionAffinity", () => {
  it.each<[string, Parameters<typeof unionAffinity>[0], number | undefined]>([
    ["no selector targets every node", [undefined], undefined],
    ["an empty selector among others targets every node", [{ matchLabels: { a: "1" } }, {}], undefined],
    ["one term per distinct selector", [{ matchLabels: { a: "1" } }, { matchLabels: { b: "2" } }], 2],
    ["identical selectors share a term", [{ matchLabels: { a: "1" } }, { matchExpressions: [{ key: "a", operator: "In", values: ["1"] }] }], 1],
  ])("%s", (_n, selectors, terms) => {
    expect(unionAffinity(selectors)?.length).toBe(terms);
  });
  it("does not depend on the order of patches", () => {
    const a = { matchLabels: { a: "1" } };
    const b = { matchLabels: { b: "2" } };
    expect(unionAffinity([a, b])).toEqual(unionAffinity([b, a]));
  });
});

describe("unionTolerations", () => {
  it("dedupes, and does not depend on order", () => {
    const t = { key: "k", operator: "Exists" as const, effect: "NoSchedule" as const };
    const u = { key: "a", operator: "Exists" as const };
    const merged = unionTolerations([[t], [{ ...t }], [u]]);
    expect(merged).toHaveLength(2);
    expect(merged).toEqual(expect.arrayContaining([t, u]));
    expect(unionTolerations([[u], [t]])).toEqual(merged);
  });
});

describe("desiredAgentDaemonSet", () => {
  it("is absent without patches", () => expect(desiredAgentDaemonSet([], cfg)).toBeUndefined());

  it("runs an unprivileged agent by default: CAP_SYS_MODULE only, RuntimeDefault seccomp, read-only root, no escalation", () => {
    const pod = desiredAgentDaemonSet([patch("p1")], cfg)!.spec!.template.spec!;
    const agent = pod.containers[0]!;
    expect(agent.securityContext).toEqual({
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsUser: 0,
      runAsNonRoot: false,
      capabilities: { drop: ["ALL"], add: ["SYS_MODULE"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(pod.securityContext?.seccompProfile).toEqual({ type: "RuntimeDefault" });
    expect(pod.hostPID).toBe(false);
    expect(pod.hostNetwork).toBeUndefined();
  });

  it("mounts the host paths the agent reads and writes, each at its host path: of /sys only those, /proc read-only", () => {
    const pod = desiredAgentDaemonSet([patch("p1")], cfg)!.spec!.template.spec!;
    const agent = pod.containers[0]!;
    const hostPaths = pod.volumes!.filter((v) => v.hostPath).map((v) => [v.hostPath!.path, v.hostPath!.type]);
    expect(hostPaths).toEqual([
      ["/var/lib/kpatch", "DirectoryOrCreate"],
      ["/sys/kernel/livepatch", "Directory"],
      ["/sys/module", "Directory"],
      ["/sys/kernel/security", "Directory"],
      ["/proc", "Directory"],
    ]);
    const mounts = Object.fromEntries(agent.volumeMounts!.map((m) => [m.mountPath, m.readOnly === true ? "ro" : "rw"]));
    expect(mounts).toEqual({
      "/host/var/lib/kpatch": "rw",
      "/host/sys/kernel/livepatch": "rw",
      "/host/sys/module": "ro",
      "/host/sys/kernel/security": "ro",
      "/host/proc": "ro",
      "/var/run/secrets/kubernetes.io/serviceaccount": "ro",
      "/var/run/kpatch-agent/modules": "ro",
      "/tmp": "rw",
    });
    for (const whole of ["/", "/sys"]) expect(hostPaths.map(([p]) => p)).not.toContain(whole);
  });

  it("pulls a module image where absent (it is pinned by digest), whatever the agent image's pull policy", () => {
    const p = patch("img", { modules: [{ kernelRelease: "r", sha256: "b".repeat(64), image: { reference: IMG, path: "/m/x.ko" } }] });
    const init = desiredAgentDaemonSet([p], { ...cfg, KLP_AGENT_IMAGE_PULL_POLICY: "Never" })!.spec!.template.spec!.initContainers!;
    expect(init.map((c) => [c.name, c.imagePullPolicy])).toEqual([["module-copy-tools", "Never"], ["module-0", "IfNotPresent"]]);
  });

  it("gives image-module init containers no capability and no privilege escalation, a read-only root, a fixed non-root UID and seccomp", () => {
    const p = patch("img", { modules: [{ kernelRelease: "r", sha256: "b".repeat(64), image: { reference: IMG, path: "/m/x.ko" } }] });
    const init = desiredAgentDaemonSet([p], cfg)!.spec!.template.spec!.initContainers!;
    expect(init).toHaveLength(2);
    for (const c of init) {
      expect(c.securityContext, c.name).toEqual({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ["ALL"] },
        privileged: false,
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        seccompProfile: { type: "RuntimeDefault" },
      });
    }
    const uid = desiredAgentDaemonSet([p], { ...cfg, KLP_AGENT_MODULE_COPY_UID: 4242 })!.spec!.template.spec!.initContainers!;
    expect(uid.map((c) => c.securityContext?.runAsUser)).toEqual([4242, 4242]);
  });

  it("mounts the ServiceAccount token into the agent container only: the pod automounts none, so the copying containers have none", () => {
    const p = patch("img", { modules: [{ kernelRelease: "r", sha256: "b".repeat(64), image: { reference: IMG, path: "/m/x.ko" } }] });
    for (const pod of [desiredAgentDaemonSet([p], cfg)!.spec!.template.spec!, desiredAgentDaemonSet([patch("p1")], cfg)!.spec!.template.spec!]) {
      expect(pod.automountServiceAccountToken).toBe(false);
      const tokenVolumes = pod.volumes!.filter((v) => v.projected?.sources?.some((s) => s.serviceAccountToken));
      expect(tokenVolumes.map((v) => v.name)).toEqual(["kube-api-access"]);
      expect(tokenVolumes[0]!.projected!.sources).toEqual([
        { serviceAccountToken: { path: "token", expirationSeconds: 3607 } },
        { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
        { downwardAPI: { items: [{ path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }] } },
      ]);
      expect(pod.containers[0]!.volumeMounts).toContainEqual({ name: "kube-api-access", mountPath: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true });
      for (const c of pod.initContainers ?? []) expect(c.volumeMounts!.map((m) => m.name), c.name).not.toContain("kube-api-access");
    }
  });

  it("renders the chart's imagePullSecrets and those of the patches' image sources, once each, sorted; none without any", () => {
    const img = (name: string, sha: string, pullSecrets?: Array<{ name: string }>) =>
      patch(name, { modules: [{ kernelRelease: "r", sha256: sha.repeat(64), image: { reference: IMG, path: "/m/x.ko", ...(pullSecrets ? { pullSecrets } : {}) } }] });
    const withChart = { ...cfg, KLP_AGENT_IMAGE_PULL_SECRETS: [{ name: "chart-creds" }, { name: "a-creds" }] };
    const pod = desiredAgentDaemonSet([img("a", "b", [{ name: "team-creds" }, { name: "a-creds" }]), img("b", "c", [{ name: "team-creds" }])], withChart)!.spec!.template.spec!;
    expect(pod.imagePullSecrets).toEqual([{ name: "a-creds" }, { name: "chart-creds" }, { name: "team-creds" }]);
    expect(desiredAgentDaemonSet([patch("p1")], withChart)!.spec!.template.spec!.imagePullSecrets).toEqual([{ name: "a-creds" }, { name: "chart-creds" }]);
    expect(desiredAgentDaemonSet([img("a", "b", [{ name: "team-creds" }])], cfg)!.spec!.template.spec!.imagePullSecrets).toEqual([{ name: "team-creds" }]);
    expect(desiredAgentDaemonSet([patch("p1")], cfg)!.spec!.template.spec!).not.toHaveProperty("imagePullSecrets");
  });

  it("tells the agent to act without the node write policy only when configured so", () => {
    const env = (c: typeof cfg) => desiredAgentDaemonSet([patch("p1")], c)!.spec!.template.spec!.containers[0]!.env!.map((e) => e.name);
    expect(env(cfg)).not.toContain("KPATCH_ALLOW_WITHOUT_NODE_WRITE_POLICY");
    expect(desiredAgentDaemonSet([patch("p1")], { ...cfg, KLP_AGENT_ALLOW_WITHOUT_NODE_WRITE_POLICY: true })!.spec!.template.spec!.containers[0]!.env).toContainEqual({
      name: "KPATCH_ALLOW_WITHOUT_NODE_WRITE_POLICY",
      value: "true",
    });
  });

  it("runs a privileged agent with the host mounts when configured so, and the node name from the downward API", () => {
    const ds = desiredAgentDaemonSet([patch("p1", { nodeSelector: { matchLabels: { pool: "a" } } })], { ...cfg, KLP_AGENT_PRIVILEGED: true })!;
    const pod = ds.spec!.template.spec!;
    const agent = pod.containers[0]!;
    expect(agent.securityContext?.privileged).toBe(true);
    expect(agent.env).toContainEqual({ name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } });
    expect(pod.volumes?.map((v) => v.hostPath?.path).filter(Boolean)).toEqual(["/var/lib/kpatch", "/sys", "/proc"]);
    expect(agent.volumeMounts?.find((m) => m.name === "host-proc")?.readOnly).toBe(true);
    expect(pod.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms).toEqual([
      { matchExpressions: [{ key: "pool", operator: "In", values: ["a"] }] },
    ]);
  });

  it("is the same object whatever order the patches come in", () => {
    const a = patch("a", { nodeSelector: { matchLabels: { x: "1" } }, tolerations: [{ operator: "Exists" }] });
    const b = patch("b", { nodeSelector: { matchLabels: { y: "1" } } });
    expect(desiredAgentDaemonSet([a, b], cfg)).toEqual(desiredAgentDaemonSet([b, a], cfg));
  });

  it("points every host mount under a configured host root (tests and demos)", () => {
    const ds = desiredAgentDaemonSet([patch("p")], { ...cfg, KLP_AGENT_HOST_ROOT: "/tmp/sim/node-a/", KLP_AGENT_LOADER: "sim" })!;
    const paths = ds.spec!.template.spec!.volumes!.map((v) => v.hostPath?.path).filter(Boolean);
    expect(paths).toEqual(["/tmp/sim/node-a/var/lib/kpatch", "/tmp/sim/node-a/sys", "/tmp/sim/node-a/proc", "/tmp/sim/node-a/.kpatch-sim"]);
    // The simulated host runs under the same unprivileged securityContext as a real one.
    expect(ds.spec!.template.spec!.containers[0]!.securityContext?.privileged).toBe(false);
    const real = desiredAgentDaemonSet([patch("p")], { ...cfg, KLP_AGENT_HOST_ROOT: "/srv/root/" })!;
    expect(real.spec!.template.spec!.volumes!.map((v) => v.hostPath?.path).filter(Boolean)).toEqual([
      "/srv/root/var/lib/kpatch", "/srv/root/sys/kernel/livepatch", "/srv/root/sys/module", "/srv/root/sys/kernel/security", "/srv/root/proc",
    ]);
  });

  it("copies image-sourced modules with one init container per digest, with the agent image's static busybox: the module image needs no cp", () => {
    const p = patch("img", {
      modules: [{ kernelRelease: "r", sha256: "b".repeat(64), image: { reference: IMG, path: "/m/x.ko" } }],
    });
    const pod = desiredAgentDaemonSet([p], cfg)!.spec!.template.spec!;
    const init = pod.initContainers!;
    expect(init.map((c) => [c.name, c.image])).toEqual([["module-copy-tools", "agent:1"], ["module-0", IMG]]);
    expect(init[0]!.command).toEqual(["/bin/busybox", "cp", "/bin/busybox", "/var/run/kpatch-agent/copy-tools/busybox"]);
    expect(init[1]!.command).toEqual(["/var/run/kpatch-agent/copy-tools/busybox", "cp", "/m/x.ko", `/var/run/kpatch-agent/modules/${"b".repeat(64)}.ko`]);
    expect(init[1]!.volumeMounts).toEqual([
      { name: "module-copy-tools", mountPath: "/var/run/kpatch-agent/copy-tools", readOnly: true },
      { name: "image-modules", mountPath: "/var/run/kpatch-agent/modules" },
    ]);
    expect(pod.volumes!.filter((v) => v.emptyDir).map((v) => v.name)).toEqual(["image-modules", "module-copy-tools", "tmp"]);
    // Without an image source: no init container and no tools volume.
    const plain = desiredAgentDaemonSet([patch("p1")], cfg)!.spec!.template.spec!;
    expect(plain.initContainers).toBeUndefined();
    expect(plain.volumes!.filter((v) => v.emptyDir).map((v) => v.name)).toEqual(["image-modules", "tmp"]);
  });

  it("probes the agent by default, and not when its metrics port is 0", () => {
    const byDefault = desiredAgentDaemonSet([patch("p1")], cfg)!.spec!.template.spec!.containers[0]!;
    expect(byDefault.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "metrics" });
    expect(byDefault.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "metrics" });
    const plain = desiredAgentDaemonSet([patch("p1")], { ...cfg, KLP_AGENT_METRICS_PORT: 0 })!.spec!.template.spec!.containers[0]!;
    expect(plain.livenessProbe).toBeUndefined();
    expect(plain.ports).toBeUndefined();
    const withPort = desiredAgentDaemonSet([patch("p1")], { ...cfg, KLP_AGENT_METRICS_PORT: 9464 })!.spec!.template.spec!.containers[0]!;
    expect(withPort.env).toContainEqual({ name: "METRICS_PORT", value: "9464" });
    expect(withPort.ports).toEqual([{ name: "metrics", containerPort: 9464, protocol: "TCP" }]);
    expect(withPort.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "metrics" });
    expect(withPort.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "metrics" });
  });

  it("gives the agent the module size limit and the resources the configuration names", () => {
    const c = loadOperatorConfig({ KLP_AGENT_MAX_MODULE_BYTES: String(64 * 1024 * 1024), KLP_AGENT_MEMORY_LIMIT: "192Mi", KLP_AGENT_MEMORY_REQUEST: "64Mi" });
    const agent = desiredAgentDaemonSet([patch("p1")], c)!.spec!.template.spec!.containers[0]!;
    expect(agent.env).toContainEqual({ name: "KPATCH_MAX_MODULE_BYTES", value: String(64 * 1024 * 1024) });
    expect(agent.resources).toEqual({ requests: { cpu: "10m", memory: "64Mi" }, limits: { memory: "192Mi" } });
  });
});

describe("the agent's memory limit and module size limit", () => {
  it.each<[string, Record<string, string>, boolean]>([
    ["the defaults agree (16 MiB modules, 128Mi)", {}, true],
    ["an 18 MiB module limit fits in 128Mi (64Mi + 2 x 18 MiB = 100Mi)", { KLP_AGENT_MAX_MODULE_BYTES: String(18 * 1024 * 1024) }, true],
    ["64 MiB modules in 128Mi: refused", { KLP_AGENT_MAX_MODULE_BYTES: String(64 * 1024 * 1024) }, false],
    ["64 MiB modules in 192Mi: accepted", { KLP_AGENT_MAX_MODULE_BYTES: String(64 * 1024 * 1024), KLP_AGENT_MEMORY_LIMIT: "192Mi" }, true],
    ["a limit that is not a quantity: refused", { KLP_AGENT_MEMORY_LIMIT: "lots" }, false],
  ])("%s", (_n, env, ok) => {
    if (ok) expect(() => loadOperatorConfig(env)).not.toThrow();
    else expect(() => loadOperatorConfig(env)).toThrow(/memory/);
  });
});
