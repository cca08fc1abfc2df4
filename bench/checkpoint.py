#!/usr/bin/env python3
"""bench/checkpoint.py: `checkpoint` and `restore`, Berth beside runc, with the same CRIU.

    sudo python3 bench/checkpoint.py [--runs N] [--berth PATH] [--runc PATH] [--criu PATH]
                                     [--json FILE] [--smoke]

Each iteration runs, for each runtime in a shuffled order: `run -d` of a busybox container
that counts in a loop (its own namespaces, runc spec's defaults, a writable root), then, timed,
`checkpoint` (the processes end) and `restore -d` (they come back), checks that the restored
counter goes on from the checkpointed value, and removes the container. Both runtimes are
given bench/criutime as `--criu`: it runs the real CRIU and logs how long each CRIU process
lived, so each command's time splits into CRIU's and the runtime's own (wall - CRIU). The
figure the issue asks for is the ratio of the runtimes' own times, Berth / runc (goal: 0.8 or
less). `--smoke` (2 iterations) only checks that everything runs. Nothing is asserted about
timings; the numbers are printed (and written as JSON with --json).
"""

import argparse
import hashlib
import json
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUSYBOX = Path("/bin/busybox")
LOOP = "i=0; while :; do i=$((i + 1)); echo $i >/tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.05; done"


def build_criutime(tools: Path) -> Path:
    src = HERE / "criutime.rs"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    out = tools / f"criutime-{digest}"
    if not out.exists():
        tools.mkdir(parents=True, exist_ok=True)
        rustc = shutil.which("rustc") or str(Path.home() / ".cargo/bin/rustc")
        subprocess.run([rustc, "-O", "--edition", "2021", "-o", str(out), str(src)], check=True)
    return out


def make_bundle(work: Path, runc: str) -> Path:
    b = work / "bundle"
    rootfs = b / "rootfs"
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "root", "run"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin/busybox")
    for applet in ("sh", "sleep", "mv", "cat"):
        os.symlink("busybox", rootfs / "bin" / applet)
    subprocess.run([runc, "spec"], cwd=b, check=True)
    cfg = json.loads((b / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", LOOP]
    # runc restores the root read-write whatever root.readonly says; the same for both here.
    cfg["root"] = {"path": "rootfs", "readonly": False}
    (b / "config.json").write_text(json.dumps(cfg, indent=1))
    return b


class Runtime:
    def __init__(self, name: str, binary: str, work: Path, criutime: Path):
        self.name = name
        self.binary = binary
        self.root = work / f"root-{name}"
        self.root.mkdir()
        self.criutime = criutime

        self.log = work / f"log-{name}"

    def cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), "--log", str(self.log),
                "--criu", str(self.criutime), *args]

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs a command with /dev/null as stdin and stderr: the container's stdio comes from
        `run -d` and `restore -d`, and CRIU can restore /dev/null but not a pipe that is gone
        or a host file. Errors are read from the runtime's --log file."""
        self.log.write_text("")
        p = subprocess.Popen(
            self.cmd(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if args[0] != "state" else subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        # Wait on a pidfd: subprocess's own wait with a timeout polls with sleeps of up to
        # 50 ms, which showed up as 5-50 ms of every command's time.
        pidfd = os.pidfd_open(p.pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], timeout)
        finally:
            os.close(pidfd)
        if not ready:
            p.kill()
            p.wait()
            raise subprocess.TimeoutExpired(p.args, timeout)
        out, _ = p.communicate()
        p = subprocess.CompletedProcess(p.args, p.returncode, out, None)
        if check and p.returncode != 0:
            raise RuntimeError(
                f"{self.name} {' '.join(args)}: exit {p.returncode}: {self.log.read_text().strip()}"
            )
        return p

    def state(self, cid: str) -> dict | None:
        p = self.run("state", cid, check=False)
        return json.loads(p.stdout) if p.returncode == 0 else None


def counter(bundle: Path) -> int:
    try:
        return int((bundle / "rootfs/tmp/n").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def wait_for(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def one(rt: Runtime, bundle: Path, work: Path, i: int, criu_log: Path) -> dict:
    cid = f"ck-{rt.name}-{os.getpid()}-{i}"
    img = work / f"img-{cid}"
    wk_dump = work / f"wd-{cid}"
    wk_rest = work / f"wr-{cid}"
    for d in (img, wk_dump, wk_rest):
        d.mkdir()
    (bundle / "rootfs/tmp/n").unlink(missing_ok=True)
    try:
        rt.run("run", "-d", "--bundle", str(bundle), cid)
        if not wait_for(lambda: counter(bundle) >= 5):
            raise RuntimeError(f"{rt.name}: the counter did not start")
        out = {}
        for phase, args in (
            ("checkpoint", ["checkpoint", "--image-path", str(img), "--work-path", str(wk_dump), cid]),
            (
                "restore",
                ["restore", "-d", "--image-path", str(img), "--work-path", str(wk_rest),
                 "--bundle", str(bundle), cid],
            ),
        ):
            if phase == "restore":
                at_checkpoint = counter(bundle)
            criu_log.write_text("")
            t0 = time.monotonic_ns()
            rt.run(*args)
            t1 = time.monotonic_ns()
            wall = t1 - t0
            lines = [l.split() for l in criu_log.read_text().splitlines() if l.strip()]
            criu = sum(int(l[1]) for l in lines)
            # The runtime's own time before its first CRIU and after its last (the rest of
            # "own" falls between two CRIU runs).
            before = min(int(l[3]) for l in lines) - t0 if lines else wall
            after = t1 - max(int(l[4]) for l in lines) if lines else 0
            out[phase] = {"wall_ms": wall / 1e6, "criu_ms": criu / 1e6,
                          "own_ms": (wall - criu) / 1e6, "criu_runs": len(lines),
                          "before_ms": before / 1e6, "after_ms": after / 1e6}
        st = rt.state(cid)
        if not st or st.get("status") != "running":
            raise RuntimeError(f"{rt.name}: restored container is {st and st.get('status')}")
        if not wait_for(lambda: counter(bundle) >= at_checkpoint + 3):
            raise RuntimeError(f"{rt.name}: the restored counter did not go on from {at_checkpoint}")
        if counter(bundle) > at_checkpoint + 200:
            raise RuntimeError(f"{rt.name}: the counter jumped")
        return out
    finally:
        rt.run("kill", cid, "KILL", check=False)
        wait_for(lambda: (rt.state(cid) or {}).get("status") != "running", 5)
        rt.run("delete", "-f", cid, check=False)
        for d in (img, wk_dump, wk_rest):
            shutil.rmtree(d, ignore_errors=True)


def median(v: list[float]) -> float:
    return statistics.median(v) if v else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--berth", default=str(HERE.parent / "target/x86_64-unknown-linux-gnu/release/berth"))
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    ap.add_argument("--criu", default=shutil.which("criu") or "/usr/local/sbin/criu")
    ap.add_argument("--json")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="2 iterations: check that it all runs")
    a = ap.parse_args()
    if a.smoke:
        a.runs = 2
    if os.geteuid() != 0:
        print("bench/checkpoint.py: run as root", file=sys.stderr)
        return 1
    if subprocess.run([a.criu, "check"], capture_output=True).returncode != 0:
        print(f"SKIP: {a.criu} check fails: no working CRIU (scripts/setup-deps.sh builds one)")
        return 0 if a.smoke else 1
    for b in (a.berth, a.runc):
        if not Path(b).exists():
            print(f"bench/checkpoint.py: {b} not found", file=sys.stderr)
            return 1
    criutime = build_criutime(HERE / ".tools")
    work = Path(tempfile.mkdtemp(prefix="berth-bench-ck."))
    criu_log = work / "criu.log"
    os.environ["BENCH_CRIU"] = a.criu
    os.environ["BENCH_CRIU_LOG"] = str(criu_log)
    try:
        bundle = make_bundle(work, a.runc)
        rts = [Runtime("berth", a.berth, work, criutime), Runtime("runc", a.runc, work, criutime)]
        samples: dict[str, list[dict]] = {r.name: [] for r in rts}
        failures: list[str] = []
        for i in range(-1, a.runs):  # iteration -1: warm-up, not counted
            order = list(rts)
            random.Random(a.seed * 1_000_003 + i).shuffle(order)
            for rt in order:
                try:
                    s = one(rt, bundle, work, i, criu_log)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    failures.append(str(e))
                    print(f"FAILED: {e}", file=sys.stderr)
                    continue
                if i >= 0:
                    samples[rt.name].append(s)
        result = {"runs": a.runs, "criu": subprocess.run([a.criu, "--version"], capture_output=True,
                                                          text=True).stdout.split("\n")[0],
                  "failures": failures, "runtimes": {}}
        for name, ss in samples.items():
            r = {}
            for phase in ("checkpoint", "restore"):
                for k in ("wall_ms", "criu_ms", "own_ms", "before_ms", "after_ms"):
                    r[f"{phase}.{k}"] = median([s[phase][k] for s in ss])
            r["total.own_ms"] = median([s["checkpoint"]["own_ms"] + s["restore"]["own_ms"] for s in ss])
            r["total.wall_ms"] = median([s["checkpoint"]["wall_ms"] + s["restore"]["wall_ms"] for s in ss])
            r["n"] = len(ss)
            r["samples"] = ss
            result["runtimes"][name] = r
        b, c = result["runtimes"]["berth"], result["runtimes"]["runc"]
        print(f"checkpoint/restore, {a.runs} iterations each, {result['criu']} for both "
              f"(medians, ms; own = wall - CRIU's processes)")
        print(f"{'':24}{'berth':>10}{'runc':>10}{'berth/runc':>12}")
        ratios = {}
        for key in ("checkpoint.wall_ms", "checkpoint.criu_ms", "checkpoint.own_ms",
                    "checkpoint.before_ms", "checkpoint.after_ms",
                    "restore.wall_ms", "restore.criu_ms", "restore.own_ms",
                    "restore.before_ms", "restore.after_ms",
                    "total.wall_ms", "total.own_ms"):
            ratio = b[key] / c[key] if c[key] else float("nan")
            ratios[key] = ratio
            print(f"{key:24}{b[key]:10.1f}{c[key]:10.1f}{ratio:12.2f}")
        result["ratios"] = ratios
        print(f"goal: total.own_ms berth/runc <= 0.80: {ratios['total.own_ms']:.2f}")
        if failures:
            print(f"{len(failures)} failed iteration(s), left out: {failures}")
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=1))
        if a.smoke:
            ok = b["n"] == a.runs and c["n"] == a.runs
            print("smoke:", "ok" if ok else "FAILED")
            return 0 if ok else 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
