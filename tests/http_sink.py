#!/usr/bin/env python3
"""An HTTP receiver for channel tests: it records every request and answers as told.

    python3 tests/http_sink.py requests.jsonl     # prints its port as the first line

Listens on 127.0.0.1, on a port the kernel picks. Every request to any other path than the
control ones below is recorded: {"method", "path", "headers" (lower-case names), "body" (text;
"body_base64" instead when it is not UTF-8), "time" (epoch seconds of its arrival), "status"
(what it was answered, null when the connection was dropped), "answered" (epoch seconds when
the answer was sent or the connection dropped), "error" (only when the client had gone by
then)}. A request is recorded once answered, in memory and as one JSON line appended to the
file, so /_requests and the file hold the same complete entries. It is answered according to
the control state as it was when the request arrived:

    POST /_control  {"status": 200, "delay": 0.0, "retry_after": null, "down": false, "body": "ok"}
        status: the HTTP status to answer; delay: seconds to wait before answering;
        retry_after: the Retry-After header to send (a string such as "7" or an HTTP date), or
        null for none; down: when true, close the connection without answering; body: the
        response body. Keys left out keep their value; the answer is the whole state.
    GET  /_control   the state.
    GET  /_requests  the requests recorded since the start or the last reset, a JSON array.
    POST /_reset     forgets them (the file is a log and keeps them), and resets the state.

Control requests are not recorded. HTTP/1.1 with keep-alive; one thread per connection, so
a delayed answer does not hold the others. Python 3 standard library only.
"""
import base64
import json
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULTS = {"status": 200, "delay": 0.0, "retry_after": None, "down": False, "body": "ok"}


class Sink:
    """The control state and the recorded requests, shared by the handler threads."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.state = dict(DEFAULTS)
        self.requests = []

    def control(self, update):
        """Applies a partial state; returns the new state or raises ValueError."""
        with self.lock:
            new = dict(self.state)
            for key, value in update.items():
                if key not in DEFAULTS:
                    raise ValueError("unknown control key %r (known: %s)" % (key, ", ".join(DEFAULTS)))
                new[key] = value
            if not isinstance(new["status"], int) or not 100 <= new["status"] <= 599:
                raise ValueError("status must be an integer from 100 to 599")
            if not isinstance(new["delay"], (int, float)) or new["delay"] < 0:
                raise ValueError("delay must be a number of seconds >= 0")
            if new["retry_after"] is not None:
                new["retry_after"] = str(new["retry_after"])
            if not isinstance(new["down"], bool):
                raise ValueError("down must be true or false")
            if not isinstance(new["body"], str):
                raise ValueError("body must be a string")
            self.state = new
            return dict(new)

    def snapshot(self):
        with self.lock:
            return dict(self.state)

    def record(self, entry):
        entry["answered"] = time.time()
        with self.lock:
            self.requests.append(entry)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, sort_keys=True) + "\n")

    def recorded(self):
        with self.lock:
            return list(self.requests)

    def reset(self):
        with self.lock:
            self.requests = []
            self.state = dict(DEFAULTS)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length
    server_version = "http_sink/1"
    sink = None  # set in main()

    def log_message(self, fmt, *args):  # quiet: the JSON lines are the log
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def answer(self, status, body, headers=None):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def answer_json(self, status, value):
        self.answer(status, json.dumps(value), {"Content-Type": "application/json"})

    def control(self, body):
        path = self.path.split("?", 1)[0]
        if path == "/_control" and self.command == "POST":
            try:
                update = json.loads(body or b"{}")
                if not isinstance(update, dict):
                    raise ValueError("expected a JSON object")
                self.answer_json(200, self.sink.control(update))
            except ValueError as e:
                self.answer_json(400, {"error": str(e)})
        elif path == "/_control" and self.command == "GET":
            self.answer_json(200, self.sink.snapshot())
        elif path == "/_requests" and self.command == "GET":
            self.answer_json(200, self.sink.recorded())
        elif path == "/_reset" and self.command == "POST":
            self.sink.reset()
            self.answer_json(200, {"reset": True})
        else:
            self.answer_json(405, {"error": "%s %s: use POST /_control, GET /_requests, POST /_reset"
                                   % (self.command, path)})

    def handle_any(self):
        arrived = time.time()
        body = self.read_body()
        if self.path.split("?", 1)[0] in ("/_control", "/_requests", "/_reset"):
            self.control(body)
            return
        state = self.sink.snapshot()
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": {},
            "time": arrived,
            "status": None if state["down"] else state["status"],
        }
        for name, value in self.headers.items():
            name = name.lower()
            entry["headers"][name] = entry["headers"][name] + ", " + value if name in entry["headers"] else value
        try:
            entry["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            entry["body_base64"] = base64.b64encode(body).decode("ascii")
        try:
            if state["delay"] > 0:
                time.sleep(state["delay"])
            if state["down"]:
                # no status line at all: the client sees the connection closed under it
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            if state["retry_after"] is not None:
                headers["Retry-After"] = state["retry_after"]
            try:
                self.answer(state["status"], state["body"], headers)
            except OSError as e:  # the client left while we waited (its own timeout)
                entry["error"] = "the client closed the connection: %s" % e
                self.close_connection = True
        finally:
            self.sink.record(entry)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: http_sink.py REQUESTS.jsonl\n")
        return 2
    Handler.sink = Sink(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
