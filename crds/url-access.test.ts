// urlAccess on a module: only beside a url, with the conventional defaults (ca.crt, token,
// SystemAndBundle), and nowhere to put a credential itself.
import { describe, expect, it } from "vitest";
import { PatchModule } from "./schema.ts";

const SHA = "a".repeat(64);
const base = { kernelRelease: "6.1.0-56-amd64", sha256: SHA };

describe("PatchModule.urlAccess", () => {
  it("defaults the CA bundle key to ca.crt, the trust to SystemAndBundle and the token key to token", () => {
    const m = PatchModule.parse({ ...base, url: "https://artifacts.corp/fix.ko", urlAccess: { caBundle: { configMapName: "corp-ca" }, bearerTokenSecret: { name: "artifactory" } } });
    expect(m.urlAccess).toEqual({ caBundle: { configMapName: "corp-ca", key: "ca.crt", trust: "SystemAndBundle" }, bearerTokenSecret: { name: "artifactory", key: "token" } });
  });

  it.each([
    ["beside a configMap source", { ...base, configMap: { namespace: "x", name: "y", key: "z" }, urlAccess: { headersSecretName: "h" } }, "urlAccess applies to a url source only"],
    ["with a token written into the patch", { ...base, url: "https://a.corp/x.ko", urlAccess: { bearerToken: "s3cret" } }, "Unrecognized key"],
    ["with a Secret in another namespace", { ...base, url: "https://a.corp/x.ko", urlAccess: { bearerTokenSecret: { name: "t", namespace: "default" } } }, "Unrecognized key"],
    ["with an unknown trust", { ...base, url: "https://a.corp/x.ko", urlAccess: { caBundle: { configMapName: "c", trust: "Nothing" } } }, "Invalid option"],
  ])("is refused %s", (_name, input, message) => {
    const r = PatchModule.safeParse(input);
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain(message);
  });
});
