"""SMTP sink for the sync server's notice tests: a real SMTP server (aiosmtpd) on 127.0.0.1 that
keeps every message it accepts as one .eml file in a folder, and can answer as a troubled relay
does.

    smtp_sink.py --port P --out DIR [--answers 451,451] [--reject bad@example.org]

--answers: the answers to the first DATA commands, in order (451: try later; 550: refused);
  after them every message is accepted.
--reject: recipients refused at RCPT with 550.
It prints "ready" once listening and runs until killed.
"""

import argparse
import os
import sys
import time

from aiosmtpd.controller import Controller

ANSWERS = {
    "451": "451 4.3.0 Mail server temporarily busy, try again later",
    "550": "550 5.7.1 Message refused",
}


class Sink:
    def __init__(self, out, answers, reject):
        self.out = out
        self.answers = list(answers)
        self.reject = {r.lower() for r in reject}
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.answers:
            answer = self.answers.pop(0)
            if answer != "250":
                return ANSWERS.get(answer, answer)
        self.count += 1
        name = f"{self.count:06d}-{time.time_ns()}"
        tmp = os.path.join(self.out, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        # Renamed whole, so a reader never sees half a message.
        os.replace(tmp, os.path.join(self.out, f"{name}.eml"))
        return "250 OK: queued"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--answers", default="")
    parser.add_argument("--reject", action="append", default=[])
    args = parser.parse_args()
    answers = [a for a in args.answers.split(",") if a]
    controller = Controller(
        Sink(args.out, answers, args.reject), hostname="127.0.0.1", port=args.port
    )
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
