// Kubeconfig files with their data embedded (no paths), for a client certificate or a token.
import { readFile, writeFile } from "node:fs/promises";
import type { CertAndKey } from "./certs.ts";

export type KubeconfigUser = { certPem: string; keyPem: string } | { token?: string | undefined };

export function kubeconfigYaml(server: string, caPem: string, user: KubeconfigUser, name = "klp-test"): string {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const userLines =
    "certPem" in user
      ? [`    client-certificate-data: ${b64(user.certPem)}`, `    client-key-data: ${b64(user.keyPem)}`]
      : user.token
        ? [`    token: ${JSON.stringify(user.token)}`]
        : ["    {}"];
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: ${name}`,
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(caPem)}`,
    "users:",
    "- name: user",
    "  user:",
    ...userLines,
    "contexts:",
    `- name: ${name}`,
    "  context:",
    `    cluster: ${name}`,
    "    user: user",
    `current-context: ${name}`,
    "",
  ].join("\n");
}

/** Writes (mode 0600) a kubeconfig for the identity of `cert` and returns its path. */
export async function writeCertKubeconfig(file: string, server: string, caPem: string, cert: CertAndKey): Promise<string> {
  const [certPem, keyPem] = await Promise.all([readFile(cert.certPath, "utf8"), readFile(cert.keyPath, "utf8")]);
  await writeFile(file, kubeconfigYaml(server, caPem, { certPem, keyPem }), { mode: 0o600 });
  return file;
}
