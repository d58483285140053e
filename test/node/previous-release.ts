// The operator as an earlier commit built it: its chart and its two images, made from that commit's
// own tree (git archive), so that an upgrade test installs what a user of that commit runs.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

const REPO = path.resolve(import.meta.dirname, "../..");

/**
 * The commit the upgrade test starts from: main just before the patch status became bounded
 * (status.rollout.admitted and the unbounded status.nodes). Move it forward when the status or the
 * node objects change shape again, so the test always upgrades across the latest change of shape.
 */
export const UPGRADE_FROM = "930466839b1d8c9ec3214498aa13f851d470b8cf";

export interface PreviousRelease {
  readonly commit: string;
  /** The commit's tree: its chart is `<dir>/charts/kpatch-operator`. */
  readonly dir: string;
  readonly operatorImage: string;
  readonly agentImage: string;
  /** docker-archive tarballs of both images, for the node's containerd. */
  readonly tars: string[];
}

function run(cmd: string, args: string[], opts: { cwd: string; env?: Record<string, string> }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (err = (err + c).slice(-8000)));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(" ")} (in ${opts.cwd}) exited ${code}: ${err}`))));
  });
}

/**
 * Extracts `commit` into a temporary directory and builds its bundles and images with its own
 * scripts, tagged `prev-<short commit>` (the Docker layer cache makes a rebuild seconds), then
 * saves them as tarballs into `outDir`. node_modules is this checkout's: the earlier commit's
 * dependencies are the same packages or older ones its code still builds with.
 */
export async function buildPreviousRelease(commit: string, outDir: string): Promise<PreviousRelease> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "klp-prev-"));
  await run("bash", ["-c", `git -C "$0" archive "$1" | tar -x -C "$2"`, REPO, commit, dir], { cwd: REPO });
  await symlink(path.join(REPO, "node_modules"), path.join(dir, "node_modules"));
  const tag = `prev-${commit.slice(0, 12)}`;
  const env = { KLP_OPERATOR_IMAGE: `kpatch-operator:${tag}`, KLP_AGENT_IMAGE: `kpatch-agent:${tag}` };
  await run("bash", ["scripts/images/build.sh", "operator", "agent"], { cwd: dir, env });
  await mkdir(outDir, { recursive: true });
  const tars = (await run("bash", ["scripts/images/save.sh", outDir], { cwd: dir, env })).split("\n").filter((l) => l.endsWith(".tar"));
  return { commit, dir, operatorImage: env.KLP_OPERATOR_IMAGE, agentImage: env.KLP_AGENT_IMAGE, tars };
}
