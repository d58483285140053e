// Command lines of the components: pure functions of the ports, certificates and options.
import type { ControlPlaneCerts } from "./certs.ts";

export interface Ports {
  etcdClient: number;
  etcdPeer: number;
  apiServer: number;
  controllerManager: number;
  scheduler: number;
}

export function etcdArgs(dataDir: string, ports: Ports): string[] {
  return [
    "--name=default",
    `--data-dir=${dataDir}`,
    `--listen-client-urls=http://127.0.0.1:${ports.etcdClient}`,
    `--advertise-client-urls=http://127.0.0.1:${ports.etcdClient}`,
    `--listen-peer-urls=http://127.0.0.1:${ports.etcdPeer}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${ports.etcdPeer}`,
    `--initial-cluster=default=http://127.0.0.1:${ports.etcdPeer}`,
    "--unsafe-no-fsync",
    "--log-level=warn",
  ];
}

export function apiServerArgs(certs: ControlPlaneCerts, ports: Ports, serviceRange: string, extra: string[]): string[] {
  return [
    `--etcd-servers=http://127.0.0.1:${ports.etcdClient}`,
    `--secure-port=${ports.apiServer}`,
    "--bind-address=127.0.0.1",
    `--tls-cert-file=${certs.serving.certPath}`,
    `--tls-private-key-file=${certs.serving.keyPath}`,
    `--client-ca-file=${certs.ca.certPath}`,
    `--kubelet-client-certificate=${certs.kubeletClient.certPath}`,
    `--kubelet-client-key=${certs.kubeletClient.keyPath}`,
    "--kubelet-preferred-address-types=InternalIP",
    `--requestheader-client-ca-file=${certs.frontProxyCa.certPath}`,
    "--requestheader-allowed-names=front-proxy-client",
    "--requestheader-username-headers=X-Remote-User",
    "--requestheader-group-headers=X-Remote-Group",
    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
    `--proxy-client-cert-file=${certs.frontProxyClient.certPath}`,
    `--proxy-client-key-file=${certs.frontProxyClient.keyPath}`,
    "--authorization-mode=Node,RBAC",
    "--enable-admission-plugins=NodeRestriction",
    "--allow-privileged=true",
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
    `--service-account-key-file=${certs.serviceAccountPubPath}`,
    `--service-account-signing-key-file=${certs.serviceAccountKeyPath}`,
    `--service-cluster-ip-range=${serviceRange}`,
    "--profiling=false",
    ...extra,
  ];
}

export interface ControllerManagerSettings {
  kubeconfig: string;
  port: number;
  serviceRange: string;
  nodeMonitorGracePeriod: string;
  extra: string[];
}

export function controllerManagerArgs(certs: ControlPlaneCerts, s: ControllerManagerSettings): string[] {
  return [
    `--kubeconfig=${s.kubeconfig}`,
    `--authentication-kubeconfig=${s.kubeconfig}`,
    `--authorization-kubeconfig=${s.kubeconfig}`,
    "--bind-address=127.0.0.1",
    `--secure-port=${s.port}`,
    "--leader-elect=false",
    "--controllers=*,-nodeipam",
    `--service-account-private-key-file=${certs.serviceAccountKeyPath}`,
    `--root-ca-file=${certs.ca.certPath}`,
    "--use-service-account-credentials=true",
    `--cluster-signing-cert-file=${certs.ca.certPath}`,
    `--cluster-signing-key-file=${certs.ca.keyPath}`,
    `--service-cluster-ip-range=${s.serviceRange}`,
    `--node-monitor-grace-period=${s.nodeMonitorGracePeriod}`,
    "--profiling=false",
    ...s.extra,
  ];
}

export function schedulerArgs(kubeconfig: string, port: number, extra: string[]): string[] {
  return [
    `--kubeconfig=${kubeconfig}`,
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
    "--bind-address=127.0.0.1",
    `--secure-port=${port}`,
    "--leader-elect=false",
    "--profiling=false",
    ...extra,
  ];
}
