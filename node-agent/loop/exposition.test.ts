import { describe, expect, it } from "vitest";
import { MetricSet } from "./exposition.ts";

describe("MetricSet", () => {
  it("renders counters, gauges and summaries in the text format, labels escaped", () => {
    const m = new MetricSet();
    const c = m.counter("ops_total", "Operations");
    const g = m.gauge("temp", "A gauge\nwith a newline");
    const s = m.summary("op_seconds", "Durations");
    c.inc({ op: "load", result: "success" });
    c.inc({ result: "success", op: "load" }, 2);
    g.set({ path: 'a"b\\c\nd' }, 1.5);
    g.set({}, Infinity);
    s.observe({ op: "x" }, 0.25);
    s.observe({ op: "x" }, 0.5);
    expect(m.render()).toBe(
      [
        "# HELP ops_total Operations",
        "# TYPE ops_total counter",
        'ops_total{op="load",result="success"} 3',
        "# HELP temp A gauge\\nwith a newline",
        "# TYPE temp gauge",
        'temp{path="a\\"b\\\\c\\nd"} 1.5',
        "temp +Inf",
        "# HELP op_seconds Durations",
        "# TYPE op_seconds summary",
        'op_seconds_sum{op="x"} 0.75',
        'op_seconds_count{op="x"} 2',
        "",
      ].join("\n"),
    );
  });

  it("removes and clears gauge series; counters can take a total read elsewhere", () => {
    const m = new MetricSet();
    const g = m.gauge("g", "g");
    g.set({ a: "1" }, 1);
    g.set({ a: "2" }, 2);
    g.remove({ a: "1" });
    expect(m.render()).toContain('g{a="2"} 2');
    expect(m.render()).not.toContain('a="1"');
    g.clear();
    expect(m.render()).toBe("# HELP g g\n# TYPE g gauge\n");
    const c = m.counter("cpu_seconds_total", "cpu");
    c.setTotal({}, 12.5);
    expect(m.render()).toContain("cpu_seconds_total 12.5");
  });

  it("refuses invalid and duplicate names", () => {
    const m = new MetricSet();
    m.counter("a_total", "a");
    expect(() => m.gauge("a_total", "again")).toThrow(/twice/);
    expect(() => m.gauge("bad-name", "x")).toThrow(/invalid/);
  });
});
