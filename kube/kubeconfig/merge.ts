/**
 * Several kubeconfig files merged as kubectl merges a KUBECONFIG list (client-go
 * clientcmd/loader.go): for the named maps (clusters, users, contexts) the first file to define a
 * name wins the whole entry; current-context comes from the first file that sets it. Each entry
 * remembers the file it came from: its relative paths are relative to that file's directory.
 */
import type { KubeconfigFile } from "./schema.ts";

export interface FromFile<T> {
  readonly value: T;
  /** The file that defined it. */
  readonly file: string;
}

export interface MergedKubeconfig {
  readonly currentContext?: FromFile<string> | undefined;
  readonly contexts: ReadonlyMap<string, FromFile<unknown>>;
  readonly clusters: ReadonlyMap<string, FromFile<unknown>>;
  readonly users: ReadonlyMap<string, FromFile<unknown>>;
}

export interface ParsedFile {
  readonly file: string;
  readonly config: KubeconfigFile;
}

/** Files in precedence order (the order of the KUBECONFIG list). */
export function mergeKubeconfigs(files: readonly ParsedFile[]): MergedKubeconfig {
  const contexts = new Map<string, FromFile<unknown>>();
  const clusters = new Map<string, FromFile<unknown>>();
  const users = new Map<string, FromFile<unknown>>();
  let currentContext: FromFile<string> | undefined;
  const firstWins = (into: Map<string, FromFile<unknown>>, file: string, entries: ReadonlyArray<{ name: string; value: unknown }>) => {
    for (const e of entries) if (!into.has(e.name)) into.set(e.name, { value: e.value, file });
  };
  for (const { file, config } of files) {
    if (!currentContext && config["current-context"]) currentContext = { value: config["current-context"], file };
    firstWins(contexts, file, (config.contexts ?? []).map((c) => ({ name: c.name, value: c.context })));
    firstWins(clusters, file, (config.clusters ?? []).map((c) => ({ name: c.name, value: c.cluster })));
    firstWins(users, file, (config.users ?? []).map((u) => ({ name: u.name, value: u.user })));
  }
  return { currentContext, contexts, clusters, users };
}
