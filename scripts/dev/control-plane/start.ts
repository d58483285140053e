// startControlPlane(): a real Kubernetes control plane on this machine, owned by the caller.
// The sequence: resolve the binaries, make the certificates, then launch on fresh ports (etcd,
// kube-apiserver, optionally the controllers), retried when another process took a port first.
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { apiServerArgs, controllerManagerArgs, schedulerArgs, type Ports } from "./args.ts";
import { controlPlaneBinaries, resolveBinDir } from "./binaries.ts";
import { issueControlPlaneCerts, type ControlPlaneCerts } from "./certs.ts";
import { makeClient, writeState, type ControlPlaneState } from "./client.ts";
import { startApiServer, startControllers, startEtcd, type Launch } from "./components.ts";
import { writeCertKubeconfig } from "./kubeconfig.ts";
import { firstServiceIp, freePorts } from "./network.ts";
import { Components, stopProcess } from "./process.ts";
import type { ControlPlane, ControlPlaneOptions } from "./types.ts";

const LAUNCH_ATTEMPTS = 3;

/** Milliseconds per phase, as ControlPlane.timings reports them. */
class Timings {
  readonly values: Record<string, number> = {};
  mark(key: string, since: number): void {
    this.values[key] = Math.round(performance.now() - since);
  }
  async time<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const since = performance.now();
    const value = await fn();
    this.mark(key, since);
    return value;
  }
}

/** The options with their defaults applied. */
function settingsOf(opts: ControlPlaneOptions) {
  const serviceRange = opts.serviceClusterIpRange ?? "10.0.0.0/24";
  return {
    controllers: opts.controllers ?? true,
    serviceRange,
    kubernetesServiceIp: firstServiceIp(serviceRange),
    keep: opts.keep ?? (opts.dir !== undefined || !!process.env.KLP_KEEP_CONTROL_PLANE),
    log: opts.log ?? (() => {}),
  };
}
type Settings = ReturnType<typeof settingsOf>;

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const t0 = performance.now();
  const timings = new Timings();
  const settings = settingsOf(opts);
  const dir = opts.dir ? path.resolve(opts.dir) : await mkdtemp(path.join(os.tmpdir(), "klp-cp-"));
  const pki = path.join(dir, "pki");
  const logDir = path.join(dir, "logs");
  await Promise.all([mkdir(pki, { recursive: true }), mkdir(logDir, { recursive: true })]);

  const binDir = await timings.time("binaries", () => resolveBinDir(opts.binDir, controlPlaneBinaries(settings.controllers)));
  const certs = await timings.time("certs", () => issueControlPlaneCerts(pki, settings.kubernetesServiceIp));
  const components = new Components();
  const launched = await launchWithRetries(settings.log, dir, logDir, components, () =>
    launch({ dir, binDir, logDir, certs, components }, settings, opts, timings),
  );
  timings.mark("total", t0);
  settings.log(`control plane ready in ${timings.values.total} ms (${JSON.stringify(timings.values)})`);
  return ownerHandle(launched, components, timings.values, () => (settings.keep ? Promise.resolve() : rm(dir, { recursive: true, force: true })));
}

interface Launched {
  state: ControlPlaneState;
  restartApiServer: () => Promise<void>;
}

/**
 * Ports come from binding port 0 and closing it, so another process can take one before our
 * component binds it: then everything that depends on the ports is launched again.
 */
async function launchWithRetries(
  log: (line: string) => void,
  dir: string,
  logDir: string,
  components: Components,
  launchOnce: () => Promise<Launched>,
): Promise<Launched> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchOnce();
    } catch (e) {
      await components.stopAll();
      const msg = (e as Error).message;
      if (attempt < LAUNCH_ATTEMPTS && /address already in use/i.test(msg)) {
        log(`port conflict on attempt ${attempt}, retrying with new ports`);
        continue;
      }
      throw new Error(`control plane start failed (dir ${dir} kept, logs in ${logDir}): ${msg}`);
    }
  }
}

async function pickPorts(): Promise<Ports> {
  const [etcdClient, etcdPeer, apiServer, controllerManager, scheduler] = (await freePorts(5)) as [number, number, number, number, number];
  return { etcdClient, etcdPeer, apiServer, controllerManager, scheduler };
}

/** One launch on fresh ports: kubeconfigs and control-plane.json, then the components in order. */
async function launch(
  base: Omit<Launch, "ports" | "server" | "adminTls">,
  settings: Settings,
  opts: ControlPlaneOptions,
  timings: Timings,
): Promise<Launched> {
  const { dir, certs } = base;
  const ports = await pickPorts();
  const server = `https://127.0.0.1:${ports.apiServer}`;
  const caPem = await readFile(certs.ca.certPath, "utf8");
  const l: Launch = { ...base, ports, server, adminTls: await adminTls(certs, caPem) };
  const kubeconfig = (name: string, cert: ControlPlaneCerts["admin"]) => writeCertKubeconfig(path.join(dir, `${name}.kubeconfig`), server, caPem, cert);
  const [kubeconfigPath, kcmKubeconfig, schedKubeconfig] = await Promise.all([
    kubeconfig("admin", certs.admin),
    kubeconfig("kube-controller-manager", certs.controllerManager),
    kubeconfig("kube-scheduler", certs.scheduler),
  ]);
  const state = stateOf(l, settings.kubernetesServiceIp, kubeconfigPath);
  await writeState(state);

  settings.log(`starting etcd on 127.0.0.1:${ports.etcdClient}`);
  await timings.time("etcd", () => startEtcd(l));
  settings.log(`starting kube-apiserver on ${server}`);
  const apiArgs = apiServerArgs(certs, ports, settings.serviceRange, opts.extraApiServerArgs ?? []);
  await timings.time("kube-apiserver", () => startApiServer(l, apiArgs));
  if (settings.controllers) {
    settings.log("starting kube-controller-manager and kube-scheduler");
    const controllerManager = controllerManagerArgs(certs, {
      kubeconfig: kcmKubeconfig,
      port: ports.controllerManager,
      serviceRange: settings.serviceRange,
      nodeMonitorGracePeriod: opts.nodeMonitorGracePeriod ?? "1h",
      extra: opts.extraControllerManagerArgs ?? [],
    });
    const scheduler = schedulerArgs(schedKubeconfig, ports.scheduler, opts.extraSchedulerArgs ?? []);
    await timings.time("controllers", () => startControllers(l, { controllerManager, scheduler }, (name, since) => timings.mark(name, since)));
  }
  return { state, restartApiServer: () => startApiServer(l, apiArgs) };
}

async function adminTls(certs: ControlPlaneCerts, caPem: string) {
  const [cert, key] = await Promise.all([readFile(certs.admin.certPath), readFile(certs.admin.keyPath)]);
  return { ca: Buffer.from(caPem), cert, key };
}

function stateOf(l: Launch, kubernetesServiceIp: string, kubeconfigPath: string): ControlPlaneState {
  const { certs } = l;
  return {
    dir: l.dir, binDir: l.binDir, server: l.server, apiServerPort: l.ports.apiServer, etcdClientPort: l.ports.etcdClient,
    kubernetesServiceIp, kubeconfigPath,
    caCertPath: certs.ca.certPath, caKeyPath: certs.ca.keyPath,
    serviceAccountKeyPath: certs.serviceAccountKeyPath, serviceAccountPubPath: certs.serviceAccountPubPath,
    adminCertPath: certs.admin.certPath, adminKeyPath: certs.admin.keyPath,
  };
}

/** The owner's handle: the client plus restart, stop, pids and memory. */
function ownerHandle(launched: Launched, components: Components, timings: Record<string, number>, cleanUp: () => Promise<void>): ControlPlane {
  let stopped = false;
  let restarts = 0;
  return {
    ...makeClient(launched.state),
    timings,
    pids: () => components.pids(),
    memory: () => components.memory(),
    async restartApiServer() {
      if (stopped) throw new Error("control plane is stopped");
      const since = performance.now();
      const p = components.get("kube-apiserver");
      if (p) await stopProcess(p);
      await launched.restartApiServer();
      timings[`restartApiServer#${++restarts}`] = Math.round(performance.now() - since);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await components.stopAll();
      await cleanUp();
    },
  };
}
