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
        if kept:
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
