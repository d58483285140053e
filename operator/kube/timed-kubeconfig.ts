/**
 * A KubeConfig whose API calls give up after a timeout. @kubernetes/client-node's calls have
 * none of their own: one sent on a connection that died without a FIN or RST would hold its
 * reconcile worker until undici's 5-minute defaults. Watches are not affected (the client's Watch
 * uses its own abort signal and inactivity timeout).
 */
import { KubeConfig } from "@kubernetes/client-node";

type Context = Parameters<KubeConfig["applySecurityAuthentication"]>[0];

class TimedKubeConfig extends KubeConfig {
  constructor(private readonly timeoutMs: number) {
    super();
  }

  override async applySecurityAuthentication(context: Context): Promise<void> {
    await super.applySecurityAuthentication(context);
    if (!context.getSignal()) context.setSignal(AbortSignal.timeout(this.timeoutMs));
  }
}

/** A copy of `kc` (same clusters, users and context) whose API calls time out. */
export function timedKubeConfig(kc: KubeConfig, timeoutMs: number): KubeConfig {
  const timed = new TimedKubeConfig(timeoutMs);
  timed.loadFromOptions({ clusters: kc.clusters, users: kc.users, contexts: kc.contexts, currentContext: kc.getCurrentContext() });
  return timed;
}
