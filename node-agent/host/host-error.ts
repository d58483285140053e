import { describeReason, type Reason, type ReasonParams } from "./reasons.ts";

/** A task that kept a livepatch transition from finishing. */
export interface StalledTask {
  pid: number;
  tid: number;
  comm: string;
  /** Contents of /proc/<pid>/task/<tid>/stack when readable (needs root). */
  stack?: string;
  /** The task's patch_state (0 unpatched, 1 patched). */
  patchState: number;
}

/** Structured extra information a HostError may carry. */
export interface HostErrorDetails {
  /** Tasks that blocked a transition (TransitionStalled). */
  stalledTasks?: StalledTask[];
  /** Whether the stalled transition was successfully reversed. */
  reversed?: boolean;
  /** errno-like code reported by the loader, when the failure came from the kernel. */
  errno?: string;
  /** Free-form extras (safe to serialise as JSON). */
  [key: string]: unknown;
}

export interface HostErrorOptions {
  details?: HostErrorDetails;
  cause?: unknown;
}

/** Every failure of the host layer: a reason code, an admin-facing message, details and the cause. */
export class HostError extends Error {
  override readonly name = "HostError";
  readonly reason: Reason;
  readonly details: HostErrorDetails | undefined;

  constructor(reason: Reason, message: string, options: HostErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.reason = reason;
    this.details = options.details;
  }

  /** JSON shape used by the CLI and the agent status. */
  toJSON(): { reason: Reason; message: string; details?: HostErrorDetails } {
    return this.details === undefined
      ? { reason: this.reason, message: this.message }
      : { reason: this.reason, message: this.message, details: this.details };
  }
}

/** Builds a HostError whose message is the reason's template filled with params. */
export function hostError(reason: Reason, params: ReasonParams = {}, options: HostErrorOptions = {}): HostError {
  return new HostError(reason, describeReason(reason, params), options);
}

export function isHostError(value: unknown): value is HostError {
  return value instanceof HostError;
}
