"""Shared helpers of ``bench_serve_v1.py`` and ``bench_serve_v2.py``.

The measuring is done by the anchor harness (``/work/shared/anchor-bench/run_bench.py``,
override with ``ANCHOR_BENCH``), run as a subprocess; this module prepares corpora, runs
it, reads back its JSON and turns the samples into hgwire/hg comparison tables. It also
runs the one thing the harness cannot: many concurrent clones from one server.

``python bench/_harness.py --anchor-clients JSON -- ARGS`` runs the harness's ``main``
with extra client kinds (``{name: {scenario: argv}}``) added to its table; that is how
the SSH row with the ``hgwire-hg`` shim as remote command is measured.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("HGWIRE_CACHE", Path.home() / ".cache" / "hgwire"))
ANCHOR = Path(os.environ.get("ANCHOR_BENCH", "/work/shared/anchor-bench"))
HG60 = os.environ.get("HG60") or str(CACHE / "hg-6.0" / "bin" / "hg")
HG72 = os.environ.get("HG72") or str(CACHE / "hg-7.2.4" / "bin" / "hg")
HGWIRE = os.environ.get("HGWIRE") or str(ROOT / ".venv" / "bin" / "hgwire")
SHIM = str(Path(shlex.split(HGWIRE)[0]).with_name("hgwire-hg"))
BENCH_ROOT = Path(os.environ.get("HGWIRE_BENCH_DIR", "/dev/shm/hgwire-bench"))
CORPUS_DIR = Path(os.environ.get("CORPUS_DIR") or BENCH_ROOT / "corpus")
# scratch space of this run only: two runs sharing one would delete each other's clones
WORK = Path(os.environ.get("BENCH_WORK") or BENCH_ROOT / "work" / str(os.getpid()))
HG10K_TAR = Path(os.environ.get("HG10K_TAR", "/work/shared/corpus/hg-history-10k.tar.gz"))


def _work() -> Path:
    """WORK, created on first use (and removed at exit unless BENCH_WORK named it)."""
    if not WORK.exists():
        WORK.mkdir(parents=True)
        if "BENCH_WORK" not in os.environ:
            atexit.register(shutil.rmtree, WORK, True)
    return WORK


def hg_env() -> dict[str, str]:
    """Environment of every hg process: no config files, plain output."""
    env = dict(os.environ)
    env.update(HGRCPATH="", HGPLAIN="1", HGENCODING="utf-8", LC_ALL="C")
    return env


def hg(exe: str, *args: str | os.PathLike[str]) -> str:
    out = subprocess.run([exe, *map(str, args)], env=hg_env(), check=True, capture_output=True)
    return out.stdout.decode()


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, file=sys.stderr, flush=True)


# --- corpora ---------------------------------------------------------------------------------


def prepare_hg10k(name: str = "hg10k") -> Path:
    """The real 10k corpus unpacked below CORPUS_DIR, public, caches warm (like the
    harness's ``make_corpus.sh hg10k``)."""
    dest = CORPUS_DIR / name
    if (dest / ".hg" / "store" / "00changelog.i").is_file():
        return dest
    tmp = CORPUS_DIR / (name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(HG10K_TAR) as tf:
        tf.extractall(tmp, filter="data")
    hg(HG60, "-R", tmp, "phase", "--public", "-r", "all()", "--force")
    hg(HG60, "-R", tmp, "debugupdatecaches")
    tmp.rename(dest)
    return dest


def copy_corpus(src: Path, name: str, hgrc: str | None = None) -> Path:
    """A copy of ``src`` below CORPUS_DIR (hardlinked store) with its own ``.hg/hgrc``."""
    dest = CORPUS_DIR / name
    if not (dest / ".hg").is_dir():
        tmp = CORPUS_DIR / (name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["cp", "-al", str(src), str(tmp)], check=True)
        tmp.rename(dest)
    hgrc_path = dest / ".hg" / "hgrc"
    if hgrc is None:
        hgrc_path.unlink(missing_ok=True)
    else:
        hgrc_path.write_text(hgrc)
    return dest


def corpus_facts(path: Path) -> str:
    n = int(hg(HG72, "-R", path, "log", "-r", "tip", "-T", "{rev}")) + 1
    merges = len(hg(HG72, "-R", path, "log", "-r", "merge()", "-T", "x\n").split())
    files = len(hg(HG72, "-R", path, "files", "-r", "tip").split())
    size = sum(p.stat().st_size for p in (path / ".hg" / "store").rglob("*") if p.is_file())
    return f"{n} changesets ({merges} merges), {files} files at tip, store {size / 1e6:.1f} MB"


# --- the anchor harness ----------------------------------------------------------------------


def free_port_base(count: int = 8, start: int = 31000) -> int:
    """First of ``count`` consecutive free ports on 127.0.0.1 (and their +500 relays)."""
    base = start + (os.getpid() % 200) * 20
    while True:
        ok = True
        for port in [*range(base, base + count), *range(base + 500, base + 500 + count)]:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
        base += count + 1


def run_anchor(
    rows: Sequence[str],
    corpora: Sequence[Path],
    out: Path,
    *,
    rounds: int,
    warmup: int = 1,
    scenarios: Sequence[str] = ("clone",),
    extra_clients: dict[str, dict[str, list[str]]] | None = None,
    count_bytes: bool = False,
) -> dict[str, Any]:
    """Run the anchor harness; its JSON (raw samples), markdown and log go to ``out.*``."""
    env = dict(os.environ)
    env.update(
        HG60=HG60,
        HG72=HG72,
        HGWIRE=HGWIRE,
        CORPUS_DIR=str(CORPUS_DIR),
        BENCH_WORK=str(WORK),
        BENCH_PORT_BASE=str(free_port_base(len(rows) + 1)),
    )
    _work()
    args = [
        "-n", str(rounds), "--warmup", str(warmup),
        "--corpora", ",".join(str(c) for c in corpora),
        "--rows", ",".join(rows),
        "--scenarios", ",".join(scenarios),
        "--ref", rows[0],
        "--json", f"{out}.json", "--md", f"{out}.md",
    ]  # fmt: skip
    if not count_bytes:
        args.append("--no-bytes")
    if extra_clients:
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--anchor-clients",
            json.dumps(extra_clients),
            "--",
            *args,
        ]
    else:
        argv = [sys.executable, str(ANCHOR / "run_bench.py"), *args]
    log("running " + " ".join(shlex.quote(a) for a in argv))
    with open(f"{out}.log", "wb") as fh:
        subprocess.run(argv, env=env, check=True, stdout=fh, cwd=ANCHOR)
    with open(f"{out}.json") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _anchor_with_clients(spec: str, args: list[str]) -> None:
    """Run the harness in this process with extra client kinds."""
    sys.path.insert(0, str(ANCHOR))
    import run_bench  # type: ignore[import-not-found]

    run_bench.CLIENTS.update(json.loads(spec))
    sys.argv = [str(ANCHOR / "run_bench.py"), *args]
    run_bench.main()


def ssh_clients() -> dict[str, dict[str, list[str]]]:
    """Client kind ``hg72sshwire``: hg 7.2.4 over the harness's ssh stand-in with the
    ``hgwire-hg`` shim as remote command (row ``ssh72/hg72sshwire``)."""
    ssh = ["--ssh", str(ANCHOR / "ssh_local.sh"), "--remotecmd", SHIM]
    return {
        "hg72sshwire": {
            "clone": [HG72, "clone", "-U", *ssh, "{url}", "{dest}"],
            "pull": [HG72, "-R", "{dest}", "pull", *ssh, "{url}"],
            "id": [HG72, "id", "-r", "tip", *ssh, "{url}"],
        }
    }


# --- tables ----------------------------------------------------------------------------------


@dataclass
class Cell:
    n: int
    failed: int
    wall: float | None
    server_cpu: float | None
    client_cpu: float | None
    server_rss_mb: float | None
    runs: list[dict[str, Any]]
    bytes_s2c: int | None = None


def _med(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def cell(data: dict[str, Any], corpus: str, row: str, scenario: str = "clone") -> Cell | None:
    for r in data["runs"]:
        if r["corpus"] == corpus and r["row"] == row and r["scenario"] == scenario:
            ok = [x for x in r["runs"] if x["rc"] == 0]
            rss = _med([x.get("server_rss_kb") for x in ok])
            return Cell(
                n=len(ok),
                failed=len(r["runs"]) - len(ok),
                wall=_med([x["wall"] for x in ok]),
                server_cpu=_med([x.get("server_cpu") for x in ok]),
                client_cpu=_med([x.get("client_cpu") for x in ok]),
                server_rss_mb=None if rss is None else rss / 1024,
                runs=ok,
                bytes_s2c=(r.get("bytes") or {}).get("bytes_s2c"),
            )
    return None


def paired_ratio(a: Cell, b: Cell, key: str) -> float | None:
    """Median over rounds of a[key] / b[key] (same round = same machine state)."""
    other = {x["round"]: x.get(key) for x in b.runs}
    ratios = []
    for x in a.runs:
        den = other.get(x["round"])
        if x.get(key) is not None and den:
            ratios.append(x[key] / den)
    return _med(ratios)


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def comparison_table(
    data: dict[str, Any],
    corpus: str,
    rows: Sequence[tuple[str, str]],
    ref: str,
    targets: dict[str, dict[str, float]] | None = None,
    scenario: str = "clone",
) -> str:
    """Markdown: one line per (row, label); ratios are per-round against ``ref``.

    ``targets`` maps a row to ``{"cpu"|"wall": maximum ratio against ref}``.
    """
    refc = cell(data, corpus, ref, scenario) if ref else None
    ref = ref or "ref"
    lines = [
        "| row | n | wall s | server CPU s | client CPU s | server peak RSS MB | MB s->c "
        f"| wall x {ref} | server CPU x {ref} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for row, label in rows:
        label = label.replace("|", "\\|")
        c = cell(data, corpus, row, scenario)
        if c is None:
            lines.append(f"| {label} | - | not run | | | | | | |")
            continue
        rw = rc = None
        if refc is not None and row != ref:
            rw = paired_ratio(c, refc, "wall")
            rc = paired_ratio(c, refc, "server_cpu")
            for key, val in (("wall", rw), ("cpu", rc)):
                limit = (targets or {}).get(row, {}).get(key)
                if limit is not None and val is not None:
                    ok = "met" if val <= limit else "MISSED"
                    verdicts.append(f"{label}: {key} ratio {val:.2f} (target <= {limit}): {ok}")
        failed = f" ({c.failed} failed)" if c.failed else ""
        lines.append(
            f"| {label} | {c.n}{failed} | {fmt(c.wall, '.3f')} | {fmt(c.server_cpu)} "
            f"| {fmt(c.client_cpu)} | {fmt(c.server_rss_mb, '.0f')} "
            f"| {fmt(c.bytes_s2c and c.bytes_s2c / 1e6, '.1f')} | {fmt(rw)} | {fmt(rc)} |"
        )
    text = "\n".join(lines) + "\n"
    if verdicts:
        text += "\n" + "\n".join(f"* {v}" for v in verdicts) + "\n"
    return text


def load_note(data: dict[str, Any]) -> str:
    loads = [r["loadavg_after"][0] for r in data.get("rounds", [])]
    start = data.get("machine", {}).get("loadavg_start", ["?"])[0]
    return f"load average (1 min) at start {start}, after each round {', '.join(loads)}"


# --- concurrent clones -----------------------------------------------------------------------


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    data = fh.read()
                ppid = int(data[data.rindex(b")") + 2 :].split()[1])
            except (OSError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_cpu(root: int) -> float:
    total = 0
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                data = fh.read()
            total += sum(int(x) for x in data[data.rindex(b")") + 2 :].split()[11:15])
        except (OSError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def hgwire_server(repo: Path, logfile: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``$HGWIRE serve`` on a free 127.0.0.1 port; stopped by pid (and its children's)."""
    with server_process(
        lambda port: [*shlex.split(HGWIRE), "serve", "--port", str(port), str(repo)], logfile
    ) as srv:
        yield srv


@contextlib.contextmanager
def hg_server(
    hg_exe: str, repo: Path, logfile: Path, extra: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``hg serve`` on a free 127.0.0.1 port (no access log); stopped by pid."""

    def argv(port: int) -> list[str]:
        return [hg_exe, "-R", str(repo), "serve", "-a", "127.0.0.1", "-p", str(port),
                "-A", os.devnull, *extra]  # fmt: skip

    with server_process(argv, logfile) as srv:
        yield srv


@contextlib.contextmanager
def server_process(argv: Any, logfile: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start ``argv(port)`` on a free port, wait for the port; SIGTERM its tree after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(logfile, "wb") as fh:
        proc = subprocess.Popen(
            argv(port), stdout=fh, stderr=subprocess.STDOUT, env=hg_env(), start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited, see {logfile}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not open its port") from None
                time.sleep(0.05)
        yield proc, f"http://127.0.0.1:{port}/"
    finally:
        pids = _tree(proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()


def raw_stream(repo: Path, rounds: int) -> str:
    """Interleaved rounds: ``curl ?cmd=stream_out`` (legacy stream, to /dev/null) from
    ``hg serve`` (7.2.4, ``server.uncompressed``) and ``hgwire serve``, and ``tar | tar``
    of the store; medians of wall and server CPU. The server's share of a stream clone."""
    work = _work() / "rawstream"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    walls: dict[str, list[float]] = {"hg": [], "hgwire": [], "tar": []}
    cpus: dict[str, list[float]] = {"hg": [], "hgwire": []}
    sizes: dict[str, int] = {}
    with (
        hg_server(HG72, repo, work / "hg.log", ["--config", "server.uncompressed=true"]) as hgs,
        hgwire_server(repo, work / "hgwire.log") as hws,
    ):
        servers = {"hg": hgs, "hgwire": hws}
        for rnd in range(rounds + 1):
            for name, (proc, url) in servers.items():
                cpu0 = _tree_cpu(proc.pid)
                t0 = time.perf_counter()
                curl = ["curl", "-sS", "-o", os.devnull, "-w", "%{size_download}"]
                r = subprocess.run(
                    [*curl, url + "?cmd=stream_out"], check=True, capture_output=True
                )
                wall = time.perf_counter() - t0
                time.sleep(0.02)
                if rnd:
                    walls[name].append(wall)
                    cpus[name].append(_tree_cpu(proc.pid) - cpu0)
                sizes[name] = int(r.stdout)
            dest = work / "tar"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            t0 = time.perf_counter()
            subprocess.run(["sh", "-c", 'tar cf - -C "$1/.hg" store | tar xf - -C "$2"', "x",
                            str(repo), str(dest)], check=True)  # fmt: skip
            if rnd:
                walls["tar"].append(time.perf_counter() - t0)
    shutil.rmtree(work, ignore_errors=True)

    def ratio(a: str) -> float | None:
        return _med([x / y for x, y in zip(walls[a], walls["tar"], strict=True) if y])

    lines = [
        "| raw stream_out | bytes | wall s | server CPU s | x tar |",
        "|---|---|---|---|---|",
    ]
    for name in ("hg", "hgwire"):
        lines.append(
            f"| {name} serve | {sizes[name]} | {fmt(_med(walls[name]), '.3f')} "
            f"| {fmt(_med(cpus[name]))} | {fmt(ratio(name))} |"
        )
    lines.append(f"| tar c \\| tar x | - | {fmt(_med(walls['tar']), '.3f')} | - | 1.00 |")
    return "\n".join(lines) + "\n"


def concurrent_clones(
    repo: Path, client: Sequence[str], count: int, verify: int, label: str
) -> dict[str, Any]:
    """``count`` simultaneous ``client clone -U URL DEST`` from one warm hgwire server."""
    work = _work() / f"concurrent-{label}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    expect_n = int(hg(HG72, "-R", repo, "log", "-r", "tip", "-T", "{rev}")) + 1
    expect_heads = sorted(hg(HG72, "-R", repo, "heads", "-T", "{node}\n").split())
    with hgwire_server(repo, work / "server.log") as (proc, url):
        subprocess.run([*client, "id", "-r", "tip", url], env=hg_env(), check=True,
                       capture_output=True)  # fmt: skip
        for pid in _tree(proc.pid):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as fh:
                fh.write("5")
        rss_before = sum(_status_kb(p, "VmRSS") for p in _tree(proc.pid))
        cpu0 = _tree_cpu(proc.pid)
        t0 = time.perf_counter()
        clients = []
        for i in range(count):
            lf = open(work / f"client-{i}.log", "wb")  # noqa: SIM115
            argv = [*client, "clone", "-U", url, str(work / f"clone-{i}")]
            clients.append((subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT,
                                             env=hg_env()), lf))  # fmt: skip
        peak_sum = 0
        while any(p.poll() is None for p, _ in clients):
            peak_sum = max(peak_sum, sum(_status_kb(p, "VmRSS") for p in _tree(proc.pid)))
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        cpu = _tree_cpu(proc.pid) - cpu0
        hwm = max(_status_kb(p, "VmHWM") for p in _tree(proc.pid))
    rcs = [p.returncode for p, _ in clients]
    for _, lf in clients:
        lf.close()
    complete = 0
    for i in range(count):
        if rcs[i] != 0:
            continue
        dest = work / f"clone-{i}"
        n = int(hg(HG72, "-R", dest, "log", "-r", "tip", "-T", "{rev}")) + 1
        heads = sorted(hg(HG72, "-R", dest, "heads", "-T", "{node}\n").split())
        complete += n == expect_n and heads == expect_heads
    verified = 0
    for i in [j for j in range(count) if rcs[j] == 0][:verify]:
        r = subprocess.run([HG72, "-R", str(work / f"clone-{i}"), "verify", "-q"],
                           env=hg_env(), capture_output=True)  # fmt: skip
        verified += r.returncode == 0
    result = {
        "count": count,
        "succeeded": sum(rc == 0 for rc in rcs),
        "complete": complete,
        "verified": verified,
        "verify_sample": min(verify, sum(rc == 0 for rc in rcs)),
        "wall": wall,
        "server_cpu": cpu,
        "server_hwm_mb": hwm / 1024,
        "server_rss_sum_peak_mb": peak_sum / 1024,
        "server_rss_before_mb": rss_before / 1024,
        "load": f"{os.getloadavg()[0]:.1f}",
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def concurrent_table(r: dict[str, Any]) -> str:
    return (
        "| clones | succeeded | complete (changesets+heads) | hg verify ok | total wall s "
        "| server CPU s | server peak RSS MB (before) |\n|---|---|---|---|---|---|---|\n"
        f"| {r['count']} | {r['succeeded']} | {r['complete']} "
        f"| {r['verified']}/{r['verify_sample']} | {r['wall']:.1f} | {r['server_cpu']:.1f} "
        f"| {r['server_hwm_mb']:.0f} ({r['server_rss_before_mb']:.0f}) |\n"
    )


# --- profiling -------------------------------------------------------------------------------

PY_SPY = os.environ.get("PY_SPY") or str(Path(shlex.split(HGWIRE)[0]).with_name("py-spy"))


def profile_clone(
    repo: Path, client: Sequence[str], out: Path, rate: int = 250, repeat: int = 1
) -> str:
    """py-spy samples of a warm ``hgwire serve`` during ``repeat`` successive
    ``client clone -U``; a markdown summary (top functions, self and inclusive %)."""
    work = _work() / "profile"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    raw = Path(f"{out}.pyspy.txt")
    with hgwire_server(repo, work / "server.log") as (proc, url):
        subprocess.run([*client, "id", "-r", "tip", url], env=hg_env(), check=True,
                       capture_output=True)  # fmt: skip
        spy = subprocess.Popen(
            [PY_SPY, "record", "--pid", str(proc.pid), "--rate", str(rate), "--format", "raw",
             "--output", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=open(f"{out}.pyspy.log", "wb"),  # noqa: SIM115
        )  # fmt: skip
        time.sleep(1.0)
        t0 = time.perf_counter()
        for i in range(repeat):
            subprocess.run([*client, "clone", "-U", url, str(work / f"clone{i}")], env=hg_env(),
                           check=True, capture_output=True)  # fmt: skip
        wall = (time.perf_counter() - t0) / repeat
        time.sleep(0.3)
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    shutil.rmtree(work, ignore_errors=True)
    what = "one clone" if repeat == 1 else f"{repeat} clones"
    return summarize_profile(raw, f"{what}, {wall:.1f}s wall each under py-spy --rate {rate}")


def summarize_profile(raw: Path, title: str, top: int = 25) -> str:
    """Collapsed stacks (``a;b;c count``) to self / inclusive shares per function."""
    total = 0
    selfc: dict[str, int] = {}
    incl: dict[str, int] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        leaf = _short(frames[-1])
        selfc[leaf] = selfc.get(leaf, 0) + n
        for f in {_short(f) for f in frames}:
            incl[f] = incl.get(f, 0) + n
    if not total:
        return f"{title}: no samples\n"
    lines = [f"{title}: {total} samples (busy threads only)", "", "| function | self % |",
             "|---|---|"]  # fmt: skip
    for f, n in sorted(selfc.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| `{f}` | {100 * n / total:.1f} |")
    lines += ["", "| function (inclusive, hgwire only) | incl % |", "|---|---|"]
    ours = [(f, n) for f, n in incl.items() if "hgwire/" in f]
    for f, n in sorted(ours, key=lambda kv: -kv[1])[:top]:
        lines.append(f"| `{f}` | {100 * n / total:.1f} |")
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")").rsplit(":", 1)[0]
    for cut in ("site-packages/", "/src/", "lib/python3.11/"):
        if cut in loc:
            loc = loc.split(cut, 1)[1]
            break
    return f"{name} ({loc})" if loc else name


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--anchor-clients" and sys.argv[3] == "--":
        _anchor_with_clients(sys.argv[2], sys.argv[4:])
    else:
        sys.exit(__doc__)
