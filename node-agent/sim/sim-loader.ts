import { promises as fs } from "node:fs";
import { parseModule } from "../host/parse-module.ts";
import { LoaderError, type Clock, type LoaderOperation, type ModuleLoader } from "../host/ports.ts";
import { simSignatureOf } from "./build-module.ts";
import { materializeState } from "./materialize.ts";
import type { SimConfig } from "./sim-config.ts";
import { readSimConfig, readSimState, withSimLock, writeSimState } from "./sim-files.ts";
import { advance, insmod, rmmod, SimKernelError, writeAttribute, type SimState } from "./sim-kernel.ts";

export interface SimLoaderOptions {
  /** Root of the simulated host (holds /.kpatch-sim). */
  hostRoot: string;
  /** Time source for transitions (default Date.now); share a virtual clock with the driver in tests. */
  clock?: Pick<Clock, "now">;
}

export interface SimLoader extends ModuleLoader {
  readonly kind: "sim";
  refresh(): Promise<void>;
  /** Current state after evaluating due transitions (for tests and the CLI). */
  state(): Promise<SimState>;
}

const LIVEPATCH_ATTR = /^\/sys\/kernel\/livepatch\/([^/]+)\/([^/]+)$/;

/**
 * The ModuleLoader of a simulated host. Every call locks /.kpatch-sim, reads config and state,
 * evaluates due transitions from their timestamps, applies the operation, saves the state and
 * rewrites the fake sysfs/proc files. State lives only in files, so processes can come and go.
 */
export function createSimLoader(options: SimLoaderOptions): SimLoader {
  const root = options.hostRoot;
  const now = () => options.clock?.now() ?? Date.now();

  async function step(op: LoaderOperation | "refresh", target: string, apply?: (s: SimState, c: SimConfig, t: number) => SimState) {
    if (!apply) {
      // Fast path without the lock: both files are replaced atomically, and when no transition is
      // due there is nothing to write.
      const [config, state] = await Promise.all([readSimConfig(root), readSimState(root)]);
      if (advance(state, config, now()) === state) return state;
    }
    return withSimLock(root, async () => {
      const config = await readSimConfig(root);
      const before = await readSimState(root);
      const t = now();
      let state = advance(before, config, t);
      let error: unknown;
      try {
        if (apply) state = advance(apply(state, config, t), config, t);
      } catch (e) {
        error = e;
      }
      if (state !== before) {
        // Files first: a crash in between leaves them ahead of state.json, which the next call rewrites.
        await materializeState(root, config, state);
        await writeSimState(root, state);
      }
      if (error instanceof SimKernelError && op !== "refresh") throw toLoaderError(op, target, error);
      if (error) throw error;
      return state;
    });
  }

  return {
    kind: "sim",
    async insmod(file) {
      let bytes: Buffer;
      try {
        bytes = await fs.readFile(file);
      } catch (error) {
        throw new LoaderError("EIO", "insmod", file, `insmod: ERROR: could not load module ${file}: No such file or directory`, {
          cause: error,
        });
      }
      const parsed = parseModule(bytes, file);
      const signature = simSignatureOf(bytes);
      await step("insmod", file, (s, c, t) => insmod(s, c, parsed, t, signature));
    },
    async rmmod(name) {
      await step("rmmod", name, (s, c) => rmmod(s, c, name));
    },
    async writeSysfs(path, value) {
      const match = LIVEPATCH_ATTR.exec(path);
      if (!match?.[1] || !match[2]) {
        throw new LoaderError("EPERM", "write", path, `write to ${path}: the simulated host only writes livepatch attributes`);
      }
      const [, name, attribute] = match;
      await step("write", path, (s, _c, t) => writeAttribute(s, name, attribute, value, t));
    },
    async refresh() {
      await step("refresh", "");
    },
    state: () => step("refresh", ""),
  };
}

function toLoaderError(op: LoaderOperation, target: string, error: SimKernelError): LoaderError {
  const text =
    op === "insmod"
      ? `insmod: ERROR: could not insert module ${target}: ${error.message}`
      : op === "rmmod"
        ? `rmmod: ERROR: ${error.message.startsWith("Module") ? error.message : `could not remove module ${target}: ${error.message}`}`
        : `write to ${target}: ${error.message}`;
  return new LoaderError(error.code, op, target, text, { cause: error });
}
