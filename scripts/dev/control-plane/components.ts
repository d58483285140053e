// Starting each component and waiting until it is usable (the steps of one launch).
import { rm } from "node:fs/promises";
import path from "node:path";
import type { Ports } from "./args.ts";
import { etcdArgs } from "./args.ts";
import type { ControlPlaneCerts } from "./certs.ts";
import { httpGet, type TlsCreds } from "./http-get.ts";
import { startProcess, waitFor, type Components } from "./process.ts";

/** One launch's fixed inputs: where things are, which ports, and how to reach the API server. */
export interface Launch {
  dir: string;
  binDir: string;
  logDir: string;
  certs: ControlPlaneCerts;
  ports: Ports;
  /** https://127.0.0.1:<apiServer port> */
  server: string;
  adminTls: TlsCreds;
  components: Components;
}

function start(l: Launch, name: string, args: string[]) {
  return startProcess(name, path.join(l.binDir, name), args, l.logDir).then((p) => l.components.add(p));
}

/** etcd on a fresh data directory, until /health says true. */
export async function startEtcd(l: Launch): Promise<void> {
  const dataDir = path.join(l.dir, "etcd");
  await rm(dataDir, { recursive: true, force: true });
  const etcd = await start(l, "etcd", etcdArgs(dataDir, l.ports));
  await waitFor(etcd, "/health ok", 30_000, async () => {
    const r = await httpGet(`http://127.0.0.1:${l.ports.etcdClient}/health`, undefined);
    return r.status === 200 && r.body.includes('"true"');
  });
}

/** kube-apiserver, until /readyz is ok (also used to restart it on the same port). */
export async function startApiServer(l: Launch, args: string[]): Promise<void> {
  const apiServer = await start(l, "kube-apiserver", args);
  await waitFor(apiServer, "/readyz ok", 120_000, async () => (await httpGet(`${l.server}/readyz`, l.adminTls)).status === 200);
}

/**
 * kube-controller-manager and kube-scheduler, until both answer /healthz and the `default`
 * namespace has what its service-account controllers make (a Pod can be created there at once).
 * `started(name, since)` records when each one became healthy.
 */
export async function startControllers(
  l: Launch,
  args: { controllerManager: string[]; scheduler: string[] },
  started: (name: string, since: number) => void,
): Promise<void> {
  const kcm = await start(l, "kube-controller-manager", args.controllerManager);
  const sched = await start(l, "kube-scheduler", args.scheduler);
  const healthz = (port: number) => async () => (await httpGet(`https://127.0.0.1:${port}/healthz`, {})).status === 200;
  const since = performance.now();
  await Promise.all([
    waitFor(kcm, "/healthz ok", 60_000, healthz(l.ports.controllerManager)).then(() => started("kube-controller-manager", since)),
    waitFor(sched, "/healthz ok", 60_000, healthz(l.ports.scheduler)).then(() => started("kube-scheduler", since)),
  ]);
  await waitFor(kcm, "ServiceAccount default/default and ConfigMap kube-root-ca.crt", 60_000, async () => {
    const [sa, cm] = await Promise.all([
      httpGet(`${l.server}/api/v1/namespaces/default/serviceaccounts/default`, l.adminTls),
      httpGet(`${l.server}/api/v1/namespaces/default/configmaps/kube-root-ca.crt`, l.adminTls),
    ]);
    return sa.status === 200 && cm.status === 200;
  });
}
