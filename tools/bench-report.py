#!/usr/bin/env python3
"""Benchmark report: turns the BENCH lines of a `make bench` console log into a table.

The bench guest (tests/guests/bench) prints, in one boot,
    BENCH <name> median_ns=<n> p10_ns=<n> p90_ns=<n> iters=<n>
    BENCH ratio <a>/<b>=<x.xx>
(Xen prefixes guest lines with "(dN) "), and `bench: <name> <what> <address>` lines that say
what each measurement is. This prints one row per measurement (median, p10, p90, the ratio of
its median to the in-Xen MMIO read's, what it is), then the other ratios. Every ratio is the
guest's own, computed from medians of the same boot.

Usage: tools/bench-report.py <console log>
Exits 1 when the log has no BENCH measurement or a line is malformed, 2 on a usage error.
"""
import re
import sys

REFERENCE = "in_xen_mmio"
MEASUREMENT = re.compile(
    r"BENCH (?P<name>[A-Za-z0-9_]+) median_ns=(?P<median>\d+) p10_ns=(?P<p10>\d+) "
    r"p90_ns=(?P<p90>\d+) iters=(?P<iters>\d+)\s*$"
)
RATIO = re.compile(r"BENCH ratio (?P<num>[A-Za-z0-9_]+)/(?P<den>[A-Za-z0-9_]+)=(?P<value>\d+\.\d\d)\s*$")
WHAT = re.compile(r"\bbench: (?P<name>[A-Za-z0-9_]+)\s+(?P<what>.*?)(\s+0x[0-9a-f]+)?\s*$")
COUNTER = re.compile(r"\bbench: counter at (?P<hz>\d+) Hz; (?P<rest>.*)$")
FAIL = re.compile(r"SCENARIO \S+ FAIL .*")


def parse(lines):
    """Returns (measurements in log order, ratios, what per name, counter line, problems)."""
    measurements, ratios, what, problems = [], {}, {}, []
    counter = None
    for line in lines:
        line = line.rstrip("\r\n")
        at = line.find("BENCH ")
        if at >= 0:
            text = line[at:]
            m = MEASUREMENT.match(text)
            r = RATIO.match(text)
            if m:
                measurements.append({k: (v if k == "name" else int(v)) for k, v in m.groupdict().items()})
            elif r:
                ratios[(r["num"], r["den"])] = r["value"]
            else:
                problems.append(f"malformed: {text}")
            continue
        c = COUNTER.search(line)
        if c:
            counter = c
            continue
        w = WHAT.search(line)
        if w:
            what[w["name"]] = w["what"]
        f = FAIL.search(line)
        if f:
            problems.append(f.group(0))
    return measurements, ratios, what, counter, problems


def ns(value):
    """Formats nanoseconds with thousands separators."""
    return f"{value:,} ns"


def report(path, lines, out=sys.stdout):
    measurements, ratios, what, counter, problems = parse(lines)
    if counter:
        print(f"{path}: counter at {int(counter['hz']):,} Hz; {counter['rest']}", file=out)
    else:
        print(f"{path}:", file=out)
    rows = [("measurement", "median", "p10", "p90", f"ratio to {REFERENCE}", "what")]
    for m in measurements:
        if m["name"] == REFERENCE:
            ratio = "1.00"
        else:
            ratio = ratios.get((m["name"], REFERENCE), "-")
        rows.append((m["name"], ns(m["median"]), ns(m["p10"]), ns(m["p90"]), ratio,
                     what.get(m["name"], "")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print(file=out)
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [r[k].rjust(widths[k]) for k in range(1, 5)]
        print("  ".join(cells + [r[5]]).rstrip(), file=out)
        if i == 0:
            print("  ".join(["-" * w for w in widths] + ["----"]), file=out)
    others = [(k, v) for k, v in ratios.items() if k[1] != REFERENCE]
    if others:
        print(file=out)
        print("other ratios (medians, same boot):", file=out)
        for (num, den), value in others:
            print(f"  {num}/{den} = {value}", file=out)
    for p in problems:
        print(f"bench-report: {p}", file=out)
    if not measurements:
        print(f"bench-report: no BENCH measurement in {path}", file=out)
        return 1
    return 1 if any(p.startswith("malformed") for p in problems) else 0


def main(argv):
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        print(f"bench-report: {e}", file=sys.stderr)
        return 1
    return report(argv[0], lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
