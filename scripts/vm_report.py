#!/usr/bin/env python3
"""Read the logs of one QEMU run of the two-stage test and report on it.

Inputs (in the run directory): ktap.log, the guest's second serial port, which
carries only KTAP from the test programs and "# vfio-lu:" status lines from
PID 1; console.log, the serial console of both kernels.

Every KTAP result of both stages counts, and so do the host's own checks of
the run (both stages ran, the kexec happened with KHO, no kernel splat, no
hang, every program ran its whole plan and exited 0, and, with virtio-net-tx
devices, every frame the sample VMM sent reached the host once: frames-<i>.log,
written by scripts/frames.py). A result marked SKIP or TODO counts as failed.
Exit status 0 only when all of them passed.
"""
import argparse
import json
import re
import sys
from pathlib import Path

# scripts/frames.py, without leaving a __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import frames  # noqa: E402

STATUS = re.compile(r"^# vfio-lu: \[up=([\d.]+) tsc=(\d+)\] (.*)$")
RESULT = re.compile(r"^(ok|not ok) (\d+) (.*?)(?:\s+#\s*(SKIP|TODO)\b.*)?$")
PLAN = re.compile(r"^1\.\.(\d+)$")
# The sample VMM (samples/vfio_lu_vmm, make run) speaks plain "vmm: " lines,
# not KTAP; the one before its own kexec carries the uptime and the TSC.
VMM = re.compile(r"^vmm: (.*)$")
VMM_KEXEC = re.compile(r"^kexec: calling reboot.*\(uptime ([\d.]+) s, TSC (\d+)\)$")
# What the VMM sent on a virtio-net device, in each stage.
VMM_SENT = re.compile(r"^(\S+): virtio-net: sent (\d+) frame\(s\), seq (\d+)\.\.(\d+), "
                      r"from MAC ([0-9a-f:]{17})")
# Kernel reports that fail a run whatever the tests say.
SPLATS = re.compile(
    r"(Kernel panic|BUG:|Oops|WARNING:|general protection fault|"
    r"Unable to handle kernel|Call Trace:|KASAN:|UBSAN:|"
    r"possible circular locking|inconsistent lock state|"
    r"unreferenced object|INFO: task .* blocked)")


class Run:
    def __init__(self):
        self.results = []      # (stage, program, name, status) status: pass/fail/skip
        self.events = {}       # (stage, text) -> (uptime, tsc)
        self.binds = {1: [], 2: []}
        self.resets = {1: {}, 2: {}}  # bdf -> "flr pm bus"
        self.notes = []        # '#' lines of failing programs, for context
        self.vmm = {1: [], 2: []}  # the sample VMM's "vmm: " lines, per stage


def parse_ktap(path):
    run = Run()
    # A program's results are held until PID 1's "test <path> exit=N" line
    # names the program that printed them.
    stage, prog, plan, seen, lines, pending = 0, None, None, 0, [], []
    vmm_open, vmm_kexec = False, False  # a sample VMM runs; it called reboot

    def close_program(exit_text):
        nonlocal prog, plan, seen, lines, pending, vmm_open, vmm_kexec
        name = prog or "?"
        run.results.extend((stage, name, n, st) for n, st in pending)
        ok_exit = exit_text.endswith("exit=0")
        if vmm_open and plan is None and not pending:
            # The sample VMM: no KTAP, its exit status is its result.
            ok = ok_exit or (vmm_kexec and exit_text == "kexec")
            what = "kexec'd with its LUO session open" if exit_text == "kexec" else "exited 0"
            run.results.append((stage, name, what, "pass" if ok else "fail"))
            if not ok:
                run.notes.append(f"stage {stage} {name}: {exit_text}")
                run.notes.extend(f"    {l}" for l in lines[-15:])
        elif plan is None or seen != plan or not ok_exit:
            run.results.append((stage, name, "ran its whole plan and exited 0", "fail"))
            run.notes.append(f"stage {stage} {name}: plan {plan}, {seen} result(s), {exit_text}")
            run.notes.extend(f"    {l}" for l in lines[-15:])
        prog, plan, seen, lines, pending = None, None, 0, [], []
        vmm_open, vmm_kexec = False, False

    for raw in path.read_text(errors="replace").splitlines():
        line = raw.rstrip("\r")
        m = STATUS.match(line)
        if m:
            up, tsc, text = float(m.group(1)), int(m.group(2)), m.group(3)
            sm = re.match(r"stage (\d): init", text)
            if sm:
                if vmm_open:
                    # The sample VMM of the old kernel kexec'd itself: no exit line.
                    prog = prog or "vfio_lu_vmm"
                    close_program("kexec" if vmm_kexec else "no exit line (cut off by a reboot)")
                stage = int(sm.group(1))
            run.events[(stage, text)] = (up, tsc)
            rm = re.match(r"(\S+) reset methods: (.*)", text)
            if rm:
                run.resets[stage][rm.group(1)] = rm.group(2)
            bm = re.match(r"(\S+) \((\w+:\w+)\) (?:-> |already bound to )(.*)", text)
            if bm:
                run.binds[stage].append((bm.group(1), bm.group(2), bm.group(3)))
            tm = re.match(r"test (\S+) (exit=\d+|killed by signal \d+)", text)
            if tm:
                prog = Path(tm.group(1)).name
                close_program(tm.group(2))
            continue
        m = VMM.match(line)
        if m:
            vmm_open = True
            run.vmm.setdefault(stage, []).append(m.group(1))
            lines.append(line)
            km = VMM_KEXEC.match(m.group(1))
            if km:
                vmm_kexec = True
                # The kexec starts here, not at PID 1's "done, kexec" (never printed).
                run.events[(stage, f"stage {stage}: done, kexec (reboot by the sample VMM)")] = (
                    float(km.group(1)), int(km.group(2)))
            continue
        if line.startswith("TAP version"):
            plan, seen, lines = None, 0, []
            continue
        m = PLAN.match(line)
        if m:
            plan = int(m.group(1))
            continue
        m = RESULT.match(line)
        if m:
            seen += 1
            # A result with a SKIP or TODO directive tested nothing: it counts as failed.
            status = "fail" if m.group(4) or m.group(1) != "ok" else "pass"
            pending.append((m.group(3).strip(), status))
            continue
        if line.startswith("#"):
            lines.append(line)
    if pending or plan is not None or vmm_open:
        # The log ended inside a program: the guest died or hung under it.
        close_program("no exit line (the guest died or hung while it ran)")
    return run


def freeze_check(run, console):
    """The kexec's freeze reset every device in the mode the module was asked for, but
    those whose VMM chose to keep them (per device, reset=none)."""
    old = console.split("Linux version ")
    old = old[1] if len(old) > 1 else ""
    want = "serial" if "vfio_pci_liveupdate.serial_reset=1" in console else "parallel"
    # The module's tracepoint, which init has the kernel print on the console.
    total = re.findall(r"vfio_pci_lu_freeze_all: devices=(\d+) reset=(\w+) us=(\d+) failed=(\d+)", old)
    ndev = len(run.binds[1])
    kept = len(set(re.findall(r"vfio_pci_lu_freeze: (\S+) reset=none us=\d+ ret=0\b", old)))
    name = f"the kexec froze all {ndev} device(s), {want} resets" + (f", {kept} kept" if kept else "")
    if not total:
        return (name, False, "no vfio_pci_lu_freeze_all event in the old kernel's log")
    n, mode, us, failed = total[-1]
    return (name, int(n) == ndev and mode == want,
            f"{n} device(s), {mode} resets, {failed} failed or unfinished, {us} us")


def frame_checks(run, rundir):
    """One check per virtio-net-tx device: every sequence number the sample
    VMM says it sent (stage 1 and stage 2) reached the host exactly once."""
    sent = {}  # MAC -> (BDF, last seq sent)
    for stage in (1, 2):
        for text in run.vmm.get(stage, []):
            m = VMM_SENT.match(text)
            if m:
                bdf, last, mac = m.group(1), int(m.group(4)), m.group(5)
                sent[mac] = (bdf, max(last, sent.get(mac, (bdf, -1))[1]))
    checks = []
    seen = {}  # MAC -> (device index, its frames in arrival order)
    logs = sorted(rundir.glob("frames-*.log"), key=lambda p: int(frames.log_index(p)))
    for log in logs:
        dev = frames.log_index(log)
        records = frames.read_log(log)
        for r in records:
            seen.setdefault(r[2], (dev, []))[1].append(r)
        if not records:
            checks.append((f"dev {dev}: no frames received", False, f"{log} is empty"))
    if not logs:
        return checks
    for mac in sorted(set(seen) | set(sent)):
        dev, records = seen.get(mac, ("?", []))
        bdf, last = sent.get(mac, (None, None))
        if last is None:
            ok, text = False, f"{len(records)} frames received, none reported sent by the VMM"
        else:
            ok, text = frames.summarize(records, last)
        who = f"{bdf} (MAC {mac}, dev {dev})" if bdf else f"dev {dev} (MAC {mac})"
        checks.append((f"{who}: {text}", ok, f"the host's log: {rundir / f'frames-{dev}.log'}"))
    return checks


# The receive side (issue 16: scripts/vmtest.sh --noiommu, virtio-net-rx
# devices, the sample VMM's --rx): what the VMM says of each device.
RX_MAC = re.compile(r"^(\S+): virtio-net: DRIVER_OK \(device status 0x[0-9a-f]+\); frames from MAC ([0-9a-f:]{17})")
RX_MODE = re.compile(r"^(\S+): live update mode (\w+) ")
RX_STAGE1 = re.compile(r"^(\S+): rx: stage 1: received (\d+) frame\(s\) in [\d.]+ s: seq ([^;]*);")
RX_FIRST = re.compile(r"^(\S+): rx: first read \(uptime ([\d.]+) s;.*?\): used\.idx (\d+) \(stage 1 consumed "
                      r"up to (\d+)\): (\d+) frame\(s\) written into the guest memory while no VMM ran: "
                      r"seq ([^;]*);")
RX_STAGE2 = re.compile(r"^(\S+): rx: stage 2: received (\d+) frame\(s\) after the first read, in [\d.]+ s: "
                       r"seq ([^;]*);")
RX_GET = re.compile(r"^(\S+): VFIO_DEVICE_FEATURE_LIVEUPDATE GET: mode (\w+), flags (0x[0-9a-f]+) \(([^)]*)\)")
RX_RUNNING = re.compile(r"^(\S+): virtio-net: running: device status (0x[0-9a-f]+) \(DRIVER_OK kept\), "
                        r"Bus Master on .*never stopped nor reset$")
RX_KEPT = re.compile(r"^(\S+): virtio-net: kept: .*as stage 1 left them$")
RX_RESUMED = re.compile(r"^(\S+): Bus Master on \(Command register 0x[0-9a-f]+\), DRIVER_OK again")
RX_REINIT = re.compile(r"^(\S+): device was reset by the live update: re-initialising virtio-net$")
RX_READY = re.compile(r"^(\S+): rx: marker frame READY sent")
RX_NOTHING = re.compile(r"^(\S+): rx: used\.idx (\d+), as the first read found it")
# A kept or reset device may still write frames sent in the first moments
# after stage 1's LEAVE marker: its DMA stops at the freeze, inside reboot().
# That comes 0.1 to 0.3 s after the marker, later if the guest's vCPU waits
# for a loaded host; so the check allows the first half of the window, at
# least RX_GRACE. A device whose DMA goes on writes until the window's end.
RX_GRACE = 0.5


def rx_grace(width):
    """How long after the LEAVE marker a kept or reset device may still write."""
    return max(RX_GRACE, width / 2)


def seq_runs(text):
    """[3, 4, 5, 7] for "3-5, 7" (arrival order kept); [] for "none"."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part or part == "none":
            continue
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


class RxDevice:
    """One virtio-net-rx device: what the VMM said and what the host logged."""

    def __init__(self, bdf):
        self.bdf = bdf
        self.mac = None
        self.mode = None
        self.stage1, self.first, self.stage2 = [], [], []
        self.first_up = None
        self.get = None          # (mode, flags, names)
        self.running = None      # device status of a running device, as stage 2 read it
        self.kept = self.resumed = self.reinit = self.nothing_since = False
        self.ready = False       # the VMM set up its receive queue (READY marker sent)
        self.dev = None          # the host's device index
        self.feed = None         # frames.read_feed_log()


def rx_devices(run, rundir):
    """The receiving devices of the run, by BDF, with their host logs."""
    devs = {}

    def dev(bdf):
        return devs.setdefault(bdf, RxDevice(bdf))
    for stage in (1, 2):
        for text in run.vmm.get(stage, []):
            m = RX_MAC.match(text)
            if m and stage == 1:
                dev(m.group(1)).mac = m.group(2)
            m = RX_MODE.match(text)
            if m and stage == 1:
                dev(m.group(1)).mode = m.group(2)
            m = RX_STAGE1.match(text)
            if m:
                dev(m.group(1)).stage1 = seq_runs(m.group(3))
            m = RX_FIRST.match(text)
            if m:
                d = dev(m.group(1))
                d.first, d.first_up = seq_runs(m.group(6)), float(m.group(2))
            m = RX_STAGE2.match(text)
            if m:
                dev(m.group(1)).stage2 = seq_runs(m.group(3))
            m = RX_GET.match(text)
            if m:
                dev(m.group(1)).get = (m.group(2), int(m.group(3), 16), m.group(4))
            m = RX_RUNNING.match(text)
            if m:
                dev(m.group(1)).running = m.group(2)
            for pat, attr in ((RX_KEPT, "kept"), (RX_RESUMED, "resumed"), (RX_REINIT, "reinit"),
                              (RX_NOTHING, "nothing_since"), (RX_READY, "ready")):
                m = pat.match(text)
                if m:
                    setattr(dev(m.group(1)), attr, True)
    feeds = {}
    silent = []  # feed logs of devices that never sent a marker
    for log in sorted(rundir.glob("feed-*.log"), key=lambda p: int(frames.log_index(p))):
        f = frames.read_feed_log(log)
        for mac in {m for _, _, _, m in f["markers"]}:
            feeds[mac] = (frames.log_index(log), f)
        if not f["markers"]:
            silent.append(frames.log_index(log))
    out = []
    for d in devs.values():
        if d.mac is None or not d.ready:
            continue
        if d.mac in feeds:
            d.dev, d.feed = feeds[d.mac]
        out.append(d)
    return sorted(out, key=lambda d: d.bdf), feeds, silent


def rx_window(devs):
    """The kexec window in host time: from the last LEAVE marker (stage 1's
    last action) to the first BACK marker (stage 2, the first device back in
    the VMM's hands: an upper bound of the new VMM's first action)."""
    leave = [t for d in devs if d.feed for t, k, _, _ in d.feed["markers"] if k == 1]
    back = [t for d in devs if d.feed for t, k, _, _ in d.feed["markers"] if k == 2]
    if not leave or not back:
        return None
    return max(leave), min(back)


def pause(received, sent):
    """The longest gap between two consecutive received frames' send times:
    (seconds, seq before, seq after), or None."""
    best = None
    for a, b in zip(received, received[1:]):
        if a in sent and b in sent:
            gap = sent[b] - sent[a]
            if best is None or gap > best[0]:
                best = (gap, a, b)
    return best


def rx_checks(run, rundir):
    """The receive side's checks, one (name, ok, why) per claim, and the
    lines of the demo's summary. RUN: no frame lost over both stages, frames
    sent during the kexec were in guest memory at the new VMM's first read,
    GET says RUNNING, the device was neither stopped nor reset, and its DMA
    never paused for long. KEEP and RESET: the contrast, none of the frames
    sent during the kexec (after the freeze's first moments) reached guest
    memory during it, and where they went; the device resumed, or was
    re-initialised, and received again."""
    devs, feeds, silent = rx_devices(run, rundir)
    checks, lines = [], []
    checks += [(f"virtio-net-rx dev {i}: the device sent its marker frames to the host", False,
                f"no marker frame in {rundir / f'feed-{i}.log'}") for i in silent]
    if not devs and not feeds:
        return checks, lines
    if not devs:
        return checks + [("virtio-net-rx devices: the sample VMM received on none", False,
                          "no 'rx:' lines from the VMM")], lines
    win = rx_window(devs)
    if win is None:
        return checks + [("kexec window: the LEAVE and BACK marker frames reached the host", False,
                          "a marker is missing from the feed logs")], lines
    t0, t1 = win
    width = t1 - t0
    rows = []
    lines.append(f"kexec window (host time, marker frames): {width:.3f} s, from the last "
                 "LEAVE marker (stage 1's last action before reboot) to the first BACK "
                 "marker (stage 2, an upper bound of the new VMM's first action)")
    for d in devs:
        who = f"{(d.mode or '?').upper()} {d.bdf} (dev {d.dev or '?'})"
        if d.feed is None:
            checks.append((f"{who}: the host's feed log", False, f"no feed log with MAC {d.mac}"))
            continue
        sent, refused = d.feed["sent"], d.feed["refused"]
        received = d.stage1 + d.first + d.stage2
        p = pause(received, sent)
        ptext = (f"longest gap between consecutive received frames' send times "
                 f"{p[0] * 1000:.0f} ms (seq {p[1]} to {p[2]})" if p else "no gap measured")
        in_win = sorted(q for q, t in sent.items() if t0 < t < t1)
        ref_win = sorted(q for q, t in refused.items() if t0 < t < t1)
        first = set(d.first)
        recv_set = set(received)
        lo, hi = (min(received), max(received)) if received else (0, -1)
        missing = sorted(set(range(lo, hi + 1)) - recv_set)
        dups = len(received) - len(recv_set)
        disorder = sum(1 for a, b in zip(received, received[1:]) if b < a)
        total = (f"{len(received)} frames received, seq {lo}..{hi} "
                 f"(stage 1 {len(d.stage1)}, first read {len(d.first)}, stage 2 {len(d.stage2)})")
        if d.mode == "run":
            problems = []
            if missing:
                problems.append(f"missing {frames.ranges(missing)}")
            if dups:
                problems.append(f"{dups} duplicate(s)")
            if disorder:
                problems.append(f"{disorder} out of order")
            checks.append((f"{who}: no frame lost over both stages: {total}"
                           + (", no gap" if not problems else ": " + "; ".join(problems)),
                           bool(received) and not problems, "; ".join(problems) or "nothing received"))
            in_first = [q for q in in_win if q in first]
            after = [q for q in in_win if q not in first and q in recv_set]
            bracket = ""
            if d.first and max(d.first) in sent and max(d.first) + 1 in sent:
                a, b = sent[max(d.first)] - t0, sent[max(d.first) + 1] - t0
                bracket = (f"; the first read came between the sends of seq {max(d.first)} and "
                           f"{max(d.first) + 1}, {a:.3f} and {b:.3f} s into the window")
            checks.append((f"{who}: DMA during the kexec: {len(in_win)} frames sent in the window, "
                           f"{len(in_first)} of them in the ring at the new VMM's first read "
                           f"(before it retrieved the device), the other {len(after)} received "
                           f"just after{bracket}",
                           len(in_first) > 0 and len(in_first) + len(after) == len(in_win),
                           f"first read: {frames.ranges(d.first) or 'none'}"))
            flags_ok = bool(d.get) and d.get[0] == "run" and d.get[1] & 0x7 == 0x7
            checks.append((f"{who}: GET flags {d.get[2] if d.get else '?'} "
                           f"({hex(d.get[1]) if d.get else '?'}), RUNNING set",
                           flags_ok, f"GET said {d.get}"))
            checks.append((f"{who}: never reset: device status {d.running or '?'} (DRIVER_OK kept), "
                           "Bus Master on, queue registers and ring indices as stage 1 left them",
                           d.running == "0x0f" and not d.reinit, "no 'virtio-net: running:' line"))
            # The feeder's own longest gap between two consecutive frames
            # over the same span (a loaded host delays it): a device that
            # never paused shows no longer one.
            offered = {**refused, **sent}
            span = [offered[q] for q in range(lo, hi + 1) if q in offered]
            own = max((b - a for a, b in zip(span, span[1:])), default=0.0)
            times = sorted(sent.values())
            steps = sorted(b - a for a, b in zip(times, times[1:]))
            interval = steps[len(steps) // 2] if steps else 0.0
            checks.append((f"{who}: DMA pause: {ptext}, frames sent every {interval * 1000:.0f} ms, "
                           f"the sender's own longest gap {own * 1000:.0f} ms: the device added "
                           f"none, the kexec window ({width:.3f} s) left no trace",
                           p is not None and p[0] <= own + 1e-6 and p[0] < width / 2, ptext))
            rows.append((d, len(received), len(in_win), len(in_first), p, None))
            continue
        # KEEP and RESET: the contrast.
        grace = rx_grace(width)
        late = [q for q in d.first if q in sent and sent[q] > t0 + grace]
        early = [q for q in d.first if q in sent and t0 < sent[q] <= t0 + grace]
        # Every attempt counts here, refused ones too: the device was not
        # taking frames, so the socket filled up.
        after_grace = [q for q in in_win + ref_win
                       if sent.get(q, refused.get(q, 0)) > t0 + grace]
        held = [q for q in in_win if q in recv_set and q not in first]
        lost = [q for q in in_win if q not in recv_set and q not in first]
        fate = (f"{len(held)} held (by QEMU and the socket) and received after the resume"
                f"{' (' + frames.ranges(held) + ')' if held else ''}, "
                f"{len(ref_win)} refused by the full socket (dropped at the host), "
                f"{len(lost)} sent but never received (dropped in QEMU)"
                f"{' (' + frames.ranges(lost) + ')' if lost else ''}")
        before = d.stage1 + d.first
        stop = ""
        if before and before[-1] in sent and before[-1] + 1 in sent:
            a, b = sent[before[-1]] - t0, sent[before[-1] + 1] - t0
            stop = (f"; its DMA stopped between the sends of seq {before[-1]} and "
                    f"{before[-1] + 1} (the last frame written, the first not), {a * 1000:.0f} and "
                    f"{b * 1000:.0f} ms after the LEAVE marker")
        checks.append((f"{who}: DMA stopped during the kexec: none of the {len(after_grace)} frames "
                       f"offered in the window after its first {grace * 1000:.0f} ms reached guest "
                       f"memory during it ({len(early)} sent before that did, until the freeze); "
                       f"of the {len(in_win) + len(ref_win)} offered in the window: {fate}{stop}",
                       not late and len(after_grace) > 0,
                       f"written during the window: {frames.ranges(late)}" if late else
                       "no frame sent in the window"))
        if d.mode == "keep":
            ok = (bool(d.get) and d.get[1] & 0x3 == 0x3 and d.kept and d.nothing_since
                  and d.resumed and bool(d.stage2))
            checks.append((f"{who}: kept, resumed and receiving again: GET flags "
                           f"{d.get[2] if d.get else '?'}, registers as stage 1 left them, nothing "
                           f"written since the kexec, Bus Master and DRIVER_OK on again, "
                           f"{len(d.stage2)} frames received after", ok,
                           f"GET {d.get}, kept {d.kept}, nothing since {d.nothing_since}, "
                           f"resumed {d.resumed}"))
        else:
            ok = bool(d.get) and d.get[1] & 0x2 == 0 and d.reinit and bool(d.stage2)
            checks.append((f"{who}: reset and re-initialised: GET flags {d.get[2] if d.get else '?'}, "
                           f"{len(d.stage2)} frames received after", ok,
                           f"GET {d.get}, re-initialised {d.reinit}"))
        resume_gap = None
        if before and before[-1] in sent:
            resume_gap = t1 - sent[before[-1]]
        rows.append((d, len(received), len(in_win) + len(ref_win), len(early) + len(late), p,
                     f"{fate}" + (f"; DMA stopped from seq {before[-1]} until the resume: "
                                  f"{resume_gap:.3f} s" if resume_gap is not None else "")))
    lines.append(f"{'mode':5} {'device':12}  {'received':>8}  {'stage 1':>7}  {'1st read':>8}  "
                 f"{'stage 2':>7}  {'sent in window':>14}  {'in memory during it':>19}  DMA pause")
    for d, n, nwin, nmem, p, _ in rows:
        ptext = f"{p[0] * 1000:.0f} ms (seq {p[1]} to {p[2]})" if p else "-"
        lines.append(f"{d.mode.upper():5} {d.bdf:12}  {n:>8}  {len(d.stage1):>7}  {len(d.first):>8}  "
                     f"{len(d.stage2):>7}  {nwin:>14}  {nmem:>19}  {ptext}")
    for d, _, _, _, _, fate in rows:
        if fate:
            lines.append(f"{d.mode.upper()} {d.bdf}, the frames sent during the kexec: {fate}")
    lines.append("(DMA pause: the longest gap between the host send times of two consecutive "
                 "frames the device received)")
    # For make bench (scripts/bench.py): the same numbers, machine-readable.
    devices = []
    for d, n, nwin, nmem, p, _ in rows:
        times = sorted(d.feed["sent"].values())
        steps = sorted(b - a for a, b in zip(times, times[1:]))
        devices.append({"mode": d.mode, "bdf": d.bdf, "received": n,
                        "sent_in_window": nwin, "in_memory_during": nmem,
                        "pause_ms": p[0] * 1000 if p else None,
                        "interval_ms": steps[len(steps) // 2] * 1000 if steps else None})
    (rundir / "rx.json").write_text(json.dumps({"window_s": width, "devices": devices}, indent=1))
    return checks, lines


def ev(run, stage, prefix):
    for (s, text), v in run.events.items():
        if s == stage and text.startswith(prefix):
            return v
    return None


def tsc_mhz(console):
    m = re.search(r"tsc: Detected ([\d.]+) MHz", console)
    return float(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rundir", type=Path)
    ap.add_argument("--mode", default="test", choices=["test", "demo", "bench"])
    ap.add_argument("--qemu-rc", type=int, default=0)
    ap.add_argument("--wall", type=float, default=0.0)
    ap.add_argument("--devices", default="")
    args = ap.parse_args()

    ktap = args.rundir / "ktap.log"
    console_path = args.rundir / "console.log"
    run = parse_ktap(ktap) if ktap.exists() else Run()
    console = console_path.read_text(errors="replace") if console_path.exists() else ""

    # Host checks of the run as a whole.
    host = []
    host.append(("QEMU exited by itself (no hang, no timeout)", args.qemu_rc == 0,
                 f"qemu exit status {args.qemu_rc}" + (" (timeout)" if args.qemu_rc in (124, 137) else
                                                     " (stalled: no output)" if args.qemu_rc == 125 else "")))
    host.append(("stage 1 ran its tests and started the kexec",
                 ev(run, 1, "stage 1: done, kexec") is not None, "no 'stage 1: done, kexec' line"))
    host.append(("stage 2 booted by kexec and found KHO data",
                 ev(run, 2, "stage 2: init") is not None and "KHO: found kexec handover data" in console,
                 "stage 2 did not start, or KHO handed nothing over"))
    host.append(("stage 2 ran its tests to the end",
                 ev(run, 2, "stage 2: done") is not None, "no 'stage 2: done' line"))
    splats = [l for l in console.splitlines() if SPLATS.search(l)]
    host.append(("no panic, BUG, Oops, WARNING or sanitizer report in either kernel's log",
                 not splats, "; ".join(s.strip() for s in splats[:5])))
    if args.mode in ("test", "bench"):
        host.append(freeze_check(run, console))
    tx = frame_checks(run, args.rundir)
    host += tx
    rxc, rx_lines = rx_checks(run, args.rundir)
    host += rxc
    for stage in (1, 2):
        if not any(r[0] == stage for r in run.results):
            host.append((f"stage {stage} produced KTAP results", False, "none seen"))

    results = [(s, p, n, st) for (s, p, n, st) in run.results]
    results += [(0, "host", name, "pass" if ok else "fail") for name, ok, _ in host]
    passed = sum(1 for r in results if r[3] == "pass")
    failed = sum(1 for r in results if r[3] == "fail")
    skipped = sum(1 for r in results if r[3] == "skip")

    out = []
    retried = args.rundir / "qemu-retried"
    if retried.exists():
        why = retried.read_text().strip()
        if why.startswith("stalled: "):
            out.append(f"  note: the first attempt stalled ({why[len('stalled: '):]}); "
                       f"this is the second (the first one's logs: {args.rundir / 'qemu-stalled'})")
        else:
            out.append(f"  note: QEMU aborted the first attempt on an assertion of its own "
                       f"({why}); this is the second "
                       f"(the first one's logs: {args.rundir / 'qemu-aborted'})")
    if args.mode == "demo":
        out += demo_summary(run, console, args, tx)
        # Selftests that a demo run's lists put before or after the VMM (make
        # test's run without an IOMMU): their results, as in test mode.
        tests = [r for r in run.results if r[1] != "vfio_lu_vmm"]
        if tests:
            out.append("  the selftests of the run:")
            for s, p, n, st in tests:
                word = {"pass": "ok    ", "fail": "FAIL  ", "skip": "SKIP  "}[st]
                out.append(f"  {word}stage {s}  {p}: {n}")
            out.append("")
        if rxc:
            out.append("  the receive side: frames the host sent, what each device received "
                       "(scripts/frames.py feed; issue 16):")
            out += [f"    {l}" for l in rx_lines]
            out += [f"    {'ok  ' if ok else 'FAIL'} {name}" for name, ok, _ in rxc]
            out.append("")
    else:
        for s, p, n, st in results:
            where = f"stage {s}" if s else "host"
            word = {"pass": "ok    ", "fail": "FAIL  ", "skip": "SKIP  "}[st]
            out.append(f"  {word}{where:8} {p}: {n}")
    for name, ok, why in host:
        if not ok:
            out.append(f"  host check failed: {name}: {why}")
    if run.notes:
        out.append("  failing programs:")
        out += [f"    {n}" for n in run.notes]
    if failed or skipped:
        out.append(f"  logs: {args.rundir}")
    tail = f"vm: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
    print("\n".join(out))
    print(tail)
    return 0 if (failed == 0 and skipped == 0) else 1


def demo_summary(run, console, args, tx):
    out = ["", "vfio-pci live update: what happened", ""]
    for stage, title in ((1, "old kernel (stage 1)"), (2, "new kernel (stage 2, after kexec)")):
        out.append(f"  {title}:")
        if not run.binds[stage]:
            out.append("    no devices seen")
        for bdf, ids, drv in run.binds[stage]:
            out.append(f"    {bdf}  [{ids}]  bound to {drv}")
    out.append("")
    mhz = tsc_mhz(console)
    s1_init, s1_kexec = ev(run, 1, "stage 1: init"), ev(run, 1, "stage 1: done, kexec")
    s2_init, s2_done = ev(run, 2, "stage 2: init"), ev(run, 2, "stage 2: done")
    if s1_init:
        out.append(f"  old kernel booted to init in        {s1_init[0]:7.3f} s (uptime)")
    if s1_init and s1_kexec:
        what = "bind, VMM set-up, preserve" if run.vmm[1] else "bind, tests, preserve"
        label = f"stage 1 ({what})"
        out.append(f"  {label:<36}{s1_kexec[0] - s1_init[0]:7.3f} s")
    if s1_kexec and s2_init and mhz:
        dt = (s2_init[1] - s1_kexec[1]) / (mhz * 1e6)
        out.append(f"  reboot(KEXEC) to new kernel's init  {dt:7.3f} s (TSC at {mhz:.0f} MHz; new kernel up {s2_init[0]:.3f} s of it)")
    if s2_init and s2_done:
        out.append(f"  stage 2 (retrieve, check, finish)   {s2_done[0] - s2_init[0]:7.3f} s")
    out.append(f"  QEMU wall time, both kernels        {args.wall:7.3f} s (TCG)")
    out.append("")
    out += device_summary(run, console)
    if run.vmm[1] or run.vmm[2]:
        out.append("  the live update, step by step, as the sample VMM (samples/vfio_lu_vmm) did it:")
        for stage, title in ((1, "old kernel: vfio_lu_vmm stage1"), (2, "new kernel: vfio_lu_vmm stage2")):
            out.append(f"    {title}")
            out += [f"      {t}" for t in run.vmm[stage]] or ["      (nothing)"]
        for s, p, n, st in run.results:
            if p == "vfio_lu_vmm":
                out.append(f"    {'ok  ' if st == 'pass' else 'FAIL'} stage {s}: {p} {n}")
        out.append("")
    if tx:
        out.append("  the frames the virtio-net devices sent, as the host received them "
                   "(scripts/frames.py):")
        out += [f"    {'ok  ' if ok else 'FAIL'} {name}" for name, ok, _ in tx]
        out.append("")
    steps = [r for r in run.results if r[1] in ("luo_memfd_kexec", "vfio_lu_kexec_test")]
    if steps:
        out.append("  the live update, step by step (test results):")
        for s, p, n, st in steps:
            out.append(f"    {'ok  ' if st == 'pass' else 'FAIL'} stage {s}: {n}")
        out.append("")
    return out


def device_summary(run, console):
    """Per device: identity before and after (as init read it from sysfs in each
    kernel), its reset method, and what the handler's tracepoints say of its
    freeze, reset and retrieve (init has the kernel print them on the console)."""
    lines = [re.sub(r"^\[ *[0-9.]+\] ", "", l.strip()) for l in console.splitlines()]
    banners = [i for i, l in enumerate(lines) if "Linux version " in l]
    cut = banners[1] if len(banners) > 1 else len(lines)
    old, new = lines[:cut], lines[cut:]

    def last(part, pattern):
        found = None
        for l in part:
            m = re.search(pattern, l)
            if m:
                found = m
        return found

    after_ids = {bdf: ids for bdf, ids, _ in run.binds[2]}
    # The mode the sample VMM chose for each device, if it says.
    vmm_modes = {m.group(1): m.group(2) for m in map(RX_MODE.match, run.vmm.get(1, [])) if m}
    out = ["  each device, old kernel -> new kernel (identity from sysfs, steps from the tracepoints):"]
    for bdf, ids, _ in run.binds[1]:
        b = re.escape(bdf)
        frozen = last(old, rf"vfio_pci_lu_freeze: {b} reset=(\w+) us=(\d+) ret=0\b")
        # Keep mode (VFIO_DEVICE_LIVEUPDATE_KEEP): the freeze did not reset the device.
        kept = bool(frozen) and frozen.group(1) == "none"
        refused = last(old, rf"{b}: live update: cannot freeze: (.*)$")
        reset = last(old, rf"vfio_pci_lu_reset: {b} when=\w+ us=(\d+) waited_us=\d+ ret=(-?\d+)")
        retrieved = last(new, rf"vfio_pci_lu_retrieve: {b} us=(\d+) ret=(-?\d+)")
        after = after_ids.get(bdf)
        methods = run.resets[1].get(bdf, "?").split()
        steps = [("frozen", frozen), ("reset", kept or (reset and reset.group(2) == "0")),
                 ("retrieved", retrieved and retrieved.group(2) == "0")]
        missing = [name for name, ok in steps if not ok]
        if missing:
            outcome = "FAILED: not " + ", ".join(missing)
        elif after != ids:
            outcome = "FAILED: identity changed"
        elif kept:
            outcome = (f"ok: frozen in {frozen.group(2)} us, kept (not reset), "
                       f"retrieved in {retrieved.group(1)} us; same identity")
        else:
            outcome = (f"ok: frozen in {frozen.group(2)} us, reset in {reset.group(1)} us, "
                       f"retrieved in {retrieved.group(1)} us; same identity")
        out.append(f"    {bdf}")
        out.append(f"      before  {ids}")
        if kept and vmm_modes.get(bdf) == "run":
            out.append("      reset   none: kept running, Bus Master on (VFIO_DEVICE_LIVEUPDATE_RUN)")
        elif kept:
            out.append("      reset   none: kept (VFIO_DEVICE_LIVEUPDATE_KEEP)")
        else:
            out.append(f"      reset   {methods[0] if methods else '?'} at freeze"
                       f" (first of the device's reset methods: {' '.join(methods)})")
        out.append(f"      after   {after or '-'}")
        if refused:
            out.append(f"      note    a kexec was refused first, as the test asks: {refused.group(1)}")
        out.append(f"      outcome {outcome}")
    out.append("")
    return out


if __name__ == "__main__":
    sys.exit(main())
