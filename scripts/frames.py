#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The host side of the virtio-net transmit test: receive what the guest's
virtio-net devices send, and check it.

QEMU's `-netdev dgram` backend of a `virtio-net-tx` device (scripts/vmtest.sh)
sends every frame the device transmits as one datagram to a unix socket of the
host; this script binds those sockets before QEMU starts and records every
frame of the sample VMM (samples/vfio_lu_vmm): EtherType 0x88b5, then the magic
"VFIOLUTX" and a little-endian u64 sequence number.

  frames.py recv --ready FILE --stop FILE LOG=SOCKET...
      Binds each SOCKET (an AF_UNIX datagram socket; an old file there is
      removed), writes FILE --ready once all are bound, and appends one line
      per datagram to its LOG: "<host time> <seq> <source MAC>", or
      "# ignored: ..." for a datagram that is not one of the VMM's frames.
      Stops on SIGTERM or SIGINT, or once the --stop file exists, after
      reading what is still queued.
  frames.py summary LOG...
      One line per LOG and source MAC: "host: dev <i> (MAC ...): N frames
      received, seq 0..31, no gap", or the gaps, duplicates and disorder.
      Exit status 1 if a LOG has none of the VMM's frames or a gap.

No dependencies beyond python3. scripts/vm_report.py imports summarize() to
check each device's frames against the last sequence number the VMM says it
sent.
"""
import os
import re
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

ETHERTYPE = 0x88B5
MAGIC = b"VFIOLUTX"
# Ethernet header (14 bytes), magic (8), sequence number (8).
MIN_LEN = 14 + 8 + 8


def parse_frame(data):
    """(seq, source MAC) of one of the VMM's frames, or the reason it is not."""
    if len(data) < MIN_LEN:
        return None, f"{len(data)} bytes, too short"
    (ethertype,) = struct.unpack_from(">H", data, 12)
    if ethertype != ETHERTYPE:
        return None, f"EtherType {ethertype:#06x}"
    if data[14:22] != MAGIC:
        return None, f"magic {data[14:22].hex()}"
    (seq,) = struct.unpack_from("<Q", data, 22)
    return (seq, ":".join(f"{b:02x}" for b in data[6:12])), None


def recv(args):
    ready, stop, pairs = None, None, []
    it = iter(args)
    for a in it:
        if a == "--ready":
            ready = Path(next(it))
        elif a == "--stop":
            stop = Path(next(it))
        elif "=" in a:
            log, sock = a.split("=", 1)
            pairs.append((Path(log), sock))
        else:
            sys.exit(f"frames.py recv: unknown argument {a}")
    if not pairs:
        sys.exit("frames.py recv: no LOG=SOCKET")
    stopping = False

    def on_signal(_sig, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    socks = {}
    for log, path in pairs:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.setblocking(False)
        # QEMU writes the frames as fast as the guest sends them: room for
        # many queued datagrams while this process sleeps.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        socks[s] = open(log, "a", buffering=1)
    if ready:
        ready.write_text("ready\n")

    def drain(s):
        out = socks[s]
        while True:
            try:
                data = s.recv(65536)
            except BlockingIOError:
                return
            now = time.time()
            frame, why = parse_frame(data)
            if frame:
                out.write(f"{now:.6f} {frame[0]} {frame[1]}\n")
            else:
                out.write(f"# ignored: {now:.6f} {why}\n")

    while not stopping and not (stop and stop.exists()):
        try:
            readable, _, _ = select.select(list(socks), [], [], 0.2)
        except InterruptedError:
            continue
        for s in readable:
            drain(s)
    for s in socks:
        drain(s)
        socks[s].close()
        s.close()
    for _, path in pairs:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def read_log(path):
    """[(host time, seq, MAC)] of a recv log, in arrival order."""
    records = []
    for line in Path(path).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        t, seq, mac = line.split()
        records.append((float(t), int(seq), mac))
    return records


def ranges(nums):
    """'3, 5-7' for [3, 5, 6, 7]."""
    out, nums = [], sorted(nums)
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ", ".join(out)


def summarize(records, last_sent=None):
    """(ok, text) for the frames of one device, in arrival order: every
    sequence number from 0 to the last sent (the highest received if not
    given) received exactly once."""
    seqs = [r[1] for r in records]
    if not seqs:
        return False, "no frames received" + (
            f", the VMM sent seq 0..{last_sent}" if last_sent is not None else "")
    last = max(seqs) if last_sent is None else last_sent
    seen, dups = set(), {}
    for s in seqs:
        if s in seen:
            dups[s] = dups.get(s, 1) + 1
        seen.add(s)
    missing = set(range(last + 1)) - seen
    extra = sorted(s for s in seen if s > last)
    disorder = sum(1 for a, b in zip(seqs, seqs[1:]) if b < a)
    text = f"{len(seqs)} frames received, seq {min(seqs)}..{max(seqs)}"
    problems = []
    if missing:
        problems.append(f"missing {ranges(missing)}")
    if dups:
        problems.append("duplicates " + ", ".join(f"{s} (x{n})" for s, n in sorted(dups.items())))
    if extra:
        problems.append(f"beyond the last sent ({last}): {ranges(extra)}")
    if disorder:
        problems.append(f"{disorder} out of order")
    text += ", no gap" if not problems else ": " + "; ".join(problems)
    if len(records) > 1:
        pause, i = max((b[0] - a[0], i) for i, (a, b) in enumerate(zip(records, records[1:])))
        text += (f" (over {records[-1][0] - records[0][0]:.1f} s; longest pause "
                 f"{pause:.1f} s, between seq {records[i][1]} and {records[i + 1][1]})")
    return not problems, text


def log_index(path):
    """The device index in a log's name, frames-<i>.log."""
    m = re.search(r"frames-(\d+)\.log$", str(path))
    return m.group(1) if m else str(path)


def summary(paths):
    ok = True
    for path in paths:
        if not Path(path).exists():
            ok = False
            print(f"host: dev {log_index(path)}: no frame log {path}")
            continue
        records = read_log(path)
        ignored = sum(1 for l in Path(path).read_text().splitlines() if l.startswith("# ignored"))
        macs = sorted({r[2] for r in records})
        if not macs:
            ok = False
            print(f"host: dev {log_index(path)}: no frames received"
                  + (f" ({ignored} other datagram(s) ignored)" if ignored else ""))
        for mac in macs:
            good, text = summarize([r for r in records if r[2] == mac])
            ok &= good
            print(f"host: dev {log_index(path)} (MAC {mac}): {text}"
                  + (f"; {ignored} other datagram(s) ignored" if ignored else ""))
    return 0 if ok else 1


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("recv", "summary"):
        sys.exit(__doc__)
    if sys.argv[1] == "recv":
        recv(sys.argv[2:])
        return 0
    return summary(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
