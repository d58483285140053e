import { createHash, randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { hostError, HostError } from "./host-error.ts";
import { isSafeName, moduleNameFromFile, normalizeModuleName } from "./names.ts";
import { parseModule } from "./parse-module.ts";
import type { HostFs } from "./ports.ts";

export const KPATCH_DIR = "/var/lib/kpatch";
/**
 * Where a module waits while it is being loaded. Nothing loads this directory at boot (kpatch's
 * `load --all` and its boot service read only /var/lib/kpatch/<release>/), so a module that
 * crashes the kernel mid-load is not loaded again by the boot that follows. The agent moves a
 * module into the release directory only once it is live and its soak is over.
 */
export const LOADING_DIR = `${KPATCH_DIR}/.loading`;
/** The agent's own record of the modules it put on this host, and for which patch (see agent-record.ts). */
export const RECORD_FILE = `${KPATCH_DIR}/.kpatch-agent.json`;
/** A staging's temporary file: `.<name>.ko.tmp-<pid>-<8 hex>` (see atomicWrite). */
const TEMPORARY = /^\..+\.ko\.tmp-\d+-[0-9a-f]{8}$/;
const FILE_MODE = 0o644;
const DIR_MODE = 0o755;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export interface InstalledModule {
  kernelRelease: string;
  /** Host path of the file, e.g. /var/lib/kpatch/6.1.0-56-amd64/livepatch_fix.ko */
  file: string;
  /** Module name (from the module itself; from the file name if it cannot be parsed). */
  name: string;
  sha256: string;
  /** GNU build-id of the file, when it parses and has one. */
  buildId?: string;
  /** Staged for the running kernel release (kpatch load --all would load it). */
  running: boolean;
}

export interface StagedFile {
  kernelRelease: string;
  /** Host path. */
  file: string;
  bytes: Buffer;
  /** Module name from the module itself, else from the file name. */
  name: string;
  buildId?: string;
}

/**
 * /var/lib/kpatch/<release>/<name>.ko: kpatch's layout. Writes are atomic (temporary file in the
 * same directory, fsync, rename, fsync directory) and refuse symlinks anywhere under
 * /var/lib/kpatch, so a planted link cannot redirect a root-owned write.
 */
export class KpatchStore {
  constructor(
    private readonly fs: HostFs,
    private readonly log: Logger,
  ) {}

  releaseDir(kernelRelease: string): string {
    if (!isSafeName(kernelRelease)) {
      throw hostError("UnsafePath", { path: `${KPATCH_DIR}/${kernelRelease}`, detail: "invalid kernel release" });
    }
    return `${KPATCH_DIR}/${kernelRelease}`;
  }

  /** Every staged .ko for every release. */
  async list(runningRelease: string): Promise<InstalledModule[]> {
    const found: InstalledModule[] = [];
    for (const release of await this.releases()) {
      for (const staged of await this.staged(release)) {
        found.push({
          kernelRelease: release,
          file: staged.file,
          name: staged.name,
          sha256: sha256Hex(staged.bytes),
          ...(staged.buildId === undefined ? {} : { buildId: staged.buildId }),
          running: release === runningRelease,
        });
      }
    }
    return found;
  }

  /** Release directories (real directories only; symlinks are skipped, never followed). */
  async releases(): Promise<string[]> {
    if ((await this.fs.stat(KPATCH_DIR))?.kind !== "dir") return [];
    const names = (await this.fs.list(KPATCH_DIR)) ?? [];
    const dirs: string[] = [];
    for (const name of names) {
      if (!isSafeName(name)) continue;
      if ((await this.fs.stat(`${KPATCH_DIR}/${name}`))?.kind === "dir") dirs.push(name);
    }
    return dirs;
  }

  /** The .ko files staged for one release, sorted by file name (kpatch load --all's glob order). */
  async staged(kernelRelease: string): Promise<StagedFile[]> {
    const dir = this.releaseDir(kernelRelease);
    if ((await this.fs.stat(dir))?.kind !== "dir") return [];
    const files: StagedFile[] = [];
    for (const fileName of (await this.fs.list(dir)) ?? []) {
      if (!fileName.endsWith(".ko") || !isSafeName(fileName)) continue;
      const file = `${dir}/${fileName}`;
      if ((await this.fs.stat(file))?.kind !== "file") continue;
      const bytes = await this.fs.readBytes(file);
      if (!bytes) continue;
      const parsed = parseModule(bytes, fileName);
      const buildId = parsed.ok ? parsed.module.buildId : undefined;
      files.push({ kernelRelease, file, bytes, name: parsed.ok ? parsed.module.name : moduleNameFromFile(fileName), ...(buildId === undefined ? {} : { buildId }) });
    }
    return files;
  }

  /** The staged file of module `name` for a release (by file name first, then by module name). */
  async find(name: string, kernelRelease: string): Promise<StagedFile | undefined> {
    const wanted = normalizeModuleName(name);
    const staged = await this.staged(kernelRelease);
    return (
      staged.find((s) => moduleNameFromFile(s.file) === wanted) ?? staged.find((s) => normalizeModuleName(s.name) === wanted)
    );
  }

  /**
   * Stages `bytes` as <release>/<fileName> atomically. Same bytes already there: no-op.
   * Different bytes under the same module name: AlreadyInstalled unless `overwrite`.
   */
  async write(
    kernelRelease: string,
    fileName: string,
    moduleName: string,
    bytes: Uint8Array,
    overwrite = false,
  ): Promise<{ file: string; alreadyInstalled: boolean }> {
    if (!isSafeName(fileName) || !fileName.endsWith(".ko")) {
      throw hostError("InvalidModuleName", { name: fileName, detail: "not a safe .ko file name" });
    }
    const dir = this.releaseDir(kernelRelease);
    await this.ensureDirs(dir);
    const target = `${dir}/${fileName}`;
    const digest = sha256Hex(bytes);

    const existing = (await this.staged(kernelRelease)).filter(
      (s) => s.file === target || normalizeModuleName(s.name) === normalizeModuleName(moduleName),
    );
    for (const staged of existing) {
      if (sha256Hex(staged.bytes) === digest) return { file: staged.file, alreadyInstalled: true };
      if (!overwrite || staged.file !== target) {
        throw hostError("AlreadyInstalled", { name: moduleName, kernelRelease, path: staged.file });
      }
    }
    await this.refuseNonFile(target);
    await this.atomicWrite(dir, fileName, bytes);
    this.log.info({ file: target, sha256: digest }, "staged patch module");
    return { file: target, alreadyInstalled: false };
  }

  /** Writes a module to be loaded into LOADING_DIR (atomically); returns its host path. */
  async writeLoading(fileName: string, bytes: Uint8Array): Promise<string> {
    if (!isSafeName(fileName) || !fileName.endsWith(".ko")) {
      throw hostError("InvalidModuleName", { name: fileName, detail: "not a safe .ko file name" });
    }
    await this.ensureDirs(LOADING_DIR);
    const target = `${LOADING_DIR}/${fileName}`;
    await this.refuseNonFile(target);
    await this.atomicWrite(LOADING_DIR, fileName, bytes);
    return target;
  }

  /**
   * Moves a loaded module's file from LOADING_DIR into the release directory (a rename: atomic,
   * no second copy of the bytes). False when LOADING_DIR has no such file with that digest.
   */
  async persistLoading(fileName: string, kernelRelease: string, sha256: string): Promise<boolean> {
    await this.refuseSymlinks(LOADING_DIR);
    const from = `${LOADING_DIR}/${fileName}`;
    if ((await this.fs.stat(from))?.kind !== "file") return false;
    const bytes = await this.fs.readBytes(from);
    if (!bytes || sha256Hex(bytes) !== sha256) return false;
    const dir = this.releaseDir(kernelRelease);
    await this.ensureDirs(dir);
    const to = `${dir}/${fileName}`;
    await this.refuseNonFile(to);
    await this.fs.rename(from, to);
    await this.fs.syncDir(dir);
    await this.syncAndPrune(LOADING_DIR);
    this.log.info({ file: to, sha256 }, "staged the live patch module for boot");
    return true;
  }

  /** The agent's record file's text; undefined when there is none. */
  async readRecord(): Promise<string | undefined> {
    await this.refuseSymlinks(KPATCH_DIR);
    return this.fs.readText(RECORD_FILE);
  }

  /** Replaces the agent's record file atomically; undefined removes it (nothing left to record). */
  async writeRecord(text: string | undefined): Promise<void> {
    if (text === undefined) {
      await this.refuseSymlinks(KPATCH_DIR);
      if ((await this.fs.stat(RECORD_FILE))?.kind !== "file") return;
      await this.fs.unlink(RECORD_FILE);
      await this.fs.syncDir(KPATCH_DIR);
      return;
    }
    await this.ensureDirs(KPATCH_DIR);
    await this.refuseNonFile(RECORD_FILE);
    await this.atomicWrite(KPATCH_DIR, RECORD_FILE.slice(KPATCH_DIR.length + 1), Buffer.from(text));
  }

  /** Removes a file of LOADING_DIR (the kernel has read it, or the load failed). Idempotent. */
  async removeLoading(fileName: string): Promise<void> {
    await this.refuseSymlinks(LOADING_DIR);
    const file = `${LOADING_DIR}/${fileName}`;
    if ((await this.fs.stat(file))?.kind !== "file") return;
    await this.fs.unlink(file);
    await this.syncAndPrune(LOADING_DIR);
  }

  /** Removes a staged module and prunes its release directory when empty. Idempotent. */
  async remove(name: string, kernelRelease: string): Promise<string | undefined> {
    const dir = this.releaseDir(kernelRelease);
    await this.refuseSymlinks(dir);
    const staged = await this.find(name, kernelRelease);
    if (!staged) return undefined;
    await this.fs.unlink(staged.file);
    await this.syncAndPrune(dir);
    this.log.info({ file: staged.file }, "removed staged patch module");
    return staged.file;
  }

  /**
   * Removes the temporary files of stagings that never finished (the writer was killed between
   * creating the file and renaming it): kpatch's glob ignores them, but nothing else would ever
   * remove them. Called when the agent starts, before any write of its own; prunes a release
   * directory left empty. Returns the files removed. `live`: names of the livepatches enabled now.
   */
  async sweepTemporaries(live: ReadonlySet<string> = new Set()): Promise<string[]> {
    const removed: string[] = [];
    for (const release of await this.releases()) {
      const dir = this.releaseDir(release);
      await this.refuseSymlinks(dir);
      const before = removed.length;
      for (const name of (await this.fs.list(dir)) ?? []) {
        if (!TEMPORARY.test(name)) continue;
        const file = `${dir}/${name}`;
        if ((await this.fs.stat(file))?.kind !== "file") continue;
        await this.fs.unlink(file);
        removed.push(file);
      }
      if (removed.length > before) await this.syncAndPrune(dir);
    }
    // A module waiting in LOADING_DIR whose livepatch is not live belonged to a load that did not
    // finish, or to a boot that is over (a crash during the soak): it goes.
    if ((await this.fs.stat(LOADING_DIR))?.kind === "dir") {
      await this.refuseSymlinks(LOADING_DIR);
      for (const name of (await this.fs.list(LOADING_DIR)) ?? []) {
        if (live.has(moduleNameFromFile(name)) && !name.startsWith(".")) continue; // still in its soak
        const file = `${LOADING_DIR}/${name}`;
        if ((await this.fs.stat(file))?.kind !== "file") continue;
        await this.fs.unlink(file);
        removed.push(file);
      }
      await this.syncAndPrune(LOADING_DIR);
    }
    if (removed.length) this.log.warn({ files: removed }, "removed temporary files of interrupted stagings and loads");
    return removed;
  }

  /** Makes removals in a release directory durable, and removes the directory once it is empty. */
  private async syncAndPrune(dir: string): Promise<void> {
    await this.fs.syncDir(dir);
    if (await this.fs.rmdir(dir)) await this.fs.syncDir(KPATCH_DIR);
  }

  private async atomicWrite(dir: string, fileName: string, bytes: Uint8Array): Promise<void> {
    // Named so that sweepTemporaries() recognizes it (TEMPORARY).
    const temp = `${dir}/.${fileName}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
    const file = await this.fs.createExclusive(temp, FILE_MODE);
    let closed = false;
    try {
      await file.write(bytes);
      await file.sync();
      closed = true;
      await file.close();
      await this.fs.rename(temp, `${dir}/${fileName}`);
      await this.fs.syncDir(dir);
    } catch (error) {
      if (!closed) await file.close().catch(() => undefined);
      await this.fs.unlink(temp).catch(() => undefined);
      throw error instanceof HostError ? error : hostError("HostIOError", { path: temp, detail: String(error) }, { cause: error });
    }
  }

  /** Creates /var/lib/kpatch/<release> as needed, refusing any symlink at or below /var/lib/kpatch. */
  private async ensureDirs(dir: string): Promise<void> {
    for (const parent of ["/var", "/var/lib"]) {
      if ((await this.fs.stat(parent)) === undefined) await this.fs.mkdir(parent, DIR_MODE);
    }
    for (const path of [KPATCH_DIR, dir]) {
      const stat = await this.fs.stat(path);
      if (stat === undefined) {
        await this.fs.mkdir(path, DIR_MODE);
        if ((await this.fs.stat(path))?.kind !== "dir") throw unsafe(path, "not a directory after mkdir");
      } else if (stat.kind !== "dir") {
        throw unsafe(path, stat.kind === "symlink" ? "is a symlink" : "is not a directory");
      }
    }
  }

  private async refuseSymlinks(dir: string): Promise<void> {
    for (const path of [KPATCH_DIR, dir]) {
      const stat = await this.fs.stat(path);
      if (stat && stat.kind !== "dir") throw unsafe(path, stat.kind === "symlink" ? "is a symlink" : "is not a directory");
    }
  }

  private async refuseNonFile(path: string): Promise<void> {
    const stat = await this.fs.stat(path);
    if (stat && stat.kind !== "file") throw unsafe(path, stat.kind === "symlink" ? "is a symlink" : `is a ${stat.kind}`);
  }
}

function unsafe(path: string, detail: string): HostError {
  return hostError("UnsafePath", { path, detail });
}
