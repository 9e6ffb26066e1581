#!/usr/bin/env python3
"""A StatsD / DogStatsD receiver for the statsd backend's integration test
(tests/integration/backend_statsd_spec.lua), with a parser of its own written from the
protocols' documentation (Etsy's statsd docs/metric_types.md, Datadog's "DogStatsD datagram
format"), not from beagle's encoder:

    <name>:<value>|<type>[|@<sample rate>][|#<tag>,<tag>...][|T<unix seconds>][|c:<container>]

usage: statsd_receiver.py OUT [PORT]. Listens on 127.0.0.1 UDP (PORT, else a free one), prints
the port on its first line, and appends one JSON object per line received to OUT:
{ "datagram": n, "size": bytes of its datagram, "raw": the line, "name", "value" (a float, or
the string for a set), "sign" (true when a gauge's value had a leading + or -), "type", "rate",
"tags": [..] or null, "error": why the line is not valid StatsD, or null }."""
import json
import math
import re
import socket
import sys

TYPES = {"c", "g", "ms", "h", "s", "d"}
NAME_BAD = re.compile(r"[:|@#\n\r]")
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse(line, dog):
    out = {"raw": line, "name": None, "value": None, "sign": False, "type": None, "rate": None,
           "tags": None, "error": None}
    if ":" not in line:
        out["error"] = "no ':' between name and value"
        return out
    name, rest = line.split(":", 1)
    out["name"] = name
    if name == "" or NAME_BAD.search(name):
        out["error"] = "bad name %r" % name
        return out
    fields = rest.split("|")
    if len(fields) < 2:
        out["error"] = "no type"
        return out
    value, typ = fields[0], fields[1]
    out["type"] = typ
    if typ not in TYPES:
        out["error"] = "unknown type %r" % typ
        return out
    if typ != "s":
        if not NUMBER.match(value):
            out["error"] = "not a number: %r" % value
            return out
        v = float(value)
        if not math.isfinite(v):
            out["error"] = "not finite"
            return out
        out["value"] = v
        out["sign"] = value[0] in "+-"
    else:
        out["value"] = value
    for f in fields[2:]:
        if f.startswith("@"):
            try:
                out["rate"] = float(f[1:])
            except ValueError:
                out["error"] = "bad sample rate %r" % f
        elif f.startswith("#"):
            if not dog:
                out["error"] = "tags in plain StatsD"
            tags = f[1:].split(",")
            for t in tags:
                if t == "" or t.startswith(":"):
                    out["error"] = "empty tag or tag name in %r" % f
            out["tags"] = tags
        elif f.startswith("T") or f.startswith("c:"):
            pass
        else:
            out["error"] = "unknown field %r" % f
    return out


def main():
    path = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    print(sock.getsockname()[1], flush=True)
    n = 0
    with open(path, "a") as f:
        while True:
            data, _ = sock.recvfrom(65535)
            n += 1
            text = data.decode("utf-8", errors="replace")
            lines = text.split("\n")
            if len(lines) > 1 and lines[-1] == "":
                lines.pop()  # a trailing newline is allowed; an empty line inside is an error
            for line in lines:
                rec = parse(line, True) if line else {"raw": line, "error": "empty line"}
                rec["datagram"] = n
                rec["size"] = len(data)
                f.write(json.dumps(rec) + "\n")
            f.flush()


if __name__ == "__main__":
    main()
