"""Running the project's commands from the repository root, their peak memory, and the stamp of a timing's machine."""
import contextlib
import datetime
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import ROOT


def machine():
    """Where a timing was measured: what the numbers depend on, and the load when the measurement started."""
    import numpy
    info = {"platform": platform.platform(), "python": platform.python_version(), "numpy": numpy.__version__,
            "cpus": len(os.sched_getaffinity(0)), "cpu": None, "memory_gib": None, "torch": None,
            "torch_cpu_capability": None, "load_average": round(os.getloadavg()[0], 2)}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2 ** 20)
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    with contextlib.suppress(Exception):
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def stamp(info=None):
    """A timing's ``machine``, ``date`` and one-line ``stamp`` for the pages."""
    info = info or machine()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    text = (f"torch {info['torch']} ({info['torch_cpu_capability']}), NumPy {info['numpy']}, Python {info['python']}, "
            f"{info['cpu'] or 'a CPU'}, {info['cpus']} cores, {info['memory_gib']} GiB, load average "
            f"{info['load_average']:g} at the start, {date}")
    return {"machine": info, "date": date, "stamp": text}


def environment_key(info):
    """What the deterministic figures of a torch run depend on: torch's version and its CPU kernels."""
    return {"torch": info.get("torch"), "torch_cpu_capability": info.get("torch_cpu_capability")}


class PeakRSS:
    """The largest peak resident set size (VmHWM) of a process and its descendants, polled while it runs."""

    def __init__(self, pid):
        self.pid, self.peak, self.done = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _tree(self):
        children = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    children.setdefault(parent, []).append(int(entry.name))
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += children.get(pid, [])
        return tree

    def _poll(self):
        while not self.done.wait(0.25):
            for pid in self._tree():
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak = max(self.peak, int(line.split()[1]) * 1024)

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.peak


def run(command, *, env=None, check=True):
    """Run ``command`` (a list) from the repository root; return (stdout, stderr, wall seconds, peak RSS bytes)."""
    started = time.perf_counter()
    process = subprocess.Popen([str(part) for part in command], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    watcher = PeakRSS(process.pid)
    stdout, stderr = process.communicate()
    seconds, peak = time.perf_counter() - started, watcher.stop()
    if check and process.returncode not in (0,):
        raise RuntimeError(f"{' '.join(map(str, command))} exited {process.returncode}:\n{stdout}\n{stderr}")
    return stdout, stderr, seconds, peak


def refwd(*arguments):
    """``refwd ARGUMENTS`` with this interpreter (the installed refwd_validation)."""
    return [sys.executable, "-m", "refwd_validation", *arguments]
