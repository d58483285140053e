/**
 * Fetches a module file from the source a patch names. The digest is checked by the host driver
 * before the bytes are used; here only size and reachability matter.
 */
import { readFile } from "node:fs/promises";
import { get } from "node:https";
import path from "node:path";
import type { PatchModule } from "../../crds/schema.ts";
import type { KubeHttp } from "../../kube/http-client.ts";

/** The source could not deliver the file (yet): retried with backoff, not a final failure. */
export class SourceUnavailable extends Error {
  override readonly name = "SourceUnavailable";
}

export interface ModuleSources {
  fetch(module: PatchModule): Promise<Uint8Array>;
}

export interface SourceOptions {
  readonly http: KubeHttp;
  /** Where init containers copied image-sourced modules (named <sha256>.ko). */
  readonly imageModulesDir: string;
  readonly maxBytes: number;
  readonly timeoutMs?: number;
}

export function moduleSources(opts: SourceOptions): ModuleSources {
  return {
    async fetch(m) {
      if (m.configMap) return fromConfigMap(opts, m.configMap);
      if (m.url) return fromUrl(m.url, opts.maxBytes, opts.timeoutMs ?? 60_000);
      if (m.image) return fromImageVolume(opts.imageModulesDir, m.sha256, m.image.reference);
      throw new SourceUnavailable("the module names no source");
    },
  };
}

async function fromConfigMap(opts: SourceOptions, ref: { namespace: string; name: string; key: string }): Promise<Uint8Array> {
  const where = `ConfigMap ${ref.namespace}/${ref.name}`;
  let cm: { binaryData?: Record<string, string>; data?: Record<string, string> };
  try {
    cm = await opts.http.json("GET", `/api/v1/namespaces/${encodeURIComponent(ref.namespace)}/configmaps/${encodeURIComponent(ref.name)}`);
  } catch (err) {
    throw new SourceUnavailable(`${where}: ${(err as Error).message}`, { cause: err });
  }
  const b64 = cm.binaryData?.[ref.key];
  if (b64 === undefined) throw new SourceUnavailable(`${where} has no binaryData key ${ref.key}`);
  return Buffer.from(b64, "base64");
}

function fromUrl(url: string, maxBytes: number, timeoutMs: number, redirects = 3): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: timeoutMs }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location && redirects > 0) {
        res.resume();
        const next = new URL(res.headers.location, url).toString();
        if (!next.startsWith("https://")) return reject(new SourceUnavailable(`${url} redirects to a non-HTTPS address`));
        return resolve(fromUrl(next, maxBytes, timeoutMs, redirects - 1));
      }
      if (status !== 200) {
        res.resume();
        return reject(new SourceUnavailable(`${url}: HTTP ${status}`));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) req.destroy(new SourceUnavailable(`${url} is larger than ${maxBytes} bytes`));
        else chunks.push(c);
      });
      res.on("end", () => resolve(Buffer.concat(chunks)));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new SourceUnavailable(`${url}: timed out`)));
    req.on("error", (err) => reject(err instanceof SourceUnavailable ? err : new SourceUnavailable(`${url}: ${err.message}`, { cause: err })));
  });
}

async function fromImageVolume(dir: string, sha256: string, reference: string): Promise<Uint8Array> {
  try {
    return await readFile(path.join(dir, `${sha256}.ko`));
  } catch (err) {
    throw new SourceUnavailable(`the copy of ${reference} is not in this agent pod yet (the DaemonSet is rolling out)`, { cause: err });
  }
}
