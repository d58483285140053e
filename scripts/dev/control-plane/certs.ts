// The cluster's certificates, made with the openssl CLI: a CA, a front-proxy CA, the
// service-account key pair, and one certificate per identity that talks to the API server.
import { randomBytes } from "node:crypto";
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { runOk } from "./exec.ts";

export interface CertAndKey {
  certPath: string;
  keyPath: string;
}

/** Where issueControlPlaneCerts() put everything (all under `pki`). */
export interface ControlPlaneCerts {
  pki: string;
  ca: CertAndKey;
  frontProxyCa: CertAndKey;
  serviceAccountKeyPath: string;
  serviceAccountPubPath: string;
  serving: CertAndKey;
  admin: CertAndKey;
  controllerManager: CertAndKey;
  scheduler: CertAndKey;
  kubeletClient: CertAndKey;
  frontProxyClient: CertAndKey;
}

export const CLIENT_EXT = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n";

/** An openssl -subj string: O= per organization (RBAC groups), then CN= (the user name). */
export function subject(commonName: string, organizations: string[]): string {
  const esc = (s: string) => s.replace(/\\/g, "\\\\").replace(/\//g, "\\/").replace(/\+/g, "\\+").replace(/=/g, "\\=");
  return organizations.map((o) => `/O=${esc(o)}`).join("") + `/CN=${esc(commonName)}`;
}

/** A name usable in a file name. */
export function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);
}

/** A P-256 key and a certificate for it signed by `ca`: `<base>.key`, `<base>.crt`. */
export async function signCert(ca: CertAndKey, base: string, subj: string, ext: string): Promise<CertAndKey> {
  const keyPath = `${base}.key`;
  const csrPath = `${base}.csr`;
  const extPath = `${base}.ext`;
  const certPath = `${base}.crt`;
  await runOk("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", keyPath], "key generation");
  await runOk("openssl", ["req", "-new", "-key", keyPath, "-subj", subj, "-out", csrPath], "CSR");
  await writeFile(extPath, ext);
  await runOk(
    "openssl",
    [
      "x509", "-req", "-in", csrPath, "-CA", ca.certPath, "-CAkey", ca.keyPath,
      "-set_serial", `0x${randomBytes(16).toString("hex").replace(/^[89a-f]/, "1")}`,
      "-days", "3650", "-sha256", "-extfile", extPath, "-out", certPath,
    ],
    "certificate signing",
    { cwd: path.dirname(base) },
  );
  await rm(csrPath, { force: true });
  await rm(extPath, { force: true });
  return { certPath, keyPath };
}

async function makeCa(pki: string, name: string, cn: string): Promise<CertAndKey> {
  const ca = { certPath: path.join(pki, `${name}.crt`), keyPath: path.join(pki, `${name}.key`) };
  await runOk(
    "openssl",
    [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
      "-keyout", ca.keyPath, "-out", ca.certPath, "-days", "3650", "-sha256", "-subj", `/CN=${cn}`,
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ],
    "CA",
  );
  return ca;
}

async function makeServiceAccountKeys(pki: string): Promise<{ keyPath: string; pubPath: string }> {
  const keyPath = path.join(pki, "sa.key");
  const pubPath = path.join(pki, "sa.pub");
  await runOk("openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", keyPath], "service-account key");
  await runOk("openssl", ["pkey", "-in", keyPath, "-pubout", "-out", pubPath], "service-account public key");
  return { keyPath, pubPath };
}

/** The names the API server's serving certificate answers to (loopback and in-cluster). */
function servingExt(kubernetesServiceIp: string): string {
  const sans = [
    "IP:127.0.0.1",
    `IP:${kubernetesServiceIp}`,
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
  ].join(",");
  return `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${sans}\n`;
}

/** Every certificate and key a control plane needs, made in parallel. */
export async function issueControlPlaneCerts(pki: string, kubernetesServiceIp: string): Promise<ControlPlaneCerts> {
  const [ca, frontProxyCa, sa] = await Promise.all([
    makeCa(pki, "ca", "klp-test-ca"),
    makeCa(pki, "front-proxy-ca", "klp-test-front-proxy-ca"),
    makeServiceAccountKeys(pki),
  ]);
  const sign = (name: string, subj: string, ext: string) => signCert(ca, path.join(pki, name), subj, ext);
  const [serving, admin, controllerManager, scheduler, kubeletClient, frontProxyClient] = await Promise.all([
    sign("apiserver", "/CN=kube-apiserver", servingExt(kubernetesServiceIp)),
    sign("admin", subject("klp-admin", ["system:masters"]), CLIENT_EXT),
    sign("kube-controller-manager", subject("system:kube-controller-manager", []), CLIENT_EXT),
    sign("kube-scheduler", subject("system:kube-scheduler", []), CLIENT_EXT),
    sign("apiserver-kubelet-client", subject("kube-apiserver-kubelet-client", ["system:masters"]), CLIENT_EXT),
    // Aggregation layer (and delegated authn of the controllers: without it they log
    // "missing content for CA bundle ... requestheader-client-ca-file" over and over).
    signCert(frontProxyCa, path.join(pki, "front-proxy-client"), subject("front-proxy-client", []), CLIENT_EXT),
  ]);
  return {
    pki, ca, frontProxyCa, serviceAccountKeyPath: sa.keyPath, serviceAccountPubPath: sa.pubPath,
    serving, admin, controllerManager, scheduler, kubeletClient, frontProxyClient,
  };
}
