// Prepares everything a real-kernel boot needs, through the project's own scripts:
// scripts/kernel/ensure-tools.sh (apt tools + Debian's kernel packages), build-modules.sh (the test
// modules), the agent bundle (`npm run build` -> dist/kpatch-agent.mjs), the guest runner bundle
// (esbuild) and build-guest.sh (initramfs + tools disk). Every piece is cached; a warm run only
// hashes its inputs.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const CACHE = join(process.env.KLP_CACHE ?? join(homedir(), ".cache/kpatch-operator"), "kernel");
export const AGENT_BUNDLE = join(REPO, "dist/kpatch-agent.mjs");

/** The machine cannot provide QEMU or the kernel packages: the suite skips with this reason. */
export class KernelUnavailable extends Error {}

export interface PreparedGuest {
  krel: string;
  kversion: string;
  vmlinuz: string;
  guestDir: string;
  modulesDir: string;
  agent: string | null;
  timings: Record<string, number>;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runScript(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { cwd: REPO, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      const text = d.toString();
      stderr += text;
      for (const line of text.split("\n")) if (/^\[(ensure-tools|build-modules|build-guest)\]/.test(line)) console.log(line);
    });
    child.on("error", fail);
    child.on("close", (code) => done({ code, stdout, stderr }));
  });
}

function vars(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m?.[1]) out[m[1]] = m[2] ?? "";
  }
  return out;
}

function tail(text: string, n = 15): string {
  return text.trim().split("\n").slice(-n).join("\n");
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * dist/kpatch-agent.mjs, rebuilt with `npm run build` when missing or older than node-agent/.
 * KLP_AGENT_BUNDLE=<file> uses that bundle instead (e.g. one built by hand while developing).
 */
async function ensureAgentBundle(): Promise<string | null> {
  const override = process.env.KLP_AGENT_BUNDLE;
  if (override) {
    if (!existsSync(override)) throw new Error(`KLP_AGENT_BUNDLE=${override} does not exist`);
    return resolve(override);
  }
  if (!existsSync(join(REPO, "node-agent/cli.ts"))) {
    return existsSync(AGENT_BUNDLE) ? AGENT_BUNDLE : null;
  }
  const stale = !existsSync(AGENT_BUNDLE) || statSync(AGENT_BUNDLE).mtimeMs < newestMtime(join(REPO, "node-agent"));
  if (stale) {
    console.log("[kernel] npm run build (dist/kpatch-agent.mjs missing or older than node-agent/)");
    const r = await runScript("npm", ["run", "--silent", "build"]);
    if (r.code !== 0) throw new Error(`npm run build failed (exit ${r.code}):\n${tail(r.stderr + r.stdout)}`);
  }
  if (!existsSync(AGENT_BUNDLE)) throw new Error(`npm run build did not produce ${AGENT_BUNDLE}`);
  return AGENT_BUNDLE;
}

async function bundleRunner(): Promise<string> {
  const outfile = join(CACHE, "runner/guest-runner.mjs");
  await build({
    entryPoints: [join(REPO, "test/kernel/guest/runner.ts")],
    bundle: true, platform: "node", format: "esm", target: "node24", outfile, logLevel: "warning",
  });
  return outfile;
}

export interface GuestOptions {
  /** Debian kernel release (default: the scripts' pinned one, or $KERNEL_RELEASE). */
  release?: string;
  /**
   * Also put the test modules built for another release into the guest, at /opt/klp/foreign
   * (`release` unset: the scripts' pinned release).
   */
  foreignModules?: { release?: string };
}

/** The scripts' environment for one release: KERNEL_RELEASE is the one variable naming it. */
function releaseEnv(release: string | undefined): Record<string, string> {
  return release ? { KERNEL_RELEASE: release } : {};
}

/** build-modules.sh for a release (after ensure-tools.sh for it); returns the directory of the .ko files. */
async function buildModules(release: string | undefined, timings: Record<string, number>, key: string): Promise<string> {
  const t = performance.now();
  const mods = await runScript("bash", [join(REPO, "scripts/kernel/build-modules.sh")], releaseEnv(release));
  timings[key] = Math.round(performance.now() - t);
  if (mods.code !== 0) throw new Error(`scripts/kernel/build-modules.sh failed (exit ${mods.code}):\n${tail(mods.stderr, 30)}`);
  return vars(mods.stdout).MODULES ?? "";
}

async function ensureTools(release: string | undefined): Promise<void> {
  const tools = await runScript("bash", [join(REPO, "scripts/kernel/ensure-tools.sh")], releaseEnv(release));
  if (tools.code !== 0) {
    throw new KernelUnavailable(`scripts/kernel/ensure-tools.sh${release ? ` (${release})` : ""} failed (exit ${tools.code}): QEMU or Debian's kernel packages could not be obtained:\n${tail(tools.stderr)}`);
  }
}

export async function prepareGuest(options: GuestOptions = {}): Promise<PreparedGuest> {
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new KernelUnavailable(`needs linux/x64 for Debian's amd64 kernel, this is ${process.platform}/${process.arch}`);
  }
  const timings: Record<string, number> = {};
  let t = performance.now();
  await ensureTools(options.release);
  if (options.foreignModules) await ensureTools(options.foreignModules.release);
  timings.ensureToolsMs = Math.round(performance.now() - t);

  const modulesDir = await buildModules(options.release, timings, "buildModulesMs");
  const foreignDir = options.foreignModules ? await buildModules(options.foreignModules.release, timings, "buildForeignModulesMs") : undefined;

  t = performance.now();
  const agent = await ensureAgentBundle();
  timings.agentBundleMs = Math.round(performance.now() - t);
  t = performance.now();
  const runner = await bundleRunner();
  timings.runnerBundleMs = Math.round(performance.now() - t);

  t = performance.now();
  const guest = await runScript("bash", [join(REPO, "scripts/kernel/build-guest.sh")], {
    ...releaseEnv(options.release), RUNNER: runner, MODULES: modulesDir, ...(agent ? { AGENT: agent } : {}),
    ...(foreignDir ? { FOREIGN_MODULES: foreignDir } : {}),
  });
  timings.buildGuestMs = Math.round(performance.now() - t);
  if (guest.code !== 0) throw new Error(`scripts/kernel/build-guest.sh failed (exit ${guest.code}):\n${tail(guest.stderr, 30)}`);
  const v = vars(guest.stdout);
  const need = (k: string): string => {
    const value = v[k];
    if (!value) throw new Error(`build-guest.sh printed no ${k}`);
    return value;
  };
  return {
    krel: need("KREL"), kversion: need("KVERSION"), vmlinuz: need("VMLINUZ"), guestDir: need("GUEST"),
    modulesDir, agent, timings,
  };
}
