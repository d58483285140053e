import { z } from "zod";
import { bool, drop, not, str, type Flag, type Values } from "./options.ts";

export const SIM_HOST_FLAGS: readonly Flag[] = [
  "kernel-release",
  "boot-id",
  "sig-enforce",
  "lockdown",
  "livepatch",
  "modules-disabled",
  "ftrace-disabled",
  "transition-ms",
  "free-delay-ms",
  "stall",
  "tainted",
  "replace-attribute",
  "signal-attribute",
  "name",
  "vermagic",
  "replace",
  "not-livepatch",
  "signed",
  "license",
  "output",
];

const count = z.coerce.number().int().nonnegative();
const nonEmpty = z.string().min(1);

/** `sim-host <action>`: one schema per action (zod's discriminated unions take one key). */
export const SimHostSchema = z.discriminatedUnion("action", [
  z.object({
    verb: z.literal("sim-host"),
    action: z.literal("init"),
    kernelRelease: nonEmpty,
    bootId: nonEmpty.optional(),
    signatureEnforce: z.boolean().optional(),
    lockdown: z.enum(["none", "integrity", "confidentiality"]).optional(),
    livepatchSupported: z.boolean().optional(),
    modulesDisabled: z.boolean().optional(),
    ftraceEnabled: z.boolean().optional(),
    transitionMs: count.optional(),
    freeDelayMs: count.optional(),
    stall: z.boolean().optional(),
    tainted: count.optional(),
    replaceAttribute: z.boolean().optional(),
    signalAttribute: z.boolean().optional(),
  }),
  z.object({
    verb: z.literal("sim-host"),
    action: z.literal("configure"),
    signatureEnforce: z.boolean().optional(),
    lockdown: z.enum(["none", "integrity", "confidentiality"]).optional(),
    livepatchSupported: z.boolean().optional(),
    modulesDisabled: z.boolean().optional(),
    ftraceEnabled: z.boolean().optional(),
    transitionMs: count.optional(),
    freeDelayMs: count.optional(),
    stall: z.boolean().optional(),
    replaceAttribute: z.boolean().optional(),
    signalAttribute: z.boolean().optional(),
  }),
  z.object({ verb: z.literal("sim-host"), action: z.literal("reboot"), kernelRelease: nonEmpty.optional(), bootId: nonEmpty.optional() }),
  z.object({
    verb: z.literal("sim-host"),
    action: z.literal("make-module"),
    name: nonEmpty,
    vermagic: nonEmpty,
    output: nonEmpty,
    replace: z.boolean(),
    livepatch: z.boolean(),
    signed: z.boolean(),
    license: nonEmpty.optional(),
  }),
]);
/** The raw `sim-host <action>` object for SimHostSchema. */
export function simHostCommand(action: string | undefined, v: Values): Record<string, unknown> {
  const settings = drop({
    signatureEnforce: bool(v, "sig-enforce"),
    lockdown: str(v, "lockdown"),
    livepatchSupported: bool(v, "livepatch"),
    modulesDisabled: bool(v, "modules-disabled"),
    ftraceEnabled: not(bool(v, "ftrace-disabled")),
    transitionMs: str(v, "transition-ms"),
    freeDelayMs: str(v, "free-delay-ms"),
    stall: bool(v, "stall"),
    replaceAttribute: bool(v, "replace-attribute"),
    signalAttribute: bool(v, "signal-attribute"),
  });
  switch (action) {
    case "init":
      return {
        verb: "sim-host",
        action,
        kernelRelease: str(v, "kernel-release"),
        ...drop({ bootId: str(v, "boot-id"), tainted: str(v, "tainted") }),
        ...settings,
      };
    case "configure":
      return { verb: "sim-host", action, ...settings };
    case "reboot":
      return { verb: "sim-host", action, ...drop({ kernelRelease: str(v, "kernel-release"), bootId: str(v, "boot-id") }) };
    case "make-module":
      return {
        verb: "sim-host",
        action,
        name: str(v, "name"),
        vermagic: str(v, "vermagic"),
        output: str(v, "output"),
        replace: bool(v, "replace") ?? false,
        livepatch: !(bool(v, "not-livepatch") ?? false),
        signed: bool(v, "signed") ?? false,
        ...drop({ license: str(v, "license") }),
      };
    default:
      return { verb: "sim-host", action: action ?? "(missing)" };
  }
}
