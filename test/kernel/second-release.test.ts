// The second Debian kernel release: a guest of 6.1.0-57 (fetched and cached by the same scripts as
// the pinned 6.1.0-56, KERNEL_RELEASE naming it) loads klp_test_v1 built for 6.1.0-57, and the
// agent refuses the pinned release's build of the same source with VermagicMismatch before the
// kernel sees it (Debian's kernel would take it: modversions skip the release in vermagic).
import { describe, expect, it } from "vitest";
import { arr, expectOk, expectRefused, obj, run } from "./facts.ts";
import { kernelSuite, TEST_TIMEOUT_MS, type BootSpec } from "./harness.ts";
import { describePerf, perfFigures, recordPerf } from "./perf-figures.ts";

/** The release Debian moved bookworm to after the pinned one; both are in the archive. */
const SECOND_RELEASE = process.env.KLP_SECOND_KERNEL_RELEASE ?? "6.1.0-57-amd64";
const GUEST: BootSpec = { plan: "second-release", cmdline: ["kpatch.enable=0"] };

const suite = kernelSuite("second-release", { release: SECOND_RELEASE, foreignModules: {} });

describe(`real kernel: a guest of the second release (${SECOND_RELEASE})`, () => {
  it("boots the second release's kernel and reports every step", async (ctx) => {
    suite.skipIfUnavailable(ctx);
    const b = await suite.boot(GUEST);
    expect(suite.guest()?.krel).toBe(SECOND_RELEASE);
    expect(obj(b.results.get("env")?.details).release).toBe(SECOND_RELEASE);
    expect(b.done, "runner did not finish").toBe(true);
  }, TEST_TIMEOUT_MS);

  suite.scenario("its own build loads; the pinned release's build is refused with VermagicMismatch, never reaching the kernel", GUEST, "second-release", (d) => {
    const foreignRelease = String(d.foreignRelease);
    expect(foreignRelease, "the foreign build is of another release").not.toBe(SECOND_RELEASE);
    expect(String(d.foreignVermagic).split(" ")[0]).toBe(foreignRelease);
    expect(String(d.ownVermagic).split(" ")[0]).toBe(SECOND_RELEASE);
    const foreign = run(d.foreignLoad);
    expectRefused(foreign, ["VermagicMismatch"]);
    expect(foreign.stderr).toContain(`klp_test_v1 was built for kernel ${foreignRelease}, the target is ${SECOND_RELEASE}`);
    const afterForeign = obj(d.afterForeign);
    expect(afterForeign.sysModule).toBe(false);
    expect(afterForeign.kpatchTree).toEqual([]);
    expect(arr(d.foreignKmsg).filter((l) => String(l).includes("klp_test_v1")), "no load was tried").toEqual([]);
    expectOk(run(d.load));
    const loaded = obj(d.loaded);
    expect(loaded.cmdline).toBe("klp_test_v1 patched");
    expect(loaded.enabled).toBe("1");
    expect(loaded.transition).toBe("0");
    suite.log(`${SECOND_RELEASE}: own build loaded in ${run(d.load).ms} ms (CLI); ${foreign.stderr.trim()}`);
  });

  suite.scenario("agent load time next to bare insmod + transition wait on the second release (same module, same guest)", GUEST, "perf", (d) => {
    const figures = perfFigures(d, SECOND_RELEASE, suite.accel());
    suite.log(describePerf(figures));
    recordPerf(suite.lastRunDir, figures);
  });
});
