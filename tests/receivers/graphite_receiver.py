#!/usr/bin/env python3
"""A Graphite plaintext (carbon line receiver) endpoint for the graphite backend's tests, with a
parser of its own written from Graphite's documentation ("Feeding In Your Data": the plaintext
protocol; "Graphite Tag Support": tagged series), not from beagle's encoder.

    python3 tests/receivers/graphite_receiver.py OUT.jsonl [PORT]   # prints its port first

Listens on 127.0.0.1 (PORT, or one the kernel picks) for TCP connections; each line a client
sends, `<path> <value> <timestamp>`, is parsed and appended to OUT.jsonl as one JSON object:

    {"conn": n, "line": i, "raw": line, "path": "a.b;t=v", "name": "a.b", "nodes": ["a", "b"],
     "tags": {"t": "v"} or null, "value": 1.5, "timestamp": 1764300000, "error": null}

"error" says what is wrong with a line carbon would not store as sent: not three fields split
on whitespace, a value that is not a finite number, a timestamp that is not a whole number, an
empty path node, or a tag that breaks Graphite 1.1's rules (a name empty or holding ; ! ^ =,
a value empty, holding ; or starting with ~). "conn" numbers the connections in the order they
were accepted (a receiver started on an OUT.jsonl that has lines goes on from their last
number), "line" the lines in each. A
connection's lines are written when it closes, so connections that overlap may be written out
of order: sort by conn and line. Python 3 standard library only.
"""
import json
import math
import signal
import socket
import sys
import threading

LOCK = threading.Lock()
COUNTER = [0]


def parse(line):
    rec = {"raw": line, "path": None, "name": None, "nodes": None, "tags": None, "value": None,
           "timestamp": None, "error": None}
    parts = line.split()
    if len(parts) != 3:
        rec["error"] = "expected 3 fields, got %d" % len(parts)
        return rec
    path, value, ts = parts
    rec["path"] = path
    try:
        v = float(value)
    except ValueError:
        v = None
    if v is None or not math.isfinite(v):
        rec["error"] = "value %r is not a finite number" % value
    rec["value"] = v if v is not None and math.isfinite(v) else value
    if not ts.isdigit():
        rec["error"] = rec["error"] or "timestamp %r is not a whole number of seconds" % ts
    else:
        rec["timestamp"] = int(ts)
    segments = path.split(";")
    name = segments[0]
    rec["name"] = name
    rec["nodes"] = name.split(".")
    if name == "" or any(n == "" for n in rec["nodes"]):
        rec["error"] = rec["error"] or "empty path node in %r" % name
    if len(segments) > 1:
        tags = {}
        for seg in segments[1:]:
            key, eq, val = seg.partition("=")
            if not eq or key == "" or val == "":
                rec["error"] = rec["error"] or "tag %r is not name=value" % seg
            elif any(c in key for c in ";!^="):
                rec["error"] = rec["error"] or "tag name %r holds one of ;!^=" % key
            elif val.startswith("~"):
                rec["error"] = rec["error"] or "tag value %r starts with ~" % val
            tags[key] = val
        rec["tags"] = tags
    return rec


def serve(conn, n, out):
    data = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        conn.close()
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    recs = []
    for i, line in enumerate(lines):
        if line == "" and i == len(lines) - 1:
            continue  # after the last newline
        rec = parse(line)
        if i == len(lines) - 1:
            rec["error"] = rec["error"] or "the last line has no newline"
        rec["conn"], rec["line"] = n, i + 1
        recs.append(rec)
    with LOCK:
        with open(out, "a") as f:
            for rec in recs:
                f.write(json.dumps(rec) + "\n")


def main():
    out = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    try:
        with open(out) as f:
            COUNTER[0] = max([json.loads(line)["conn"] for line in f if line.strip()] or [0])
    except FileNotFoundError:
        pass
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print(s.getsockname()[1], flush=True)
    while True:
        conn, _ = s.accept()
        COUNTER[0] += 1
        threading.Thread(target=serve, args=(conn, COUNTER[0], out), daemon=True).start()


if __name__ == "__main__":
    main()
