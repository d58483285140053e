/** Leader election over a coordination.k8s.io Lease: the decision, with the clock passed in. */
export interface LeaseView {
  readonly holderIdentity?: string | undefined;
  readonly renewTime?: string | undefined;
  readonly leaseDurationSeconds?: number | undefined;
}

export type LeaseAction = "create" | "renew" | "acquire" | "wait";

export function leaseAction(lease: LeaseView | undefined, identity: string, now: Date, defaultDurationSeconds: number): LeaseAction {
  if (!lease) return "create";
  if (lease.holderIdentity === identity) return "renew";
  if (!lease.holderIdentity || !lease.renewTime) return "acquire";
  const duration = (lease.leaseDurationSeconds ?? defaultDurationSeconds) * 1000;
  return Date.parse(lease.renewTime) + duration < now.getTime() ? "acquire" : "wait";
}

/** MicroTime as the API server wants it: RFC 3339 with exactly six fractional digits. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}
