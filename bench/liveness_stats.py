#!/usr/bin/env python3
"""Numbers for bench/liveness.sh out of two scrapes of a running agent (one at the start of the
measured window, one at its end). Prints tab-separated fields for the shell to read.

  lag M0 M1         beagle_loop_lag_seconds between two /metrics bodies:
                    count p99_interp_ms p99_bound_ms max_lo_ms max_hi_ms gauge0_ms gauge1_ms
                    over10 over20 (turns longer than 10 ms, 20 ms)
                    ("absent" alone when the agent does not export the histogram)
  runs D0 D1 PFX    check runs between two /health/detailed bodies, over the checks named PFX*:
                    checks total min max healthy_at_end other_status_messages
  check FILE        one /health/<name> body: status attempts runs response_time message

p99 of the window: Prometheus' histogram_quantile over the bucket increments (linear inside
the bucket that holds the 99th percentile turn), and that bucket's upper edge as a bound.
The window's longest turn: lies in the highest bucket that grew. The gauge
beagle_loop_lag_max_seconds covers the current and the previous minute, i.e. possibly turns
before the window; when it grew during the window its end value is a turn of the window.
"""
import json
import math
import re
import sys

LAG = "beagle_loop_lag_seconds"
BUCKET = re.compile(r'^' + LAG + r'_bucket\{le="([^"]+)"\}\s+(\S+)')
GAUGE = re.compile(r'^beagle_loop_lag_max_seconds\s+(\S+)')


def scrape(path):
    buckets, gauge = {}, None
    with open(path) as f:
        for line in f:
            m = BUCKET.match(line)
            if m:
                le = math.inf if m.group(1) == "+Inf" else float(m.group(1))
                buckets[le] = float(m.group(2))
                continue
            m = GAUGE.match(line)
            if m:
                gauge = float(m.group(1))
    return buckets, gauge


def ms(v):
    return "inf" if v == math.inf else "%.3f" % (v * 1000)


def lag(p0, p1):
    b0, g0 = scrape(p0)
    b1, g1 = scrape(p1)
    if not b1:
        print("absent")
        return
    edges = sorted(b1)
    cum = [b1[e] - b0.get(e, 0.0) for e in edges]  # cumulative counts of the window
    total = cum[-1]
    if total <= 0:
        print("\t".join(["0", "nan", "nan", "nan", "nan", ms(g0 or 0), ms(g1 or 0), "0", "0"]))
        return
    rank = 0.99 * total
    i = next(k for k, c in enumerate(cum) if c >= rank)
    lo = edges[i - 1] if i > 0 else 0.0
    hi = edges[i]
    below = cum[i - 1] if i > 0 else 0.0
    inside = cum[i] - below
    if hi == math.inf:
        p99 = lo  # as histogram_quantile: the highest finite edge
    else:
        p99 = lo + (hi - lo) * ((rank - below) / inside if inside > 0 else 1.0)
    top = max(k for k, c in enumerate(cum) if c > (cum[k - 1] if k > 0 else 0.0))
    max_lo = edges[top - 1] if top > 0 else 0.0
    max_hi = edges[top]
    def over(edge):  # turns above a bucket edge of the histogram
        return "%d" % (total - cum[edges.index(edge)]) if edge in edges else "nan"
    print("\t".join([
        "%d" % total, ms(p99), ms(hi), ms(max_lo), ms(max_hi),
        ms(g0) if g0 is not None else "nan", ms(g1) if g1 is not None else "nan",
        over(0.01), over(0.02),
    ]))


def runs(p0, p1, prefix):
    def checks(path):
        with open(path) as f:
            return {c["name"]: c for c in json.load(f)["checks"] if c["name"].startswith(prefix)}
    c0, c1 = checks(p0), checks(p1)
    deltas = [c1[n].get("runs", 0) - c0.get(n, {}).get("runs", 0) for n in sorted(c1)]
    healthy = sum(1 for c in c1.values() if c.get("status") == "healthy")
    other = sorted({"%s: %s" % (c.get("status"), c.get("message")) for c in c1.values()
                    if c.get("status") != "healthy"})
    print("\t".join([
        "%d" % len(deltas), "%d" % sum(deltas),
        "%d" % (min(deltas) if deltas else 0), "%d" % (max(deltas) if deltas else 0),
        "%d" % healthy, "; ".join(other) or "-",
    ]))


def check(path):
    with open(path) as f:
        c = json.load(f)
    rt = c.get("response_time")
    # "-" for a missing field: the shell splits on tabs, which fold when a field is empty
    print("\t".join([
        str(c.get("status", "-")), str(c.get("attempts", "-")), str(c.get("runs", "-")),
        "%.3f" % rt if isinstance(rt, (int, float)) else "-",
        str(c.get("message") or "-").replace("\t", " ").replace("\n", " "),
    ]))


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "lag" and len(sys.argv) == 4:
        lag(sys.argv[2], sys.argv[3])
    elif cmd == "runs" and len(sys.argv) == 5:
        runs(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "check" and len(sys.argv) == 3:
        check(sys.argv[2])
    else:
        sys.exit(__doc__)
