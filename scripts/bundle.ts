/**
 * `npm run build`: single-file ESM bundles for Node 24, runnable with only the `node` binary
 * (the kpatch-agent CLI is copied into a minimal VM guest):
 *   node-agent/cli.ts  → dist/kpatch-agent.mjs
 *   node-agent/main.ts → dist/node-agent.mjs   (when present)
 *   operator/main.ts   → dist/operator.mjs     (when present)
 * CJS dependencies (pino) get a `require` from createRequire. Loggers write plain JSON to a file
 * descriptor (no worker-thread transports), so nothing outside the bundle is loaded at run time.
 */
import { existsSync } from "node:fs";
import { chmod } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface BundleEntry {
  /** Entry point, relative to the repository. */
  entry: string;
  /** Output file, relative to the repository. */
  outfile: string;
  /** The entry is optional (written by someone else, may not exist yet). */
  optional: boolean;
}

export const ENTRIES: readonly BundleEntry[] = [
  { entry: "node-agent/cli.ts", outfile: "dist/kpatch-agent.mjs", optional: false },
  { entry: "node-agent/main.ts", outfile: "dist/node-agent.mjs", optional: true },
  { entry: "operator/main.ts", outfile: "dist/operator.mjs", optional: true },
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
  });
  await chmod(out, 0o755);
}

async function main(): Promise<void> {
  for (const { entry, outfile, optional } of ENTRIES) {
    if (!existsSync(path.resolve(REPO, entry))) {
      if (optional) {
        console.log(`skip ${entry} (not present)`);
        continue;
      }
      throw new Error(`${entry} is missing`);
    }
    await bundle(entry, outfile);
    console.log(`built ${outfile}`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await main();
}
