#!/usr/bin/env python3
"""An InfluxDB write endpoint for the influxdb backend's tests, with a line protocol parser of
its own, written from the line protocol reference (docs.influxdata.com, "Line protocol"), not
from beagle's encoder.

    python3 tests/receivers/influx_receiver.py     # prints its port as the first line

Listens on 127.0.0.1 on a port the kernel picks and takes

    POST /api/v2/write?org=&bucket=&precision=    (InfluxDB 2.x)
    POST /write?db=&rp=&precision=                (InfluxDB 1.x)

with a body of line protocol, gzipped when Content-Encoding says gzip. Each request is parsed
whole and answered 204 when every line parses, else 400 with {"code": "invalid", "message":
"line N: why"} (and no point of it kept), as InfluxDB does. Other paths are 404.

The parser is strict where the reference is: a measurement, then `,key=value` tags (no empty
key or value; `,` `=` and space escaped with a backslash, any other backslash is literal),
one space, `key=value` fields (float `1.5`/`1e+21`, integer `1i`, unsigned `1u`, string
`"..."` with `\\"` and `\\\\`, boolean), then optionally one space and an integer timestamp.

    GET  /_requests   every write request so far, a JSON array of {method, path, query (name:
                      value), headers (lower-case names), status, error, points: [{measurement,
                      tags: {k: v}, tag_order: [k...], fields: {k: [type, value]}, timestamp}]}
                      (a float field is never NaN or infinite: line protocol has no such floats)
    POST /_control    {"status": 204, "retry_after": null}: answer writes with that status (and
                      Retry-After) without parsing them; the answer is the state
    POST /_reset      forgets the requests and resets the state

Python 3 standard library only.
"""
import gzip
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

STATE = {"status": 204, "retry_after": None}
LOCK = threading.Lock()
REQUESTS = []


class ParseError(Exception):
    pass


def read_until(line, i, stops, escapable):
    """The text of line from i up to the first unescaped character of stops (or the end),
    unescaped, and the index of that character. A backslash escapes only the characters of
    escapable; before anything else it is an ordinary character."""
    out = []
    n = len(line)
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n and line[i + 1] in escapable:
            out.append(line[i + 1])
            i += 2
            continue
        if c in stops:
            break
        out.append(c)
        i += 1
    return "".join(out), i


def parse_field_value(line, i):
    """A field value starting at i: (type, value), index after it."""
    if i < len(line) and line[i] == '"':
        out = []
        i += 1
        while True:
            if i >= len(line):
                raise ParseError("unterminated string field")
            c = line[i]
            if c == "\\" and i + 1 < len(line) and line[i + 1] in '"\\':
                out.append(line[i + 1])
                i += 2
                continue
            if c == '"':
                return ("string", "".join(out)), i + 1
            out.append(c)
            i += 1
    j = i
    while j < len(line) and line[j] not in ", ":
        j += 1
    text = line[i:j]
    if text in ("t", "T", "true", "True", "TRUE"):
        return ("boolean", True), j
    if text in ("f", "F", "false", "False", "FALSE"):
        return ("boolean", False), j
    if text.endswith("i") and text[:-1].lstrip("-").isdigit():
        return ("integer", int(text[:-1])), j
    if text.endswith("u") and text[:-1].isdigit():
        return ("unsigned", int(text[:-1])), j
    # a float: digits, an optional point and fraction, an optional exponent; no nan or inf
    body = text[1:] if text[:1] in "+-" else text
    mantissa, _, exponent = body.lower().partition("e")
    whole, _, frac = mantissa.partition(".")
    ok = (whole + frac).isdigit() and (whole == "" or whole.isdigit()) and (frac == "" or frac.isdigit())
    if "e" in body.lower():
        ok = ok and exponent.lstrip("+-").isdigit()
    if not ok:
        raise ParseError("invalid field value %r" % text)
    return ("float", float(text)), j


def parse_line(line):
    """One point: {measurement, tags, tag_order, fields, timestamp}."""
    measurement, i = read_until(line, 0, ", ", ", ")
    if measurement == "":
        raise ParseError("missing measurement")
    if measurement.startswith("#"):
        raise ParseError("a comment is not a point")
    tags, order = {}, []
    while i < len(line) and line[i] == ",":
        key, i = read_until(line, i + 1, "=", ",= ")
        if i >= len(line) or line[i] != "=":
            raise ParseError("tag %r has no value" % key)
        value, i = read_until(line, i + 1, ", =", ",= ")
        if i < len(line) and line[i] == "=":
            raise ParseError("unescaped = in the value of tag %r" % key)
        if key == "" or value == "":
            raise ParseError("empty tag key or value")
        if key in tags:
            raise ParseError("duplicate tag %r" % key)
        tags[key] = value
        order.append(key)
    if i >= len(line) or line[i] != " ":
        raise ParseError("missing fields")
    i += 1
    fields = {}
    while True:
        key, i = read_until(line, i, "=", ",= ")
        if key == "" or i >= len(line) or line[i] != "=":
            raise ParseError("invalid field %r" % key)
        value, i = parse_field_value(line, i + 1)
        if key in fields:
            raise ParseError("duplicate field %r" % key)
        fields[key] = value
        if i < len(line) and line[i] == ",":
            i += 1
            continue
        break
    timestamp = None
    if i < len(line):
        if line[i] != " ":
            raise ParseError("unexpected %r after the fields" % line[i])
        rest = line[i + 1:]
        if not rest.lstrip("-").isdigit():
            raise ParseError("invalid timestamp %r" % rest)
        timestamp = int(rest)
    return {"measurement": measurement, "tags": tags, "tag_order": order, "fields": fields,
            "timestamp": timestamp}


def parse_body(text):
    points = []
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip() == "" or line.lstrip().startswith("#"):
            continue
        try:
            points.append(parse_line(line))
        except ParseError as e:
            raise ParseError("line %d: %s" % (n, e))
    return points


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", ctype="application/json", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        if self.path == "/_requests":
            with LOCK:
                data = json.dumps(REQUESTS).encode()
            return self.answer(200, data)
        if self.path in ("/ping", "/health"):
            return self.answer(204)
        self.answer(404, b'{"message":"not found"}')

    def do_POST(self):
        global STATE
        raw = self.body()
        url = urlsplit(self.path)
        if url.path == "/_control":
            with LOCK:
                STATE.update(json.loads(raw or b"{}"))
                out = json.dumps(STATE).encode()
            return self.answer(200, out)
        if url.path == "/_reset":
            with LOCK:
                REQUESTS.clear()
                STATE = {"status": 204, "retry_after": None}
            return self.answer(200, b"{}")
        if url.path not in ("/api/v2/write", "/write"):
            return self.answer(404, b'{"code":"not found","message":"path not found"}')
        rec = {"method": "POST", "path": url.path, "query": dict(parse_qsl(url.query, keep_blank_values=True)),
               "headers": {k.lower(): v for k, v in self.headers.items()}, "points": [], "error": None}
        with LOCK:
            state = dict(STATE)
        if state["status"] != 204:
            rec["status"] = state["status"]
            with LOCK:
                REQUESTS.append(rec)
            extra = {"Retry-After": str(state["retry_after"])} if state["retry_after"] is not None else None
            return self.answer(state["status"], b'{"code":"unavailable","message":"as told"}', extra=extra)
        try:
            if rec["headers"].get("content-encoding") == "gzip":
                raw = gzip.decompress(raw)
            rec["points"] = parse_body(raw.decode("utf-8"))
            rec["status"] = 204
        except (ParseError, UnicodeDecodeError, OSError) as e:
            rec["status"], rec["error"] = 400, str(e)
            rec["body"] = raw.decode("utf-8", "replace")
        with LOCK:
            REQUESTS.append(rec)
        if rec["status"] == 204:
            return self.answer(204)
        self.answer(400, json.dumps({"code": "invalid", "message": rec["error"]}).encode())


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
