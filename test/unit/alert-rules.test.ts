// The chart's alert rules (charts/kpatch-operator/files/alerts.yaml, the one file the
// PrometheusRule template ships) checked and unit-tested by Prometheus's own promtool: `check
// rules` (syntax, PromQL, templates) and `test rules` with alert-rules.promtool.yaml, which must
// cover every alert both firing and not firing. promtool comes from Debian's prometheus package,
// installed by scripts/monitoring/ensure-prometheus.sh when missing: this test never skips.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ALERTS_FILE, ensurePrometheusTools, runTool, type PrometheusTools } from "../support/prometheus-tools.ts";

const TESTS_FILE = path.join(import.meta.dirname, "alert-rules.promtool.yaml");

interface RuleFile {
  groups: Array<{ name: string; rules: Array<{ alert?: string; expr: string }> }>;
}
interface PromtoolTests {
  rule_files: string[];
  tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }>;
}

let tools: PrometheusTools;

beforeAll(async () => {
  tools = await ensurePrometheusTools();
}, 600_000);

describe("the chart's alert rules under promtool", () => {
  it("promtool check rules accepts the rules file", async () => {
    const r = await runTool(tools.promtool, ["check", "rules", ALERTS_FILE]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const alerts = (parse(await readFile(ALERTS_FILE, "utf8")) as RuleFile).groups.flatMap((g) => g.rules);
    expect(r.stdout).toContain(`SUCCESS: ${alerts.length} rules found`);
  });

  it("promtool test rules passes, and the tests cover every alert firing and not firing", async () => {
    const r = await runTool(tools.promtool, ["test", "rules", TESTS_FILE], { cwd: path.dirname(TESTS_FILE) });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const tests = parse(await readFile(TESTS_FILE, "utf8")) as PromtoolTests;
    expect(tests.rule_files.map((f) => path.resolve(path.dirname(TESTS_FILE), f))).toEqual([ALERTS_FILE]);
    const alerts = (parse(await readFile(ALERTS_FILE, "utf8")) as RuleFile).groups.flatMap((g) => g.rules.flatMap((x) => (x.alert ? [x.alert] : [])));
    expect(alerts.length).toBeGreaterThanOrEqual(5);
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const alert of alerts) {
      const of = cases.filter((c) => c.alertname === alert);
      expect(of.some((c) => (c.exp_alerts ?? []).length > 0), `${alert} firing`).toBe(true);
      expect(of.some((c) => (c.exp_alerts ?? []).length === 0), `${alert} not firing`).toBe(true);
    }
  });
});
