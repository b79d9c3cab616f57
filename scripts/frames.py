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

The receive side (`virtio-net-rx` devices, the sample VMM's --rx): the host
feeds each device's receive queue with numbered frames, and the VMM tells it
where it is with marker frames on the device's transmit queue.

  frames.py feed --ready FILE --stop FILE [--interval S] LOG=HOSTSOCK=QEMUSOCK...
      Binds each HOSTSOCK (where QEMU's dgram backend sends what the device
      transmits) and, once the device's READY marker arrives, sends it a
      frame every S seconds (default 0.02) to QEMUSOCK (QEMU's own socket,
      whose datagrams the device receives), until stopped: EtherType
      0x88b5, the magic "VFIOLURX", a little-endian u64
      sequence number (from 0, one per attempt) and the host send time (u64,
      microseconds of time.time()). LOG gets one line per event, host time
      (time.time(), seconds) first:
        "<t> sent <seq>"                a frame handed to the socket
        "<t> refused <seq> <errno>"     the socket would not take it (full:
                                        QEMU is not reading), the frame is
                                        dropped
        "<t> marker <kind> <info> <MAC>"  a marker frame of the device: kind
                                        0 READY, 1 LEAVE (stage 1's last
                                        action before the kexec), 2 BACK
                                        (stage 2: the device is the VMM's
                                        again)
        "<t> tx <seq> <MAC>"            one of the VMM's numbered frames
  frames.py feedsummary LOG...
      One line per LOG: frames sent and refused, the markers' host times.

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
RX_MAGIC = b"VFIOLURX"
MARKER_MAGIC = b"VFIOLUMK"
MARKERS = {0: "READY", 1: "LEAVE", 2: "BACK"}
# The source MAC of the host's frames (locally administered).
FEED_MAC = bytes.fromhex("0200000000fe")
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


def bind_dgram(path):
    """A non-blocking AF_UNIX datagram socket bound at path (an old file
    there removed), with room for many queued datagrams: QEMU writes frames
    as fast as the guest sends them while this process sleeps."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return s


def pending(s):
    """The datagrams queued on the non-blocking socket s, each as (arrival
    time, data)."""
    while True:
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        yield time.time(), data


def stop_on_signals():
    """A list that SIGTERM or SIGINT makes non-empty (true): the loops of recv
    and feed end on it."""
    signalled = []

    def on_signal(sig, _frame):
        signalled.append(sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return signalled


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
    signalled = stop_on_signals()
    socks = {}
    for log, path in pairs:
        socks[bind_dgram(path)] = open(log, "a", buffering=1)
    if ready:
        ready.write_text("ready\n")

    def drain(s):
        out = socks[s]
        for now, data in pending(s):
            frame, why = parse_frame(data)
            if frame:
                out.write(f"{now:.6f} {frame[0]} {frame[1]}\n")
            else:
                out.write(f"# ignored: {now:.6f} {why}\n")

    while not signalled and not (stop and stop.exists()):
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


def parse_marker(data):
    """(kind, info, source MAC) of one of the VMM's marker frames, or None."""
    if len(data) < 38 or struct.unpack_from(">H", data, 12)[0] != ETHERTYPE:
        return None
    if data[14:22] != MARKER_MAGIC:
        return None
    kind, info = struct.unpack_from("<QQ", data, 22)
    return kind, info, ":".join(f"{b:02x}" for b in data[6:12])


def feed_frame(seq, sent_us):
    """The host's numbered frame: broadcast, EtherType, magic, seq, send time."""
    frame = b"\xff" * 6 + FEED_MAC + struct.pack(">H", ETHERTYPE) + RX_MAGIC
    frame += struct.pack("<QQ", seq, sent_us)
    return frame.ljust(60, b"\0")


def feed(args):
    ready, stop, interval, devs = None, None, 0.02, []
    it = iter(args)
    for a in it:
        if a == "--ready":
            ready = Path(next(it))
        elif a == "--stop":
            stop = Path(next(it))
        elif a == "--interval":
            interval = float(next(it))
        elif a.count("=") == 2:
            log, host, qemu = a.split("=")
            devs.append((Path(log), host, qemu))
        else:
            sys.exit(f"frames.py feed: unknown argument {a}")
    if not devs:
        sys.exit("frames.py feed: no LOG=HOSTSOCK=QEMUSOCK")
    signalled = stop_on_signals()
    # Per socket: [log file, QEMU's socket, next seq, next send time or None].
    state = {}
    for log, host, qemu in devs:
        state[bind_dgram(host)] = [open(log, "a", buffering=1), qemu, 0, None]

    def drain(s):
        st = state[s]
        for now, data in pending(s):
            marker = parse_marker(data)
            frame, why = parse_frame(data)
            if marker:
                kind, info, mac = marker
                st[0].write(f"{now:.6f} marker {kind} {info} {mac}\n")
                if kind == 0 and st[3] is None:
                    st[3] = now
            elif frame:
                st[0].write(f"{now:.6f} tx {frame[0]} {frame[1]}\n")
            else:
                st[0].write(f"# ignored: {now:.6f} {why}\n")

    def send_due():
        now = time.time()
        for s, st in state.items():
            if st[3] is None or st[3] > now:
                continue
            t = time.time()
            try:
                s.sendto(feed_frame(st[2], int(t * 1e6)), st[1])
                st[0].write(f"{t:.6f} sent {st[2]}\n")
            except OSError as e:
                st[0].write(f"{t:.6f} refused {st[2]} {e.errno}\n")
            st[2] += 1
            # A fixed rate; a late wake-up does not send a burst.
            st[3] = max(st[3] + interval, time.time())

    if ready:
        ready.write_text("ready\n")
    while not signalled and not (stop and stop.exists()):
        due = [st[3] for st in state.values() if st[3] is not None]
        timeout = min([0.2] + [max(0.0, d - time.time()) for d in due])
        try:
            readable, _, _ = select.select(list(state), [], [], timeout)
        except InterruptedError:
            continue
        for s in readable:
            drain(s)
        send_due()
    for s, st in state.items():
        drain(s)
        st[0].close()
        s.close()
    for _, host, _ in devs:
        try:
            os.unlink(host)
        except FileNotFoundError:
            pass


def read_feed_log(path):
    """The events of a feed log: {"sent": {seq: t}, "refused": {seq: t},
    "markers": [(t, kind, info, MAC)], "tx": [(t, seq, MAC)]}."""
    out = {"sent": {}, "refused": {}, "markers": [], "tx": []}
    for line in Path(path).read_text().splitlines():
        w = line.split()
        if not w or line.startswith("#"):
            continue
        t = float(w[0])
        if w[1] == "sent":
            out["sent"][int(w[2])] = t
        elif w[1] == "refused":
            out["refused"][int(w[2])] = t
        elif w[1] == "marker":
            out["markers"].append((t, int(w[2]), int(w[3]), w[4]))
        elif w[1] == "tx":
            out["tx"].append((t, int(w[2]), w[3]))
    return out


def feed_summary(paths):
    ok = True
    for path in paths:
        dev = log_index(path)
        if not Path(path).exists():
            print(f"host: rx dev {dev}: no feed log {path}")
            ok = False
            continue
        f = read_feed_log(path)
        marks = ", ".join(f"{MARKERS.get(k, k)} at {t:.3f}" for t, k, _, _ in f["markers"])
        macs = sorted({m for _, _, _, m in f["markers"]})
        print(f"host: rx dev {dev} (MAC {', '.join(macs) or '?'}): {len(f['sent'])} frame(s) "
              f"sent, {len(f['refused'])} refused by the socket; markers: {marks or 'none'}")
        ok &= bool(f["markers"])
    return 0 if ok else 1


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
    m = re.search(r"(?:frames|feed)-(\d+)\.log$", str(path))
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
    if len(sys.argv) < 2 or sys.argv[1] not in ("recv", "summary", "feed", "feedsummary"):
        sys.exit(__doc__)
    if sys.argv[1] == "recv":
        recv(sys.argv[2:])
        return 0
    if sys.argv[1] == "feed":
        feed(sys.argv[2:])
        return 0
    if sys.argv[1] == "feedsummary":
        return feed_summary(sys.argv[2:])
    return summary(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
