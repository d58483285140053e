import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundle, REPO } from "./bundle.ts";

let dir: string;
let out: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "bundle-test-"));
  const entry = path.join(dir, "entry.ts");
  // A schema of the project's, given bad input: what every bundle does when it validates.
  await writeFile(
    entry,
    `import { KernelLivePatchSpec } from ${JSON.stringify(path.join(REPO, "crds/schema.ts"))};
     const r = KernelLivePatchSpec.safeParse({ state: "Bogus", modules: [{ kernelRelease: 5, sha256: "zz" }] });
     console.log(JSON.stringify(r.error?.issues.map((i) => i.message)));`,
  );
  out = path.join(dir, "out.mjs");
  await bundle(entry, out);
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("bundles", () => {
  it("carry zod's English locale alone, and zod still explains a refusal in English", async () => {
    const code = await readFile(out, "utf8");
    const locales = [...code.matchAll(/^\/\/ node_modules\/zod\/v4\/locales\/([\w-]+)\.js$/gm)].map((m) => m[1]);
    expect(locales.filter((l) => l !== "index").sort()).toEqual(["en"]);
    const r = spawnSync(process.execPath, [out], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual([
      'Invalid option: expected one of "Loaded"|"Staged"|"Unloaded"',
      "Invalid input: expected string, received number",
      "sha256 must be 64 lowercase hex characters",
    ]);
  });
});
