#!/usr/bin/env python3
"""Hostile load for bench/soak.sh (issue 14). Each subcommand prints one JSON object.

  slowloris PORT --idle N --slow N --seconds S [--rate R] [--settle T]
      Holds N connections that send nothing and N that send a request head one byte a second
      (never finishing it); any the server closes is reopened, at most R connects a second in
      all (default 1000). Prints what it held: connects, closes seen, the mean and minimum
      number of its connections open, sampled each second after the first T seconds (its own
      view: a socket counts from its connect until it reads EOF, a reset or an answer).
  probe PORT --seconds S [--interval I] [--timeout T] [--path /health]
      GET PATH on a fresh connection (Connection: close) every I seconds (default 0.05), as a
      health probe does; a probe that errors, times out (T, default 1 s) or is not a 200 is a
      failure. Prints count, ok, success %, p50/p99/max latency in ms over all probes
      (a failure counts at its elapsed time).
  setbomb PORT --seconds S [--values 1000]
      StatsD over UDP for S seconds: sets (|s), each name receiving VALUES distinct values,
      then the next name. Prints lines and packets sent.
  nameflood PORT --names N
      StatsD over UDP: N distinct counter names (one line each, 1 increment), paced in
      bursts so that the kernel buffer is not the limit. Prints lines sent.
  selfseries URL
      Scrapes URL (/metrics) and prints the beagle_* families and series it holds.
  sink PORT FILE
      A webhook receiver: answers every POST 200 and appends its dedup_key (or "-") to FILE,
      one line per delivery, until killed.
  committed DB
      The notification rows in a state store (SQLite), by state; "error" when unreadable.
"""
import json
import resource
import selectors
import socket
import sys
import time
import urllib.request


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def arg(args, name, default, conv=float):
    if name in args:
        return conv(args[args.index(name) + 1])
    return default


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


# ---- slowloris ----------------------------------------------------------------------------

HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: soak\r\nX-Slow: "


def slowloris(port, n_idle, n_slow, seconds, rate, settle):
    nofile = raise_nofile()
    sel = selectors.DefaultSelector()
    socks = {}  # sock -> [kind, connected, next_send, sent_bytes]
    stats = {"connects": 0, "connect_errors": 0, "closed_by_server": 0, "bytes_sent": 0}
    open_count = {"idle": 0, "slow": 0}
    deficit = {"idle": n_idle, "slow": n_slow}
    samples = []
    start = time.monotonic()
    end = start + seconds
    tokens, last_tok = 0.0, start
    next_sample = start + 1.0
    next_trickle = start

    def drop(s):
        kind = socks[s][0]
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
        del socks[s]
        open_count[kind] -= 1
        deficit[kind] += 1

    while True:
        now = time.monotonic()
        if now >= end:
            break
        tokens = min(rate, tokens + (now - last_tok) * rate)
        last_tok = now
        while tokens >= 1 and (deficit["idle"] > 0 or deficit["slow"] > 0):
            # the kind further from its target first, so both are held alike
            kind = "idle" if deficit["idle"] >= deficit["slow"] else "slow"
            tokens -= 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect_ex(("127.0.0.1", port))
            except OSError:
                stats["connect_errors"] += 1
                s.close()
                continue
            socks[s] = [kind, False, now + 1.0, 0]
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
            stats["connects"] += 1
            open_count[kind] += 1
            deficit[kind] -= 1
        for key, ev in sel.select(timeout=0.02):
            s = key.fileobj
            st = socks.get(s)
            if st is None:
                continue
            if ev & selectors.EVENT_READ:
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    data = b""
                if data is not None:
                    # EOF, a reset, or an answer (a 408): the server is done with this one
                    stats["closed_by_server"] += 1
                    if st[1] is False and data == b"":
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            stats["connect_errors"] += 1
                            stats["closed_by_server"] -= 1
                    drop(s)
                    continue
            if ev & selectors.EVENT_WRITE and not st[1]:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    stats["connect_errors"] += 1
                    drop(s)
                    continue
                st[1] = True
                sel.modify(s, selectors.EVENT_READ)
                if st[0] == "slow":
                    try:
                        s.send(HEAD[:1])
                        st[3] = 1
                        stats["bytes_sent"] += 1
                    except OSError:
                        pass
        # one more byte a second on every slow connection (after the head, an endless header)
        now = time.monotonic()
        if now >= next_sample:
            next_sample += 1.0
            if now - start >= settle:
                samples.append((open_count["idle"], open_count["slow"]))
        if now < next_trickle:
            continue
        next_trickle = now + 0.1
        for s, st in list(socks.items()):
            if st[0] == "slow" and st[1] and now >= st[2]:
                st[2] = now + 1.0
                b = HEAD[st[3]:st[3] + 1] if st[3] < len(HEAD) else b"a"
                try:
                    s.send(b)
                    st[3] += 1
                    stats["bytes_sent"] += 1
                except OSError:
                    pass
    for s in list(socks):
        s.close()
    n = max(1, len(samples))
    out = dict(stats)
    out.update({
        "seconds": seconds, "nofile": nofile, "rate_limit": rate,
        "idle_open_mean": round(sum(a for a, _ in samples) / n),
        "slow_open_mean": round(sum(b for _, b in samples) / n),
        "idle_open_min": min((a for a, _ in samples), default=0),
        "slow_open_min": min((b for _, b in samples), default=0),
        "reconnects_per_s": round((stats["connects"] - n_idle - n_slow) / seconds, 1),
    })
    return out


# ---- probe --------------------------------------------------------------------------------

def probe(port, seconds, interval, timeout, path):
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path).encode()
    lat, ok, errors = [], 0, {}
    end = time.monotonic() + seconds
    nxt = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now < nxt:
            time.sleep(nxt - now)
        nxt += interval
        t0 = time.monotonic()
        why = None
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            s.settimeout(max(0.001, timeout - (time.monotonic() - t0)))
            s.sendall(req)
            buf = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
            s.close()
            if buf.startswith(b"HTTP/1.1 200"):
                ok += 1
            else:
                why = "status " + (buf[9:12].decode("latin1") if buf else "none (closed)")
        except socket.timeout:
            why = "timeout"
        except OSError as e:
            why = type(e).__name__
        lat.append((time.monotonic() - t0) * 1000)
        if why:
            errors[why] = errors.get(why, 0) + 1
    lat.sort()
    n = len(lat)
    return {"count": n, "ok": ok, "success_pct": round(100.0 * ok / n, 2) if n else 0,
            "p50_ms": round(pct(lat, 50), 2) if n else None,
            "p99_ms": round(pct(lat, 99), 2) if n else None,
            "max_ms": round(lat[-1], 2) if n else None, "errors": errors}


# ---- StatsD -------------------------------------------------------------------------------

def setbomb(port, seconds, values):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = ("127.0.0.1", port)
    lines = packets = 0
    name, v = 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(200):
            parts, size = [], 0
            while size < 1300:
                ln = "soak_setbomb_%d:%d|s" % (name, v)
                parts.append(ln)
                size += len(ln) + 1
                v += 1
                if v == values:
                    v = 0
                    name += 1
            try:
                s.sendto("\n".join(parts).encode(), addr)
                packets += 1
                lines += len(parts)
            except OSError:
                pass
    return {"lines": lines, "packets": packets, "sets": name + (1 if v else 0),
            "values_per_set": values, "seconds": seconds}


def nameflood(port, names):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = ("127.0.0.1", port)
    sent = i = 0
    while i < names:
        parts, size = [], 0
        while size < 1300 and i < names:
            ln = "soak_flood_%d:1|c" % i
            parts.append(ln)
            size += len(ln) + 1
            i += 1
        s.sendto("\n".join(parts).encode(), addr)
        sent += len(parts)
        if sent % 20000 < len(parts):
            time.sleep(0.05)  # let the agent drain its socket buffer
    return {"lines": sent, "names": names}


def selfseries(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode("utf-8", "replace")
    except OSError as e:
        return {"error": str(e)}
    fams, series, total, lines = set(), 0, 0, None
    for line in text.split("\n"):
        if line and not line.startswith("#"):
            total += 1
        if line.startswith("beagle_statsd_lines_total"):
            lines = float(line.rsplit(" ", 1)[1])
        if line.startswith("beagle_"):
            series += 1
            name = line.split("{")[0].split(" ")[0]
            for suf in ("_bucket", "_count", "_sum"):
                if name.endswith(suf):
                    name = name[: -len(suf)]
            fams.add(name)
    return {"families": sorted(fams), "nfamilies": len(fams), "series": series,
            "all_series": total, "statsd_lines": lines}


def sink(port, path):
    import http.server

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            try:
                key = json.loads(body).get("dedup_key") or "-"
            except ValueError:
                key = "-"
            with open(path, "a") as f:
                f.write("%s\n" % key)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()


def committed(path):
    import sqlite3
    try:
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
        rows = db.execute("SELECT state, count(*) FROM notifications GROUP BY state").fetchall()
        keys = db.execute("SELECT count(DISTINCT dedup_key) FROM notifications").fetchone()[0]
        db.close()
    except Exception as e:  # a missing, locked or corrupt store is what we report
        return {"error": str(e)}
    out = {k: v for k, v in rows}
    out["total"] = sum(v for _, v in rows)
    out["dedup_keys"] = keys
    return out


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "selfseries":
        out = selfseries(args[0])
    elif cmd == "sink":
        return sink(int(args[0]), args[1])
    elif cmd == "committed":
        out = committed(args[0])
    else:
        port = int(args[0])
        if cmd == "slowloris":
            out = slowloris(port, arg(args, "--idle", 2000, int), arg(args, "--slow", 2000, int),
                            arg(args, "--seconds", 30), arg(args, "--rate", 1000),
                            arg(args, "--settle", 0))
        elif cmd == "probe":
            out = probe(port, arg(args, "--seconds", 30), arg(args, "--interval", 0.05),
                        arg(args, "--timeout", 1.0), arg(args, "--path", "/health", str))
        elif cmd == "setbomb":
            out = setbomb(port, arg(args, "--seconds", 10), arg(args, "--values", 1000, int))
        elif cmd == "nameflood":
            out = nameflood(port, arg(args, "--names", 150000, int))
        else:
            sys.stderr.write("unknown command %s\n" % cmd)
            return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
