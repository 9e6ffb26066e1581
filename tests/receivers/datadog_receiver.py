#!/usr/bin/env python3
"""A Datadog v2 series intake for the datadog backend's integration test
(tests/integration/backend_datadog_spec.lua), checking each request against the API as
Datadog documents it ("Submit metrics", POST /api/v2/series), with a validator of its own:

  - the DD-API-KEY header must be the key given on the command line (else 403, as Datadog);
  - Content-Type application/json; Content-Encoding gzip or deflate is undone first;
  - the body is {"series": [...]} and nothing else; each series has a non-empty "metric"
    string, "points" a non-empty list of {"timestamp": integer seconds, "value": finite
    number}, and optionally "type" (an integer 0-3: unspecified, count, rate, gauge),
    "interval" (a positive integer, required for rates), "tags" (strings), "resources"
    ({"name", "type"} strings), "unit", "source_type_name" (strings); any other key is an error;
  - a timestamp more than 10 minutes ahead or an hour behind is refused (Datadog drops them).

usage: datadog_receiver.py OUT API_KEY. Listens on 127.0.0.1 (a free port, printed on the first
line). Each request is answered 202 {"errors": []}, or as POST /_control {"status", "retry_after"}
says, and appended to OUT as one JSON line: {"status", "encoding", "key_ok", "error" (why the
body is not a valid request, or null), "series" (the decoded list, or null)}."""
import gzip
import json
import math
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEYS = {"metric", "type", "points", "interval", "tags", "resources", "unit", "source_type_name"}
lock = threading.Lock()
state = {"status": 202, "retry_after": None}


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def validate(doc):
    if not isinstance(doc, dict) or set(doc) != {"series"} or not isinstance(doc["series"], list):
        return 'the body must be {"series": [...]}'
    now = time.time()
    for i, s in enumerate(doc["series"]):
        where = "series[%d]" % i
        if not isinstance(s, dict):
            return where + " is not an object"
        extra = set(s) - KEYS
        if extra:
            return "%s: unknown keys %s" % (where, sorted(extra))
        if not isinstance(s.get("metric"), str) or s["metric"] == "":
            return where + ": metric must be a non-empty string"
        t = s.get("type", 0)
        if not is_int(t) or not 0 <= t <= 3:
            return where + ": type must be 0, 1, 2 or 3"
        if "interval" in s and (not is_int(s["interval"]) or s["interval"] <= 0):
            return where + ": interval must be a positive integer"
        if t == 2 and "interval" not in s:
            return where + ": a rate needs an interval"
        pts = s.get("points")
        if not isinstance(pts, list) or not pts:
            return where + ": points must be a non-empty list"
        for p in pts:
            if not isinstance(p, dict) or set(p) != {"timestamp", "value"}:
                return where + ": a point is {timestamp, value}"
            if not is_int(p["timestamp"]):
                return where + ": timestamp must be an integer"
            if p["timestamp"] > now + 600 or p["timestamp"] < now - 3600:
                return where + ": timestamp out of range"
            v = p["value"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return where + ": value must be a finite number"
        tags = s.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
            return where + ": tags must be strings"
        for r in s.get("resources", []):
            if not isinstance(r, dict) or set(r) != {"name", "type"} or not all(
                    isinstance(r[k], str) for k in r):
                return where + ": a resource is {name, type}"
        for k in ("unit", "source_type_name"):
            if k in s and not isinstance(s[k], str):
                return where + ": " + k + " must be a string"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/_control":
            with lock:
                state.update(json.loads(raw))
                self.answer(200, state)
            return
        rec = {"path": self.path, "encoding": self.headers.get("Content-Encoding"),
               "content_type": self.headers.get("Content-Type"),
               "key_ok": self.headers.get("DD-API-KEY") == API_KEY, "error": None, "series": None}
        try:
            if rec["encoding"] == "gzip":
                raw = gzip.decompress(raw)
            elif rec["encoding"] == "deflate":
                raw = zlib.decompress(raw)
            doc = json.loads(raw.decode("utf-8"))
            rec["error"] = validate(doc)
            rec["series"] = doc.get("series") if isinstance(doc, dict) else None
        except Exception as e:  # noqa: BLE001 - any failure to read is the finding
            rec["error"] = "unreadable body: %s" % e
        if self.path != "/api/v2/series":
            rec["error"] = rec["error"] or "wrong path"
        if rec["content_type"] != "application/json":
            rec["error"] = rec["error"] or "Content-Type is not application/json"
        with lock:
            status, retry = state["status"], state["retry_after"]
        headers = []
        if not rec["key_ok"]:
            status = 403
        elif rec["error"] and status < 300:
            status = 400
        elif retry is not None and status >= 400:
            headers.append(("Retry-After", str(retry)))
        rec["status"] = status
        with lock:
            with open(OUT, "a") as f:
                f.write(json.dumps(rec) + "\n")
        self.answer(status, {"errors": [] if status < 300 else [rec["error"] or "refused"]}, headers)


if __name__ == "__main__":
    OUT, API_KEY = sys.argv[1], sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
