#!/usr/bin/env python3
"""A small SMTP sink for the tests: enough ESMTP for libcurl, standard library only.

    python3 tests/smtp_sink.py OUT.jsonl [MECHANISMS]

Listens on 127.0.0.1, port 0, and prints the port as the first line of stdout. Every accepted
message is appended to OUT.jsonl as one JSON line, written before the 250 reply to DATA:

    {"from": ..., "to": [...], "auth_user": ..., "auth_password": ..., "data": ...}

"data" is the message as sent, dot-unstuffed, without the terminating "." line. MECHANISMS
(default "PLAIN LOGIN") is what EHLO advertises for AUTH. Test hooks: a recipient containing
"reject" is refused (550), one containing "slow" is answered after 3 s, one containing
"late-eom" delays the reply to the end of its message by 3 s (the message is recorded first),
one containing "late-quit" delays the reply to QUIT by 3 s, and the password "wrong" fails
authentication (535). The sink exits when its parent process does.
"""

import base64
import binascii
import json
import os
import socketserver
import sys
import threading
import time

MAX_LINE = 65536


class SMTPHandler(socketserver.StreamRequestHandler):
    def reply(self, *lines):
        """One reply; several lines make a multi-line reply with the code of the first."""
        code = lines[0][:3]
        out = []
        for i, line in enumerate(lines):
            text = line[4:] if line[:3] == code else line
            sep = " " if i == len(lines) - 1 else "-"
            out.append(f"{code}{sep}{text}\r\n")
        self.wfile.write("".join(out).encode())
        self.wfile.flush()

    def readline(self):
        line = self.rfile.readline(MAX_LINE)
        if not line:
            raise EOFError
        return line

    def reset(self):
        self.mail_from = None
        self.rcpts = []

    def handle(self):
        self.user = None
        self.password = None
        self.late_quit = False
        self.reset()
        self.reply("220 beagle-sink ESMTP")
        try:
            while True:
                line = self.readline().decode("utf-8", "replace").rstrip("\r\n")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                handler = getattr(self, "do_" + verb, None)
                if handler is None:
                    self.reply("502 5.5.2 command not implemented")
                elif handler(arg.strip()) == "quit":
                    return
        except (EOFError, ConnectionError):
            return

    def do_EHLO(self, arg):
        self.reset()
        self.reply(
            "250 beagle-sink greets " + (arg or "you"),
            "250 AUTH " + self.server.mechanisms,
            "250 8BITMIME",
        )

    def do_HELO(self, arg):
        self.reset()
        self.reply("250 beagle-sink")

    def check_credentials(self, user, password):
        if password == "wrong":
            self.reply("535 5.7.8 authentication credentials invalid")
            return
        self.user, self.password = user, password
        self.reply("235 2.7.0 authentication successful")

    def challenge(self, prompt):
        """Sends a 334 challenge and returns the decoded answer, or None ("*" or bad base64)."""
        self.reply("334 " + base64.b64encode(prompt.encode()).decode())
        answer = self.readline().strip()
        if answer == b"*":
            self.reply("501 5.7.0 authentication cancelled")
            return None
        try:
            return base64.b64decode(answer, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            self.reply("501 5.5.2 cannot decode response")
            return None

    def do_AUTH(self, arg):
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        if mech not in self.server.mechanisms.split():
            self.reply("504 5.5.4 unrecognized authentication type")
            return
        try:
            if initial in ("", "="):
                initial = None if initial == "" else ""
            else:
                initial = base64.b64decode(initial, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            self.reply("501 5.5.2 cannot decode response")
            return
        if mech == "PLAIN":
            text = initial if initial is not None else self.challenge("")
            if text is None:
                return
            parts = text.split("\0")
            if len(parts) != 3:
                self.reply("501 5.5.2 malformed PLAIN response")
                return
            self.check_credentials(parts[1], parts[2])
        else:  # LOGIN
            user = initial if initial is not None else self.challenge("Username:")
            if user is None:
                return
            password = self.challenge("Password:")
            if password is None:
                return
            self.check_credentials(user, password)

    @staticmethod
    def address(arg, keyword):
        """The address in 'FROM:<a@b> PARAMS' (keyword 'FROM'), or None when malformed."""
        if arg[: len(keyword) + 1].upper() != keyword + ":":
            return None
        rest = arg[len(keyword) + 1 :].strip()
        if rest.startswith("<"):
            end = rest.find(">")
            return rest[1:end] if end >= 0 else None
        return rest.split(" ")[0]

    def do_MAIL(self, arg):
        addr = self.address(arg, "FROM")
        if addr is None:
            self.reply("501 5.5.4 syntax: MAIL FROM:<address>")
            return
        self.reset()
        self.mail_from = addr
        self.reply("250 2.1.0 ok")

    def do_RCPT(self, arg):
        addr = self.address(arg, "TO")
        if self.mail_from is None:
            self.reply("503 5.5.1 need MAIL first")
        elif not addr:
            self.reply("501 5.5.4 syntax: RCPT TO:<address>")
        elif "reject" in addr:
            self.reply("550 5.1.1 no such user here")
        else:
            if "slow" in addr:
                time.sleep(3)
            if "late-quit" in addr:
                self.late_quit = True
            self.rcpts.append(addr)
            self.reply("250 2.1.5 ok")

    def do_DATA(self, arg):
        if self.mail_from is None or not self.rcpts:
            self.reply("503 5.5.1 need RCPT first")
            return
        self.reply("354 end data with <CR><LF>.<CR><LF>")
        lines = []
        while True:
            line = self.readline()
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)
        record = {
            "from": self.mail_from,
            "to": self.rcpts,
            "auth_user": self.user,
            "auth_password": self.password,
            "data": b"".join(lines).decode("utf-8", "replace"),
        }
        with self.server.lock, open(self.server.out_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
        if any("late-eom" in rcpt for rcpt in self.rcpts):
            time.sleep(3)
        self.reset()
        self.reply("250 2.0.0 ok: queued")

    def do_RSET(self, arg):
        self.reset()
        self.reply("250 2.0.0 ok")

    def do_NOOP(self, arg):
        self.reply("250 2.0.0 ok")

    def do_STARTTLS(self, arg):
        self.reply("454 4.7.0 TLS not available")

    def do_QUIT(self, arg):
        if self.late_quit:
            time.sleep(3)
        self.reply("221 2.0.0 bye")
        return "quit"


class Sink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, out_path, mechanisms):
        super().__init__(("127.0.0.1", 0), SMTPHandler)
        self.out_path = out_path
        self.mechanisms = mechanisms
        self.lock = threading.Lock()
        self.parent = os.getppid()

    def service_actions(self):
        # called between polls of serve_forever: do not outlive the test that started us
        if os.getppid() != self.parent:
            threading.Thread(target=self.shutdown, daemon=True).start()


def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    mechanisms = sys.argv[2].upper() if len(sys.argv) == 3 else "PLAIN LOGIN"
    server = Sink(sys.argv[1], mechanisms)
    print(server.server_address[1], flush=True)
    with server:
        server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
