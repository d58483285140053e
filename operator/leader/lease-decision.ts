/**
 * Leader election over a coordination.k8s.io Lease: the decision, with the clock passed in.
 *
 * Another holder's lease is judged on this process's clock only, as client-go's leaderelection
 * does: the holder's renewTime was written with the holder's clock, and replicas' clocks differ. A
 * renewal is seen as a change of the record; the lease has expired when the record has not changed
 * for leaseDurationSeconds of local time since this process first saw it as it is. A holder whose
 * clock runs an hour ahead is then not waited for an hour after it stopped, and one whose clock
 * runs behind is not taken over while it still renews.
 */
export interface LeaseView {
  readonly holderIdentity?: string | undefined;
  readonly renewTime?: string | undefined;
  readonly acquireTime?: string | undefined;
  readonly leaseDurationSeconds?: number | undefined;
  readonly leaseTransitions?: number | undefined;
}

/** The lease record as this process last saw it, and when (its own clock, ms) it first saw it so. */
export interface LeaseObservation {
  readonly record: string;
  readonly at: number;
}

export type LeaseAction = "create" | "renew" | "acquire" | "wait";

export interface LeaseDecision {
  readonly action: LeaseAction;
  /** The observation to keep for the next decision (undefined: there is no lease). */
  readonly observed: LeaseObservation | undefined;
}

/** What a holder's write changes: a renewal moves renewTime, a takeover the holder and the transitions. */
export function leaseRecord(lease: LeaseView): string {
  return JSON.stringify([lease.holderIdentity ?? "", lease.renewTime ?? "", lease.acquireTime ?? "", lease.leaseDurationSeconds ?? null, lease.leaseTransitions ?? 0]);
}

/** The observation of `lease` at `now`: the previous one while the record is unchanged, else a new one from now. */
export function observe(previous: LeaseObservation | undefined, lease: LeaseView, now: Date): LeaseObservation {
  const record = leaseRecord(lease);
  return previous?.record === record ? previous : { record, at: now.getTime() };
}

export function leaseAction(lease: LeaseView | undefined, identity: string, previous: LeaseObservation | undefined, now: Date, defaultDurationSeconds: number): LeaseDecision {
  if (!lease) return { action: "create", observed: undefined };
  const observed = observe(previous, lease, now);
  if (lease.holderIdentity === identity) return { action: "renew", observed };
  // Released (or never held): free to take.
  if (!lease.holderIdentity) return { action: "acquire", observed };
  const duration = (lease.leaseDurationSeconds ?? defaultDurationSeconds) * 1000;
  return { action: observed.at + duration < now.getTime() ? "acquire" : "wait", observed };
}

/** MicroTime as the API server wants it: RFC 3339 with exactly six fractional digits. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}
