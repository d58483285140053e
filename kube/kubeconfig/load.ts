/**
 * Reads a KUBECONFIG value as kubectl does: a list of files separated by the platform's path
 * delimiter (":" here), empty items and repeats ignored, missing files skipped — unless the value is
 * a single file, which is then an explicit path (`--kubeconfig`) and must exist.
 */
import { readFileSync } from "node:fs";
import { delimiter, resolve } from "node:path";
import { parse } from "yaml";
import { KubeconfigError } from "./errors.ts";
import { mergeKubeconfigs, type MergedKubeconfig, type ParsedFile } from "./merge.ts";
import { KubeconfigFileSchema } from "./schema.ts";

export function loadKubeconfig(pathList: string): MergedKubeconfig {
  const files = [...new Set(pathList.split(delimiter).filter(Boolean).map((f) => resolve(f)))];
  const explicit = files.length === 1;
  const parsed: ParsedFile[] = [];
  for (const file of files) {
    const text = readKubeconfig(file, explicit);
    if (text !== undefined) parsed.push({ file, config: parseKubeconfig(file, text) });
  }
  if (!parsed.length) throw new KubeconfigError("NoFile", `no kubeconfig file found in "${pathList}"`);
  return mergeKubeconfigs(parsed);
}

function readKubeconfig(file: string, explicit: boolean): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === "ENOENT";
    if (missing && !explicit) return undefined;
    throw new KubeconfigError(missing ? "NoFile" : "Unreadable", `kubeconfig ${file}: ${(cause as Error).message}`, undefined, { cause });
  }
}

export function parseKubeconfig(file: string, text: string): ParsedFile["config"] {
  let doc: unknown;
  try {
    doc = parse(text) ?? {};
  } catch (cause) {
    throw new KubeconfigError("Invalid", `kubeconfig ${file}: not YAML: ${(cause as Error).message}`, undefined, { cause });
  }
  const r = KubeconfigFileSchema.safeParse(doc);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const at = issue.path.map(String).join(".");
  throw new KubeconfigError("Invalid", `kubeconfig ${file}: ${at}: ${issue.message}`, at);
}
