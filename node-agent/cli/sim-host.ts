import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { buildSimModule } from "../sim/build-module.ts";
import { configureSimHost, layoutSimHost, rebootSimHost } from "../sim/layout.ts";
import type { Command, GlobalOptions } from "./args.ts";
import type { Output } from "./commands.ts";

export type SimHostCommand = Extract<Command, { verb: "sim-host" }>;

/** The `sim-host` verbs: lay out, reconfigure and reboot a simulated host; build test modules. */
export async function runSimHost(command: SimHostCommand, global: GlobalOptions, cwd: string): Promise<Output> {
  const root = path.resolve(cwd, global.hostRoot);
  switch (command.action) {
    case "init": {
      const { verb: _v, action: _a, ...options } = command;
      const config = await layoutSimHost(root, options);
      return { json: { hostRoot: root, config }, text: `simulated host ready at ${root} (kernel ${config.kernelRelease})\n` };
    }
    case "configure": {
      const { verb: _v, action: _a, ...changes } = command;
      const config = await configureSimHost(root, changes);
      return { json: { hostRoot: root, config }, text: `simulated host at ${root} reconfigured\n` };
    }
    case "reboot": {
      const state = await rebootSimHost(root, {
        ...(command.kernelRelease ? { kernelRelease: command.kernelRelease } : {}),
        ...(command.bootId ? { bootId: command.bootId } : {}),
      });
      return { json: { hostRoot: root, bootId: state.bootId }, text: `simulated host at ${root} rebooted (boot id ${state.bootId})\n` };
    }
    case "make-module": {
      const bytes = buildSimModule({
        name: command.name,
        vermagic: command.vermagic,
        livepatch: command.livepatch,
        replace: command.replace,
        signed: command.signed,
        ...(command.license ? { license: command.license } : {}),
      });
      const output = path.resolve(cwd, command.output);
      await mkdir(path.dirname(output), { recursive: true });
      await writeFile(output, bytes);
      return { json: { file: output, size: bytes.length }, text: `wrote ${output} (${bytes.length} bytes)\n` };
    }
  }
}
