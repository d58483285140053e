// A container engine for tests: Debian's docker.io, started by scripts/images/ensure-docker.sh when
// none runs, and the project's images built by scripts/images/build.sh. Testcontainers is set up
// for this engine: no reaper (its image cannot be pulled here) and no bridge network to inspect
// (containers use host or none networking).
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export const OPERATOR_IMAGE = process.env.KLP_OPERATOR_IMAGE ?? "kpatch-operator:dev";
export const AGENT_IMAGE = process.env.KLP_AGENT_IMAGE ?? "kpatch-agent:dev";

export type DockerEngine = { ok: true; detail: string } | { ok: false; reason: string };

interface Run {
  code: number;
  output: string;
}

function runScript(script: string, args: string[], timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn("bash", [path.join(REPO_ROOT, script), ...args], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const keep = (c: Buffer) => {
      output = (output + c.toString("utf8")).slice(-20_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({ code: 127, output: String(err) });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, output });
    });
  });
}

/**
 * Uses a running engine or starts Debian's docker.io (installing it if needed, as root). Never
 * throws: `ok: false` carries why no engine can run here, for the caller to print and skip.
 */
export async function ensureDockerEngine(): Promise<DockerEngine> {
  const r = await runScript("scripts/images/ensure-docker.sh", [], 180_000);
  if (r.code === 0) return { ok: true, detail: r.output.trim().split("\n").at(-1) ?? "" };
  return { ok: false, reason: `scripts/images/ensure-docker.sh exited ${r.code}: ${r.output.trim().split("\n").slice(-5).join(" | ")}` };
}

/**
 * Builds the images (bundles included) with scripts/images/build.sh: seconds when the base image
 * and layers are cached, minutes the first time (debootstrap). KLP_NO_IMAGE_BUILD=1 skips it and
 * uses the images as they are.
 */
export async function buildImages(targets: Array<"operator" | "agent">): Promise<string> {
  if (process.env.KLP_NO_IMAGE_BUILD) return "skipped (KLP_NO_IMAGE_BUILD)";
  const r = await runScript("scripts/images/build.sh", targets, 900_000);
  if (r.code !== 0) throw new Error(`scripts/images/build.sh ${targets.join(" ")} failed (exit ${r.code}):\n${r.output}`);
  return r.output;
}

/** Environment testcontainers needs with this engine; call before its first use. */
export function configureTestcontainers(): void {
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= "true";
  process.env.TESTCONTAINERS_HOST_OVERRIDE ??= "127.0.0.1";
}
