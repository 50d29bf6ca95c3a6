#!/usr/bin/env python3
"""Benchmark report: turns the BENCH lines of `make bench` console logs into tables.

The bench guest (tests/guests/bench, tests/bench/bench.toml) prints, in one boot,
    BENCH <name> median_ns=<n> p10_ns=<n> p90_ns=<n> iters=<n>
    BENCH ratio <a>/<b>=<x.xx>
(Xen prefixes guest lines with "(dN) ", a vpl011's with "(XEN) DOMn: "), and `bench: <name>
<what> <address>` lines that say what each measurement is. For such a log this prints one row
per measurement (median, p10, p90, the ratio of its median to the in-Xen MMIO read's, what it
is), the other ratios, and the goals of issue 8 with the value this boot reached (a report,
never a verdict: no time is a failure).

The Linux frontend's blkbench (tests/linux/blkbench.c, tests/bench/bench-linux.toml) prints
    BENCH <name> median_ns=<n> p10_ns=<n> p90_ns=<n> iters=<n> mib_s=<x> iops=<n> irqs=<x> warmup=<n>
For those rows this prints latency percentiles in microseconds, IOPS, MiB/s, interrupts per
request and, from the reference backend's counters (`backend: stats: devN ...`, printed after
each row), its round trips and posted notifies per request, then the fast/classic ratios of each
pair `<row>_fast` / `<row>_classic`.

Usage: tools/bench-report.py <console log> [<console log> ...]
Exits 1 when a log has no BENCH measurement or a line is malformed, 2 on a usage error.
"""
import re
import sys

REFERENCE = "in_xen_mmio"
MEASUREMENT = re.compile(
    r"BENCH (?P<name>[A-Za-z0-9_]+) median_ns=(?P<median>\d+) p10_ns=(?P<p10>\d+) "
    r"p90_ns=(?P<p90>\d+) iters=(?P<iters>\d+)(?P<extra>( [a-z0-9_]+=-?\d+(\.\d+)?)*)\s*$"
)
RATIO = re.compile(r"BENCH ratio (?P<num>[A-Za-z0-9_]+)/(?P<den>[A-Za-z0-9_]+)=(?P<value>\d+\.\d\d)\s*$")
WHAT = re.compile(r"\bbench: (?P<name>[A-Za-z0-9_]+)\s+(?P<what>.*?)(\s+0x[0-9a-f]+)?\s*$")
COUNTER = re.compile(r"\bbench: counter at (?P<hz>\d+) Hz; (?P<rest>.*)$")
FAIL = re.compile(r"SCENARIO \S+ FAIL .*")
# The reference backend's lines (tests/guests/backend): a device and its frontend address, and
# its counters, printed after 1 s without work (tests/linux/init pauses after each row).
# The reference backend's lines, not rust-ioreq-backend's (the Linux backend's daemon prints
# "rust-ioreq-backend: stats: dev<n> ..." for its own devices).
BACKEND_DEVICE = re.compile(r"(?<!rust-ioreq-)backend:\s+dev(?P<dev>\d+) \S+ at 0x(?P<addr>[0-9a-f]+)\.\.")
BACKEND_STATS = re.compile(
    r"(?<!rust-ioreq-)backend: stats: dev(?P<dev>\d+) (?P<accesses>\d+) accesses, (?P<notifies>\d+) notifies, "
    r"(?P<posted>\d+) posted notifies, (?P<irqs>\d+) irqs"
)
# tests/linux/init's line before each blkbench run.
BLKBENCH_START = re.compile(r"\bblkbench: start ")
# tests/linux/init's line naming the disk of a kind: "bench-disk <kind>: /dev/vdX (virtioN at <addr>".
BENCH_DISK = re.compile(r"PASS bench-disk (?P<kind>[A-Za-z0-9]+): \S+ \(\S+ at (?P<addr>[0-9a-f]+),")

# Issue 8's goals: (numerator, denominator, comparison, bound, what). Ratios of medians.
GOALS = [
    ("notify_posted", REFERENCE, "<=", 1.3, "a posted QueueNotify"),
    ("isr_read", REFERENCE, "<=", 1.1, "InterruptStatus in Xen"),
    ("ack_write", REFERENCE, "<=", 1.1, "InterruptACK in Xen"),
    ("transport_read", REFERENCE, "<=", 1.1, "a transport register in Xen"),
    ("poll_read", REFERENCE, "<=", 3.0, "a round trip to a polling backend"),
    ("config_read", "evtchn_roundtrip", "<", 1.0,
     "a blocking round trip against upstream's bare signalling"),
]
# The Linux goal: 4 KiB fast/classic IOPS.
LINUX_GOAL = 10.0


# A vpl011 line (Linux's console): Xen prints a domain's line in chunks of at most 126 bytes,
# each with this prefix; a chunk of exactly that length is the head of a longer line (the
# harness joins them the same way, tests/harness/src/judge.rs).
VPL011 = re.compile(r"^\(XEN\) DOM(?P<domid>\d+): (?P<text>.*)$")
VPL011_CHUNK = 126


def join_vpl011(lines):
    """Yields the console lines with each vpl011 line's chunks joined into one."""
    held = {}
    for line in lines:
        line = line.rstrip("\r\n")
        v = VPL011.match(line)
        if not v:
            yield line
            continue
        domid, text = v["domid"], v["text"]
        joined = held.pop(domid, "") + text
        if len(text.encode("utf-8", errors="replace")) == VPL011_CHUNK:
            held[domid] = joined
        else:
            yield f"(XEN) DOM{domid}: {joined}"
    for domid, text in held.items():
        yield f"(XEN) DOM{domid}: {text}"


def backend_counters(lines):
    """Per Linux BENCH row (by name): the reference backend's counter increments over the row,
    from the last stats line of its device before the row's `blkbench: start` line to the first
    after its BENCH line (tests/linux/init pauses long enough after each row for one)."""
    device_at, kind_addr, latest, rows, order = {}, {}, {}, {}, []
    at_start = {}
    for line in lines:
        if BLKBENCH_START.search(line):
            at_start = dict(latest)
            continue
        d = BACKEND_DEVICE.search(line)
        if d:
            device_at[d["addr"]] = int(d["dev"])
        k = BENCH_DISK.search(line)
        if k:
            kind_addr[k["kind"]] = k["addr"]
        st = BACKEND_STATS.search(line)
        if st:
            dev = int(st["dev"])
            counts = {key: int(st[key]) for key in ("accesses", "notifies", "posted", "irqs")}
            # The first stats line of a device after a row closes that row.
            for name in order:
                row = rows[name]
                if row["dev"] == dev and row["after"] is None:
                    row["after"] = counts
            latest[dev] = counts
        at = line.find("BENCH ")
        m = MEASUREMENT.match(line[at:]) if at >= 0 else None
        if m and m["extra"]:
            kind = m["name"].rsplit("_", 1)[-1]
            dev = device_at.get(kind_addr.get(kind, ""), None)
            if dev is not None:
                rows[m["name"]] = {"dev": dev, "before": at_start.get(dev), "after": None}
                order.append(m["name"])
    out = {}
    for name, row in rows.items():
        if row["before"] and row["after"]:
            out[name] = {k: row["after"][k] - row["before"][k] for k in row["after"]}
    return out


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
                row = {k: (v if k == "name" else int(v))
                       for k, v in m.groupdict().items() if k != "extra"}
                row["extra"] = dict(kv.split("=", 1) for kv in m["extra"].split())
                measurements.append(row)
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


def us(value):
    """Formats nanoseconds as microseconds with thousands separators."""
    return f"{value / 1000:,.0f} µs"


def table(rows, out, right):
    """Prints `rows` (the first is the header) with the columns in `right` right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        cells = [c.rjust(widths[k]) if k in right else c.ljust(widths[k]) for k, c in enumerate(r)]
        print("  ".join(cells).rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)


def ratio_of(name, den, medians, ratios):
    """The ratio of medians name/den: the guest's own (two decimals) if it printed one."""
    if (name, den) in ratios:
        return float(ratios[(name, den)])
    if name in medians and medians.get(den):
        return medians[name] / medians[den]
    return None


def guest_report(measurements, ratios, what, out):
    """The bare-metal bench guest's table, other ratios and goals."""
    rows = [("measurement", "median", "p10", "p90", f"ratio to {REFERENCE}", "what")]
    for m in measurements:
        ratio = "1.00" if m["name"] == REFERENCE else ratios.get((m["name"], REFERENCE), "-")
        rows.append((m["name"], ns(m["median"]), ns(m["p10"]), ns(m["p90"]), ratio,
                     what.get(m["name"], "")))
    print(file=out)
    table(rows, out, right={1, 2, 3, 4})
    others = [(k, v) for k, v in ratios.items() if k[1] != REFERENCE]
    if others:
        print(file=out)
        print("other ratios (medians, same boot):", file=out)
        for (num, den), value in others:
            print(f"  {num}/{den} = {value}", file=out)
    medians = {m["name"]: m["median"] for m in measurements}
    p10s = {m["name"]: m["p10"] for m in measurements}
    goals = []
    for num, den, op, bound, why in GOALS:
        value = ratio_of(num, den, medians, ratios)
        if value is None:
            goals.append((f"{num}/{den}", "-", "-", f"{op} {bound:g}", "not measured", why))
            continue
        met = value <= bound if op == "<=" else value < bound
        p10 = f"{p10s[num] / p10s[den]:.2f}" if p10s.get(den) else "-"
        goals.append((f"{num}/{den}", f"{value:.2f}", p10, f"{op} {bound:g}",
                      "met" if met else "missed", why))
    print(file=out)
    print("goals of issue 8 (ratio of medians, and of p10s for the undisturbed cost; this boot; "
          "a report, not a test):", file=out)
    table([("ratio", "median", "p10", "goal", "reached", "what")] + goals, out, right={1, 2})


def linux_report(measurements, counters, out):
    """The Linux frontend's table and its fast/classic ratios."""
    rows = [("measurement", "median", "p10", "p90", "IOPS", "MiB/s", "irqs/req", "round trips/req",
             "posted/req", "requests")]
    for m in measurements:
        x = m["extra"]
        trips = posted = "-"
        c = counters.get(m["name"])
        if c:
            n = m["iters"] + int(x.get("warmup", "0"))
            trips = f"{c['accesses'] / n:.2f}"
            posted = f"{c['posted'] / n:.2f}"
        rows.append((m["name"], us(m["median"]), us(m["p10"]), us(m["p90"]), x.get("iops", "-"),
                     x.get("mib_s", "-"), x.get("irqs", "-"), trips, posted,
                     str(m["iters"])))
    print(file=out)
    table(rows, out, right=set(range(1, 10)))
    print("(irqs/req: the disk's interrupts in Linux's /proc/interrupts; round trips/req and "
          "posted/req: the backend's accesses and posted QueueNotifies, warm-up included; "
          "-1 or -: no such counter)", file=out)
    by_name = {m["name"]: m for m in measurements}
    pairs = []
    for m in measurements:
        if not m["name"].endswith("_fast"):
            continue
        base = m["name"][: -len("_fast")]
        classic = by_name.get(base + "_classic")
        if not classic or not m["median"]:
            continue
        iops = "-"
        fi, ci = m["extra"].get("iops"), classic["extra"].get("iops")
        if fi and ci and float(ci) > 0:
            iops = f"{float(fi) / float(ci):.2f}"
        mib = "-"
        fm, cm = m["extra"].get("mib_s"), classic["extra"].get("mib_s")
        if fm and cm and float(cm) > 0:
            mib = f"{float(fm) / float(cm):.2f}"
        pairs.append((base, f"{classic['median'] / m['median']:.2f}", iops, mib))
    if pairs:
        print(file=out)
        print("fast/classic (same boot): classic median latency / fast median latency, fast "
              "IOPS / classic IOPS, fast MiB/s / classic MiB/s", file=out)
        table([("row", "latency", "IOPS", "MiB/s")] + pairs, out, right={1, 2, 3})
        for base, _, iops, _ in pairs:
            if base.startswith("linux_4k_") and iops != "-":
                verdict = "met" if float(iops) >= LINUX_GOAL else "missed"
                print(f"goal of issue 8: {base} fast/classic IOPS {iops} (goal >= "
                      f"{LINUX_GOAL:g}): {verdict}", file=out)
    # The Linux backend's disk (rust-ioreq-backend in a Linux domain) beside the reference
    # backend's, both on the fast transport, in the same boot.
    beside = []
    for m in measurements:
        if not m["name"].endswith("_linuxbe"):
            continue
        base = m["name"][: -len("_linuxbe")]
        bare = by_name.get(base + "_fast")
        if not bare or not bare["median"]:
            continue
        iops = "-"
        li, bi = m["extra"].get("iops"), bare["extra"].get("iops")
        if li and bi and float(bi) > 0:
            iops = f"{float(li) / float(bi):.2f}"
        beside.append((base, us(bare["median"]), us(m["median"]),
                       f"{m['median'] / bare['median']:.2f}", iops))
    if beside:
        print(file=out)
        print("Linux backend beside the bare-metal backend (same boot, both fast transport): "
              "median latency of each, Linux / bare-metal latency, Linux / bare-metal IOPS",
              file=out)
        table([("row", "bare-metal", "Linux", "latency", "IOPS")] + beside, out,
              right={1, 2, 3, 4})


def report(path, lines, out=sys.stdout):
    lines = list(join_vpl011(lines))
    measurements, ratios, what, counter, problems = parse(lines)
    if counter:
        print(f"{path}: counter at {int(counter['hz']):,} Hz; {counter['rest']}", file=out)
    else:
        print(f"{path}:", file=out)
    guest = [m for m in measurements if not m["extra"]]
    linux = [m for m in measurements if m["extra"]]
    if guest:
        guest_report(guest, ratios, what, out)
    if linux:
        linux_report(linux, backend_counters(lines), out)
    for p in problems:
        print(f"bench-report: {p}", file=out)
    if not measurements:
        print(f"bench-report: no BENCH measurement in {path}", file=out)
        return 1
    return 1 if any(p.startswith("malformed") for p in problems) else 0


def main(argv):
    if not argv or any(a.startswith("-") for a in argv):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    status = 0
    for i, path in enumerate(argv):
        if i:
            print()
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()
        except OSError as e:
            print(f"bench-report: {e}", file=sys.stderr)
            status = 1
            continue
        status = max(status, report(path, lines))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
