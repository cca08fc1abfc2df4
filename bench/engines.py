#!/usr/bin/env python3
"""bench/engines.py: what users see through an engine (issue 17 §5).

End to end, `ctr run --rm IMAGE c true` (containerd 1.6, the io.containerd.runc.v2 shim with
the runtime as its runc options' BinaryName: `ctr run --runc-binary`) and `podman run --rm
--network=none IMAGE true` (podman 4.3 with `--runtime`), with Berth, crun and runc in turn,
interleaved (every iteration runs each engine × runtime pair once, in a shuffled order).

Each pair is run twice per iteration: plain (the end-to-end figure), and with the runtime
behind bench/rtwrap, which logs every call the engine makes to the runtime (arguments, wall
time, CPU from wait4's rusage). The runtime's share of an engine command is the sum of its
calls that started while the command ran; the rest is the engine's own (client, daemon, shim
or conmon). The wrapped runs are only used for that breakdown.

containerd and podman are set up the way integration/containerd.sh and integration/podman.sh
do (integration/lib/common.sh: a private config, state and storage under a temporary
directory, a busybox image imported without a registry), and everything is removed at the end.

    sudo python3 bench/engines.py --berth target/x86_64-unknown-linux-gnu/release/berth
    sudo python3 bench/engines.py --smoke --berth …   # 1 iteration; checks the output parses
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench as B  # noqa: E402

REPO = HERE.parent
COMMON = REPO / "integration/lib/common.sh"
IMG = "localhost/berth-bench/busybox:latest"
NS = "berth-bench"
VERBS = {"create", "start", "run", "exec", "kill", "delete", "state", "features", "ps", "pause", "resume",
         "update", "events", "checkpoint", "restore", "--version", "version"}
BUSYBOX_CONFIG = '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}'


def log(msg: str) -> None:
    print(f"[engines] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def build_rtwrap(work: Path) -> str:
    return B.build_tool("rtwrap", work)


def sh_common(script: str, env: dict) -> None:
    """Runs a bash snippet with integration/lib/common.sh sourced."""
    subprocess.run(["bash", "-c", f". {COMMON}; {script}"], check=True, env={**os.environ, **env},
                   stdout=subprocess.DEVNULL)


def mounts() -> set[str]:
    return {ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()}


def cgroups() -> set[str]:
    out = set()
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        if dirpath.count("/") >= 4:
            out.add(dirpath)
    return out


class Engines:
    def __init__(self, a, work: Path, runtimes: dict[str, str], rtwrap: str):
        self.a = a
        self.w = work
        self.runtimes = runtimes  # name -> real path
        self.wrapped: dict[str, str] = {}
        self.calllog = work / "runtime-calls.log"
        self.calllog.touch()
        self.daemon: subprocess.Popen | None = None
        self.env = dict(os.environ)
        self.counter = 0
        self.problems: list[str] = []
        for name, real in runtimes.items():
            d = work / "wrap" / name
            d.mkdir(parents=True)
            shutil.copy2(rtwrap, d / name)
            (d / "rtwrap.conf").write_text(f"{real}\n{self.calllog}\n")
            self.wrapped[name] = str(d / name)
        self.engines: list[str] = []

    # --- containerd ---------------------------------------------------------------------------

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "-a", str(self.w / "containerd.sock"), "-n", NS, *args]

    def start_containerd(self) -> None:
        toml = subprocess.run(["bash", "-c", f". {COMMON}; it_containerd_toml {self.w}"], check=True,
                              capture_output=True, text=True).stdout
        (self.w / "containerd.toml").write_text(toml)
        logf = open(self.w / "containerd.log", "ab")
        self.daemon = subprocess.Popen(["containerd", "--config", str(self.w / "containerd.toml")],
                                       stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
        deadline = time.monotonic() + 30
        while subprocess.run(self.ctr("version"), capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.daemon.poll() is not None:
                raise RuntimeError("containerd did not start: " + (self.w / "containerd.log").read_text()[-2000:])
            time.sleep(0.1)
        subprocess.run(self.ctr("images", "import", str(self.w / "busybox.tar")), check=True, capture_output=True)
        for name in self.runtimes:
            (self.w / "ctr-root" / name).mkdir(parents=True)
        self.engines.append("containerd")

    def ctr_cmd(self, rt: str, binary: str) -> list[str]:
        self.counter += 1
        return self.ctr("run", "--runc-binary", binary, "--runc-root", str(self.w / "ctr-root" / rt),
                        "--fifo-dir", str(self.w / "fifo"), "--rm", IMG, f"bench-{self.counter}", "true")

    def stop_containerd(self) -> None:
        if self.daemon is None:
            return
        if self.daemon.poll() is None:
            c = self.ctr
            for args in (("tasks", "ls", "-q"), ("containers", "ls", "-q")):
                ids = subprocess.run(c(*args), capture_output=True, text=True).stdout.split()
                for cid in ids:
                    if args[0] == "tasks":
                        subprocess.run(c("tasks", "kill", "-a", "-s", "KILL", cid), capture_output=True, timeout=20)
                        subprocess.run(c("tasks", "rm", "-f", cid), capture_output=True, timeout=20)
                    else:
                        subprocess.run(c("containers", "rm", cid), capture_output=True, timeout=20)
                    self.problems.append(f"containerd: {args[0]} {cid} was left; removed")
            subprocess.run(c("images", "rm", IMG), capture_output=True, timeout=20)
            self.daemon.terminate()
            try:
                self.daemon.wait(15)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()

    # --- podman -------------------------------------------------------------------------------

    def setup_podman(self) -> None:
        w = self.w
        for d in ("proot", "runroot", "ptmp", "net"):
            (w / d).mkdir()
        names = ", ".join(f'"{n}"' for n in ["crun", "runc", *self.runtimes])
        (w / "containers.conf").write_text(f"""[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
log_driver = "k8s-file"

[network]
network_config_dir = "{w}/net"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{w}/events.log"
tmp_dir = "{w}/ptmp"
volume_path = "{w}/volumes"
static_dir = "{w}/proot/libpod"
lock_type = "file"
runtime_supports_json = [{names}]
""")
        (w / "storage.conf").write_text(f"""[storage]
driver = "overlay"
graphroot = "{w}/proot"
runroot = "{w}/runroot"
""")
        (w / "registries.conf").write_text("")
        self.env.update(CONTAINERS_CONF=str(w / "containers.conf"), CONTAINERS_STORAGE_CONF=str(w / "storage.conf"),
                        CONTAINERS_REGISTRIES_CONF=str(w / "registries.conf"))
        subprocess.run(["podman", "load", "-i", str(w / "busybox.tar")], check=True, capture_output=True, env=self.env)
        self.engines.append("podman")

    def podman_cmd(self, rt: str, binary: str) -> list[str]:
        return ["podman", "--runtime", binary, "run", "--rm", "--network=none", IMG, "true"]

    def stop_podman(self) -> None:
        if "podman" not in self.engines:
            return
        for args in (["rm", "-af", "-t", "0"], ["rmi", "-af"]):
            subprocess.run(["podman", *args], capture_output=True, env=self.env, timeout=60)
        # conmon's `podman container cleanup` may still be running.
        deadline = time.monotonic() + 15
        while self.leftover_pids() and time.monotonic() < deadline:
            time.sleep(0.1)

    def leftover_pids(self) -> list[int]:
        me = os.getpid()
        out = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit() or int(p.name) == me:
                continue
            try:
                if str(self.w).encode() in (p / "cmdline").read_bytes():
                    out.append(int(p.name))
            except OSError:
                pass
        return out

    # --- measuring ----------------------------------------------------------------------------

    def timed(self, cmd: list[str]) -> tuple[float, int, str]:
        t0 = time.perf_counter_ns()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=self.env, timeout=self.a.timeout)
        t1 = time.perf_counter_ns()
        return (t1 - t0) / 1e6, p.returncode, (p.stdout + p.stderr).decode(errors="replace")

    def calls_between(self, t0: int, t1: int) -> list[dict]:
        out = []
        for ln in self.calllog.read_text().splitlines():
            f = ln.split()
            if len(f) < 5:
                continue
            start = int(f[0])
            if t0 <= start <= t1:
                verb = next((x for x in f[5:] if x in VERBS), "?")
                out.append({"wall_ms": int(f[1]) / 1e6, "cpu_ms": (int(f[2]) + int(f[3])) / 1000, "code": int(f[4]),
                            "verb": verb, "args": f[5:]})
        return out

    def run(self) -> dict:
        pairs = [(e, rt) for e in self.engines for rt in self.runtimes]
        data = {f"{e}/{rt}": {"wall_ms": [], "wrapped_wall_ms": [], "runtime_wall_ms": [], "runtime_cpu_ms": [],
                             "calls": []} for e, rt in pairs}
        fails: list[str] = []
        loads = []
        for i in range(-self.a.warmup, self.a.runs):
            order = [(e, rt, wrapped) for e, rt in pairs for wrapped in (False, True)]
            random.Random(self.a.seed * 1_000_003 + i).shuffle(order)
            loads.append(os.getloadavg()[0])
            for e, rt, wrapped in order:
                binary = self.wrapped[rt] if wrapped else self.runtimes[rt]
                cmd = self.ctr_cmd(rt, binary) if e == "containerd" else self.podman_cmd(rt, binary)
                t0 = time.time_ns()
                try:
                    wall, code, out = self.timed(cmd)
                except subprocess.TimeoutExpired:
                    fails.append(f"{e}/{rt}: timed out after {self.a.timeout:g}s")
                    continue
                t1 = time.time_ns()
                if code != 0:
                    fails.append(f"{e}/{rt}{' (wrapped)' if wrapped else ''}: exit {code}: {out.strip()[-300:]}")
                    continue
                if i < 0:
                    continue
                d = data[f"{e}/{rt}"]
                if wrapped:
                    calls = self.calls_between(t0, t1)
                    d["wrapped_wall_ms"].append(wall)
                    d["runtime_wall_ms"].append(sum(c["wall_ms"] for c in calls))
                    d["runtime_cpu_ms"].append(sum(c["cpu_ms"] for c in calls))
                    d["calls"].append([c["verb"] for c in calls])
                    per: dict[str, float] = {}
                    for c in calls:
                        per[c["verb"]] = per.get(c["verb"], 0.0) + c["wall_ms"]
                    for verb, ms in per.items():
                        d.setdefault("verbs", {}).setdefault(verb, []).append(ms)
                else:
                    d["wall_ms"].append(wall)
            log(f"iteration {i + 1}/{self.a.runs} done; load {os.getloadavg()[0]:.1f}")
        res = {}
        for key, d in data.items():
            r = {}
            for k in ("wall_ms", "wrapped_wall_ms", "runtime_wall_ms", "runtime_cpu_ms"):
                v = d[k]
                if v:
                    q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0], v[0], v[0]]
                    r[k] = {"n": len(v), "min": min(v), "q1": q[0], "median": statistics.median(v), "q3": q[2],
                            "max": max(v), "samples": [round(x, 3) for x in v]}
            r["calls"] = d["calls"][-1] if d["calls"] else []
            # Per verb: the median wall time of its calls in one engine command (summed).
            r["verb_wall_ms"] = {verb: round(statistics.median(v), 2) for verb, v in d.get("verbs", {}).items()}
            res[key] = r
        return {"pairs": res, "failures": fails, "loadavg_per_iteration": [round(x, 2) for x in loads]}


def markdown(res: dict) -> str:
    env = res["environment"]
    out = [f"Measured {env['date']} on {env['cpus']} CPUs, kernel {env['kernel']}; {res['args']['runs']} interleaved "
           f"iterations (+{res['args']['warmup']} warm-up); load average (1 min) {env['loadavg_min']:.1f}–"
           f"{env['loadavg_max']:.1f} over the iterations. Engines: {env['engines']}.", "",
           "| engine | runtime | end to end, median (ms) | q1–q3 | min–max | − runc | runtime's calls (wall) | runtime CPU | engine's own (e2e − runtime) | runtime share | calls (median wall per verb, ms) |",
           "|---|---|---:|---|---|---:|---:|---:|---:|---:|---|"]
    pairs = res["measures"]["pairs"]
    for key, r in pairs.items():
        e, rt = key.split("/")
        if "wall_ms" not in r:
            out.append(f"| {e} | {rt} | — | | | | | | | | |")
            continue
        w = r["wall_ms"]
        ref = pairs.get(f"{e}/runc", {}).get("wall_ms")
        diff = f"{w['median'] - ref['median']:+.1f}" if ref else "—"
        rw = r.get("runtime_wall_ms", {}).get("median")
        rc = r.get("runtime_cpu_ms", {}).get("median")
        own = f"{w['median'] - rw:.1f}" if rw is not None else "—"
        share = f"{100 * rw / w['median']:.0f} %" if rw is not None else "—"
        vw = r.get("verb_wall_ms", {})
        calls = ", ".join(f"{v} {vw[v]:.1f}" for v in dict.fromkeys(r.get("calls", [])) if v in vw)
        out.append(f"| {e} | {rt} | **{w['median']:.1f}** | {w['q1']:.1f}–{w['q3']:.1f} | {w['min']:.1f}–{w['max']:.1f} | "
                   f"{diff} | {rw if rw is None else f'{rw:.1f}'} | {rc if rc is None else f'{rc:.1f}'} | {own} | {share} | {calls} |")
    if res["measures"].get("failures"):
        out += ["", "Failed commands (left out):", ""] + [f"- {f}" for f in res["measures"]["failures"][:12]]
    if res.get("problems"):
        out += ["", "Problems:", ""] + [f"- {p}" for p in res["problems"]]
    return "\n".join(out) + "\n"


def check(res: dict) -> list[str]:
    errs = []
    if not res["environment"]["engines"]:
        return []  # neither engine is installed: nothing to check
    for key, r in res["measures"]["pairs"].items():
        for k in ("wall_ms", "runtime_wall_ms"):
            s = r.get(k)
            if not s or not (s["min"] <= s["median"] <= s["max"]):
                errs.append(f"{key} {k}: missing or malformed")
        if not r.get("calls"):
            errs.append(f"{key}: no runtime call was logged")
    return errs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--berth", required=True)
    ap.add_argument("--runc", default=shutil.which("runc"))
    ap.add_argument("--crun", default=shutil.which("crun"))
    ap.add_argument("--engines", default="containerd,podman")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", default=str(HERE / "results/engines.json"))
    ap.add_argument("--markdown", default=str(HERE / "results/engines.md"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("engines: must run as root", file=sys.stderr)
        return 2
    smoke_out = None
    if a.smoke:
        a.runs, a.warmup = 1, 0
        if a.json == ap.get_default("json"):  # CI: results go to a temporary directory
            smoke_out = Path(tempfile.mkdtemp(prefix="berth-engines-smoke."))
            a.json, a.markdown = str(smoke_out / "engines.json"), str(smoke_out / "engines.md")
    runtimes = {"berth": os.path.abspath(a.berth)}
    for n, p in (("crun", a.crun), ("runc", a.runc)):
        if p and os.access(p, os.X_OK):
            runtimes[n] = os.path.abspath(p)
    wanted = [e for e in a.engines.split(",") if e]
    have = {"containerd": bool(shutil.which("containerd") and shutil.which("ctr")),
            "podman": bool(shutil.which("podman") and shutil.which("conmon"))}
    skipped = [f"{e}: not installed" for e in wanted if not have.get(e)]

    work = Path(tempfile.mkdtemp(prefix="berth-engines.", dir="/tmp"))
    os.chmod(work, 0o711)
    # What the engines may leave outside the work directory, to remove at the end.
    watched = ["/run/containerd/s", "/run/containerd/fifo", "/run/containerd/runc"]
    made = [d for d in watched if not os.path.exists(d)]
    # Made by the engines when absent (containers/image keeps a blob-info cache there for root):
    # removed at the end if they did not exist before.
    fresh = [d for d in ("/var/lib/containers", "/run/containerd") if not os.path.exists(d)]
    before = {d: set(os.listdir(d)) if os.path.isdir(d) else set() for d in watched}
    # Equal conditions, as in bench.py: the engines (and so the runtimes) run in a mount
    # namespace of the driver's where /sys/fs/cgroup/unified, the cgroup2 part of this
    # machine's hybrid layout that crun 1.8 refuses, is an empty tmpfs: all see cgroup v1.
    # Whatever the engines mount (podman's overlays) goes away with the namespace.
    B.sys_unshare(B.CLONE_NEWNS)
    B.sys_mount(None, "/", None, B.MS_REC | B.MS_PRIVATE)
    fake = None
    if os.path.ismount("/sys/fs/cgroup/unified"):
        fake = "/sys/fs/cgroup/unified/"
        B.sys_umount2("/sys/fs/cgroup/unified", B.MNT_DETACH)
        B.sys_mount("tmpfs", "/sys/fs/cgroup/unified", "tmpfs", B.MS_NOSUID | B.MS_NODEV, "mode=755")
    mounts0, cgroups0 = mounts(), cgroups()
    res: dict = {"args": vars(a), "skipped": skipped, "problems": []}
    eng = None
    rc = 0
    load0 = os.getloadavg()[0]
    try:
        rtwrap = build_rtwrap(work)
        sh_common(f"it_build_image {work}/busybox.tar {IMG} '{BUSYBOX_CONFIG}'", {"W": str(work)})
        eng = Engines(a, work, runtimes, rtwrap)
        if "containerd" in wanted and have["containerd"]:
            eng.start_containerd()
        if "podman" in wanted and have["podman"]:
            eng.setup_podman()
        log(f"engines {eng.engines}, runtimes {list(runtimes)}; {a.runs} iterations")
        res["measures"] = eng.run()
    except Exception as e:  # noqa: BLE001 — clean up whatever happened
        print(f"engines: {e}", file=sys.stderr)
        res["problems"].append(str(e).splitlines()[0] if str(e) else repr(e))
        res.setdefault("measures", {"pairs": {}, "failures": [], "loadavg_per_iteration": []})
        rc = 1
    finally:
        if eng:
            try:
                eng.stop_podman()
            except Exception as e:  # noqa: BLE001
                res["problems"].append(f"podman clean-up: {e}")
            eng.stop_containerd()
            left = eng.leftover_pids()
            for pid in left:
                res["problems"].append(f"process left: {pid}; killed")
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            res["problems"] += eng.problems
        for m in sorted(mounts() - mounts0, key=len, reverse=True):
            if m.startswith(str(work)) or m.startswith("/run/containerd"):
                subprocess.run(["umount", m], capture_output=True) .returncode and \
                    subprocess.run(["umount", "-l", m], capture_output=True)
        for c in sorted(cgroups() - cgroups0, key=len, reverse=True):
            if fake and c.startswith(fake):
                continue  # the stand-in tmpfs: goes with the namespace
            try:
                procs = Path(c, "cgroup.procs").read_text().split()
            except OSError:
                procs = []
            for p in procs:
                try:
                    os.kill(int(p), 9)
                except OSError:
                    pass
            try:
                os.rmdir(c)
            except OSError as e:
                res["problems"].append(f"cgroup {c}: {e}")
        for d in watched:
            if os.path.isdir(d):
                for n in set(os.listdir(d)) - before[d]:
                    shutil.rmtree(os.path.join(d, n), ignore_errors=True)
        for d in sorted(made, key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass
        # Only what the engines are known to leave, and then the directories if empty: another
        # engine on this machine may have started using them meanwhile.
        for d in fresh:
            try:
                os.unlink(os.path.join(d, "cache/blob-info-cache-v1.boltdb"))
            except OSError:
                pass
            for sub in ("cache", "s", "fifo", "runc", ""):
                try:
                    os.rmdir(os.path.join(d, sub) if sub else d)
                except OSError:
                    pass
        shutil.rmtree(work, ignore_errors=True)
    loads = res["measures"].get("loadavg_per_iteration") or [load0]
    res["environment"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "kernel": platform.release(),
                          "cpus": os.cpu_count(), "loadavg_min": min(loads), "loadavg_max": max(loads),
                          "engines": ", ".join(eng.engines) if eng else "", "runtimes": runtimes}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=1))
    md = markdown(res)
    Path(a.markdown).write_text(md)
    print(md)
    for s in skipped:
        print(f"engines: skipped {s}", file=sys.stderr)
    if a.smoke:
        errs = check(json.loads(Path(a.json).read_text()))
        for e in errs:
            print(f"engines: check: {e}", file=sys.stderr)
        if smoke_out:
            shutil.rmtree(smoke_out, ignore_errors=True)
        if errs or rc:
            return 1
        print("[engines] check: output parses and holds every figure", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
