// The client side of a control plane, shared by its owner and by processes that attach to it:
// the owner writes control-plane.json into its directory, attachControlPlane() reads it back.
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { CLIENT_EXT, safeName, signCert, subject } from "./certs.ts";
import { run } from "./exec.ts";
import { kubeconfigYaml, writeCertKubeconfig } from "./kubeconfig.ts";
import type { ControlPlaneClient } from "./types.ts";

const STATE_FILE = "control-plane.json";

/** What another process needs to use a running control plane (the content of control-plane.json). */
export interface ControlPlaneState {
  dir: string;
  binDir: string;
  server: string;
  apiServerPort: number;
  etcdClientPort: number;
  kubernetesServiceIp: string;
  kubeconfigPath: string;
  caCertPath: string;
  caKeyPath: string;
  serviceAccountKeyPath: string;
  serviceAccountPubPath: string;
  adminCertPath: string;
  adminKeyPath: string;
}

export async function writeState(st: ControlPlaneState): Promise<void> {
  await writeFile(path.join(st.dir, STATE_FILE), JSON.stringify(st, null, 2));
}

export function makeClient(st: ControlPlaneState): ControlPlaneClient {
  const pki = path.join(st.dir, "pki");
  const ca = { certPath: st.caCertPath, keyPath: st.caKeyPath };
  const kubectlEnv: NodeJS.ProcessEnv = { ...process.env, KUBECACHEDIR: path.join(st.dir, "kubectl-cache") };
  delete kubectlEnv.KUBECONFIG;

  return {
    dir: st.dir,
    binDir: st.binDir,
    kubeconfigPath: st.kubeconfigPath,
    server: st.server,
    caCertPath: st.caCertPath,
    caKeyPath: st.caKeyPath,
    serviceAccountKeyPath: st.serviceAccountKeyPath,
    kubernetesServiceIp: st.kubernetesServiceIp,

    kubectl(args, opts = {}) {
      return run(path.join(st.binDir, "kubectl"), [`--kubeconfig=${opts.kubeconfig ?? st.kubeconfigPath}`, ...args], {
        input: opts.input,
        env: kubectlEnv,
        timeoutMs: opts.timeoutMs ?? 600_000,
      });
    },

    async issueClientCert(commonName, organizations) {
      const base = path.join(pki, `client-${safeName(commonName)}-${randomBytes(4).toString("hex")}`);
      const cert = await signCert(ca, base, subject(commonName, organizations), CLIENT_EXT);
      const caPem = await readFile(st.caCertPath, "utf8");
      const kubeconfigPath = await writeCertKubeconfig(`${base}.kubeconfig`, st.server, caPem, cert);
      return { ...cert, kubeconfigPath };
    },

    async tokenKubeconfig(token) {
      const caPem = await readFile(st.caCertPath, "utf8");
      const p = path.join(pki, `${token ? "token" : "anonymous"}-${randomBytes(6).toString("hex")}.kubeconfig`);
      await writeFile(p, kubeconfigYaml(st.server, caPem, { token }), { mode: 0o600 });
      return p;
    },
  };
}

/** A client handle on a control plane started by another process (e.g. the vitest global setup). */
export async function attachControlPlane(dir: string): Promise<ControlPlaneClient> {
  const st = JSON.parse(await readFile(path.join(dir, STATE_FILE), "utf8")) as ControlPlaneState;
  return makeClient(st);
}
