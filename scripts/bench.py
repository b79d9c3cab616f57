#!/usr/bin/env python3
"""Summarise benchmark runs of scripts/bench.sh: a Markdown table and an SVG plot.

Each argument is the log directory of one QEMU run (scripts/vmtest.sh --mode
bench). From ktap.log: the "# bench: <phase> <kind> <us>" samples that
vfio_lu_bench timed in userspace, the TSC of the last device retrieved and the
TSC of init's reboot(KEXEC). From console.log (both kernels): the TSC
frequency, and the module's tracepoints, which init has the kernel print on
the console (tracepoint_printk): per device vfio_pci_lu_freeze and
vfio_pci_lu_reset, in all vfio_pci_lu_freeze_all (first freeze to last reset
done, with the reset mode).
"""
import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

SAMPLE = re.compile(r"^# bench: (\w+) (\w+) ([\d.]+)$")
LAST_TSC = re.compile(r"^# bench: last_retrieve_tsc (\d+)$")
KEXEC = re.compile(r"^# vfio-lu: \[up=[\d.]+ tsc=(\d+)\] stage 1: done, kexec$")
# The module's tracepoints (include/trace/events/vfio_pci_liveupdate.h).
FROZEN = re.compile(r"vfio_pci_lu_freeze: \S+ reset=\w+ us=(\d+) ret=0\b")
RESET = re.compile(r"vfio_pci_lu_reset: \S+ when=(serial|parallel) us=(\d+) waited_us=(\d+) ret=0\b")
TOTAL = re.compile(r"vfio_pci_lu_freeze_all: devices=(\d+) reset=(\w+) us=(\d+) failed=(\d+)")
MHZ = re.compile(r"tsc: Detected ([\d.]+) MHz")

# (key, label, unit divisor to ms, where the number comes from)
ROWS = [
    ("preserve/vfio", "preserve, per device", "userspace, around LIVEUPDATE_SESSION_PRESERVE_FD"),
    ("preserve/memfd", "preserve, memfd baseline", "userspace, one 4 KiB memfd"),
    ("freeze_cb", "freeze callback, per device", "kernel: our freeze(), start to return"),
    ("reset", "reset, per device", "kernel: vfio_pci_core_lu_reset(), reset and restore under vfio-pci's locks"),
    ("reset_wait", "reset start, after its freeze queued it", "kernel: queued to running (parallel only)"),
    ("freeze", "freeze, all devices", "kernel: first freeze() to last reset done"),
    ("kexec_to_retrieved", "reboot(KEXEC) to last device retrieved", "TSC, both kernels (boot of the new one included)"),
    ("retrieve/vfio", "retrieve, per device", "userspace, around LIVEUPDATE_SESSION_RETRIEVE_FD"),
    ("retrieve/memfd", "retrieve, memfd baseline", "userspace"),
    ("bind/vfio", "bind (VFIO_DEVICE_BIND_IOMMUFD), per device", "userspace, after retrieve"),
    ("blackout", "device part of the blackout: freeze + retrieve + bind, all devices",
     "freeze, all devices, plus every retrieve and bind (kernel boot excluded)"),
    ("finish/vfio", "finish, device session", "userspace, LIVEUPDATE_SESSION_FINISH"),
    ("finish/memfd", "finish, memfd session", "userspace"),
]


def parse_run(rundir):
    ktap = (rundir / "ktap.log").read_text(errors="replace").splitlines()
    console = (rundir / "console.log").read_text(errors="replace")
    s = defaultdict(list)
    last_tsc = kexec_tsc = None
    for line in ktap:
        line = line.rstrip("\r")
        m = SAMPLE.match(line)
        if m:
            s[f"{m.group(1)}/{m.group(2)}"].append(float(m.group(3)))
            continue
        m = LAST_TSC.match(line)
        if m:
            last_tsc = int(m.group(1))
        m = KEXEC.match(line)
        if m:
            kexec_tsc = int(m.group(1))
    mhz = MHZ.search(console)
    total = TOTAL.search(console)
    if not (mhz and total and last_tsc and kexec_tsc):
        sys.exit(f"{rundir}: incomplete run (tsc {bool(mhz)}, freeze total {bool(total)}, "
                 f"retrieve tsc {bool(last_tsc)}, kexec tsc {bool(kexec_tsc)})")
    if int(total.group(4)):
        sys.exit(f"{rundir}: {total.group(4)} reset(s) failed")
    resets = RESET.findall(console)
    s["freeze_cb"] = [float(x) for x in FROZEN.findall(console)]
    s["reset"] = [float(us) for _, us, _ in resets]
    s["reset_wait"] = [float(w) for when, _, w in resets if when == "parallel"]
    s["freeze"] = [float(total.group(3))]
    s["kexec_to_retrieved"] = [(last_tsc - kexec_tsc) / float(mhz.group(1))]
    s["blackout"] = [float(total.group(3)) + sum(s["retrieve/vfio"]) + sum(s["bind/vfio"])]
    ndev = int(total.group(1))
    # Keep mode runs (bench.sh): no reset at all, whatever the module's reset mode.
    mode = "keep" if "vfio_lu_bench_keep=1" in console else total.group(2)
    return mode, ndev, s


def fmt(v):
    med, lo, hi = v
    return f"{med / 1000:.2f} ({lo / 1000:.2f}–{hi / 1000:.2f})"


def stats(xs):
    return (statistics.median(xs), min(xs), max(xs)) if xs else None


def svg_plot(data, sizes, path):
    """Freeze of all devices (median, min-max bars) against N, one line per mode."""
    W, H, L, R, T, B = 640, 400, 70, 150, 40, 50
    ymax = max(v[2] for m in data.values() for v in m.values()) / 1000 * 1.1
    xmax = max(sizes)

    def x(n):
        return L + (W - L - R) * (n / xmax)

    def y(ms):
        return H - B - (H - T - B) * (ms / ymax)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2 - 40}" y="22" font-size="14" text-anchor="middle">Freeze of N preserved devices (median, min–max)</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">N devices (FLR, 100 ms each)</text>',
           f'<text x="18" y="{(T + H - B) / 2}" transform="rotate(-90 18 {(T + H - B) / 2})" text-anchor="middle">ms</text>']
    step = 10 ** max(0, len(str(int(ymax))) - 1)
    if ymax / step < 4:
        step /= 2
    t = 0.0
    while t <= ymax:
        out.append(f'<line x1="{L - 4}" y1="{y(t):.1f}" x2="{W - R}" y2="{y(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 8}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
        t += step
    for n in sizes:
        out.append(f'<text x="{x(n):.1f}" y="{H - B + 18}" text-anchor="middle">{n}</text>')
    colours = {"parallel": "#1f77b4", "serial": "#d62728", "keep": "#2ca02c"}
    for i, (mode, pts) in enumerate(sorted(data.items())):
        c = colours.get(mode, "black")
        ns = sorted(pts)
        line = " ".join(f"{x(n):.1f},{y(pts[n][0] / 1000):.1f}" for n in ns)
        out.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="2"/>')
        for n in ns:
            med, lo, hi = (v / 1000 for v in pts[n])
            out.append(f'<line x1="{x(n):.1f}" y1="{y(lo):.1f}" x2="{x(n):.1f}" y2="{y(hi):.1f}" stroke="{c}"/>')
            out.append(f'<circle cx="{x(n):.1f}" cy="{y(med):.1f}" r="3.5" fill="{c}"/>')
        ly = T + 20 + 22 * i
        out.append(f'<line x1="{W - R + 15}" y1="{ly}" x2="{W - R + 40}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
        label = "keep (no reset)" if mode == "keep" else f"{mode} resets"
        out.append(f'<text x="{W - R + 46}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="virtio-net-pci")
    ap.add_argument("--pause", action="append", type=Path, default=[],
                    help="a no-IOMMU demo run (its rx.json): the DMA pause per mode")
    args = ap.parse_args()

    # (mode, N) -> key -> samples, and how many runs each
    agg = defaultdict(lambda: defaultdict(list))
    nruns = defaultdict(int)
    for r in args.runs:
        mode, n, s = parse_run(r)
        nruns[(mode, n)] += 1
        for k, v in s.items():
            agg[(mode, n)][k].extend(v)
    sizes = sorted({n for _, n in agg})
    modes = [m for m in ("parallel", "serial", "keep") if any(k[0] == m for k in agg)]

    out = []
    if args.pause:
        out += pause_section(args.pause)
    if not agg:
        text = "\n".join(out)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "pause.md").write_text(text)
        print(text)
        return
    out += [f"Device: `{args.device}` behind its own PCIe root port, N per run; "
            f"{min(nruns.values())}–{max(nruns.values())} QEMU run(s) per cell. "
            "Cells: median (min–max) in ms over every sample of the cell's runs.", ""]
    # Runs whose first attempt QEMU itself aborted (scripts/vmtest.sh ran them again).
    retried = [(r.name, (r / "qemu-retried").read_text().strip())
               for r in args.runs if (r / "qemu-retried").exists()]
    if retried:
        out.append("Runs QEMU itself aborted, run again by scripts/vmtest.sh (the aborted "
                   "attempt's logs are in the run's qemu-aborted/):")
        out.append("")
        out.extend(f"- {name}: {why}" for name, why in retried)
        out.append("")
    for mode in modes:
        out.append({"parallel": "### Parallel resets (default)",
                    "serial": "### Serial resets (`vfio_pci_liveupdate.serial_reset=1`)",
                    "keep": "### Keep mode (`VFIO_DEVICE_LIVEUPDATE_KEEP`: no reset)"}[mode])
        out.append("")
        out.append("| phase | " + " | ".join(f"N={n}" for n in sizes) + " | measured |")
        out.append("|---|" + "---|" * len(sizes) + "---|")
        for key, label, src in ROWS:
            cells = [stats(agg[(mode, n)].get(key, [])) for n in sizes]
            out.append(f"| {label} | " + " | ".join(fmt(c) if c else "–" for c in cells) + f" | {src} |")
        out.append("")

    # The goals of the performance work, side by side.
    def med(mode, n, key):
        st = stats(agg.get((mode, n), {}).get(key, []))
        return st[0] if st else None

    out.append("### Goals")
    out.append("")
    lo, hi = sizes[0], (8 if 8 in sizes else sizes[-1])
    for mode in modes:
        a, b = med(mode, lo, "freeze"), med(mode, hi, "freeze")
        if a and b:
            out.append(f"- freeze, {mode}: N={hi} {b / 1000:.1f} ms vs N={lo} {a / 1000:.1f} ms: "
                       f"**{b / a:.2f}x**")
    for phase in ("preserve", "retrieve"):
        ratios = [med(m, n, f"{phase}/vfio") / med(m, n, f"{phase}/memfd")
                  for m in modes for n in sizes
                  if med(m, n, f"{phase}/vfio") and med(m, n, f"{phase}/memfd")]
        if ratios:
            out.append(f"- {phase} per device / memfd baseline (medians, every cell): "
                       f"{min(ratios):.2f}x to {max(ratios):.2f}x")
    for mode in modes:
        b = [(n, med(mode, n, "bind/vfio")) for n in sizes if med(mode, n, "bind/vfio")]
        d = [(n, med(mode, n, "blackout")) for n in sizes if med(mode, n, "blackout")]
        if b:
            out.append(f"- bind per device, {mode}: " +
                       ", ".join(f"N={n} {v / 1000:.2f} ms" for n, v in b))
        if d:
            out.append(f"- device part of the blackout, {mode}: " +
                       ", ".join(f"N={n} {v / 1000:.1f} ms" for n, v in d))
    for phase in ("preserve", "retrieve"):
        per = [(n, med("parallel", n, f"{phase}/vfio")) for n in sizes if med("parallel", n, f"{phase}/vfio")]
        if len(per) > 1:
            out.append(f"- {phase} per device against N (parallel runs): " +
                       ", ".join(f"N={n} {v / 1000:.3f} ms" for n, v in per))
    out.append("")
    text = "\n".join(out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    data = {m: {n: stats(agg[(m, n)]["freeze"]) for n in sizes if agg[(m, n)]["freeze"]} for m in modes}
    svg_plot(data, sizes, args.out / "freeze.svg")
    print(text)
    print(f"table: {args.out / 'results.md'}, plot: {args.out / 'freeze.svg'}")


def pause_section(rundirs):
    """The DMA pause across the kexec per mode, from each run's rx.json
    (scripts/vm_report.py): Markdown lines."""
    def cell(xs):
        med, lo, hi = stats(xs)
        return f"{med:.0f} ({lo:.0f}–{hi:.0f})"

    per = defaultdict(lambda: defaultdict(list))
    windows, intervals = [], []
    for r in rundirs:
        rx = json.loads((r / "rx.json").read_text())
        windows.append(rx["window_s"] * 1000)
        for d in rx["devices"]:
            m = per[d["mode"]]
            if d["pause_ms"] is not None:
                m["pause"].append(d["pause_ms"])
            m["sent"].append(d["sent_in_window"])
            m["in_memory"].append(d["in_memory_during"])
            if d.get("interval_ms"):
                intervals.append(d["interval_ms"])
    out = ["### DMA pause across the kexec (no IOMMU)", "",
           f"The no-IOMMU demonstration of `make run`, {len(rundirs)} run(s): the sample VMM "
           "receives on three `virtio-net-pci` devices that the host feeds with numbered frames"
           + (f" every {statistics.median(intervals):.0f} ms" if intervals else "")
           + ", one per live update mode. DMA pause: the longest gap between the host send times "
           "of two consecutive frames the device received, over both kernels. Kexec window: "
           "from the VMM's last action before `reboot()` to its first action after it, on the "
           "host's clock (marker frames; an upper bound). Cells: median (min–max).", "",
           "| mode | DMA pause, ms | frames sent in the window | of them in guest memory during it |",
           "|---|---|---|---|"]
    for mode in ("run", "keep", "reset"):
        m = per.get(mode)
        if not m:
            continue
        out.append(f"| {mode} | {cell(m['pause']) if m['pause'] else '–'} | "
                   f"{cell(m['sent'])} | {cell(m['in_memory'])} |")
    out += ["", f"Kexec window: {cell(windows)} ms.", ""]
    return out


if __name__ == "__main__":
    main()
