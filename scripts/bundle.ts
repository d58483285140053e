/**
 * `npm run build`: single-file ESM bundles for Node 24, runnable with only the `node` binary
 * (the kpatch-agent CLI is copied into a minimal VM guest):
 *   node-agent/cli.ts  → dist/kpatch-agent.mjs
 *   node-agent/main.ts → dist/node-agent.mjs   (when present)
 *   operator/main.ts   → dist/operator.mjs     (when present)
 *   kubectl-klp/main.ts → dist/kubectl-klp     (the kubectl plugin: put it on PATH as kubectl-klp)
 *   re2js              → dist/re2js.mjs        (imported by the others on demand, from beside them)
 * CJS dependencies (pino) get a `require` from createRequire. Loggers write plain JSON to a file
 * descriptor (no worker-thread transports), so nothing outside the bundle is loaded at run time.
 */
import { existsSync } from "node:fs";
import { chmod } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build, type Plugin } from "esbuild";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface BundleEntry {
  /** Entry point, relative to the repository. */
  entry: string;
  /** Output file, relative to the repository. */
  outfile: string;
}

/**
 * The RE2 engine (re2js) stays out of the bundles and ships beside them as re2js.mjs: it is
 * imported on demand (crds/module-for-release.ts), and an agent whose patches use no
 * kernelReleasePattern then never holds its code at all (about 1 MiB of the agent's idle memory).
 */
const RE2JS_BESIDE: Plugin = {
  name: "re2js-beside",
  setup(b) {
    b.onResolve({ filter: /^re2js$/ }, (args) => (args.kind === "dynamic-import" ? { path: "./re2js.mjs", external: true } : undefined));
  },
};

/** The file the bundles import the RE2 engine from, beside them. */
export const RE2JS_ENTRY = "node_modules/re2js/build/index.js";

export const ENTRIES: readonly BundleEntry[] = [
  { entry: RE2JS_ENTRY, outfile: "dist/re2js.mjs" },
  { entry: "node-agent/cli.ts", outfile: "dist/kpatch-agent.mjs" },
  { entry: "node-agent/main.ts", outfile: "dist/node-agent.mjs" },
  { entry: "operator/main.ts", outfile: "dist/operator.mjs" },
  { entry: "kubectl-klp/main.ts", outfile: "dist/kubectl-klp" },
];

const BANNER = [
  'import { createRequire as __bundleCreateRequire } from "node:module";',
  "const require = __bundleCreateRequire(import.meta.url);",
].join("\n");

/** Bundles one entry point to `outfile` (absolute or relative to the repository). */
export async function bundle(entry: string, outfile: string): Promise<void> {
  const out = path.resolve(REPO, outfile);
  await build({
    entryPoints: [path.resolve(REPO, entry)],
    outfile: out,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node24",
    banner: { js: BANNER },
    legalComments: "eof",
    logLevel: "warning",
    plugins: [RE2JS_BESIDE],
  });
  await chmod(out, 0o755);
}

async function main(): Promise<void> {
  for (const { entry, outfile } of ENTRIES) {
    if (!existsSync(path.resolve(REPO, entry))) throw new Error(`${entry} is missing`);
    await bundle(entry, outfile);
    console.log(`built ${outfile}`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await main();
}
