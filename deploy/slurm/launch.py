#!/usr/bin/env python
"""Start a Dask cluster on SLURM with dask-jobqueue, run one mpfpipe command on it, tear it down.

    python deploy/slurm/launch.py --jobs 8 -- mpfpipe run workflows/isbi2012-membranes.yaml --set data=/shared/isbi
    python deploy/slurm/launch.py --jobs 4 --queue compute --account proj42 -- mpfpipe train --config train.yaml
    python deploy/slurm/launch.py --dry-run                     # print the worker job script and exit

Each SLURM job is one node-sized Dask worker (settings: deploy/slurm/jobqueue.yaml). The scheduler runs in
this process, so run it where the compute nodes can reach it: inside a small allocation (recommended, e.g.
`sbatch --wrap "python deploy/slurm/launch.py ..."`) or on a login node that allows long-running processes.
The command after ``--`` gets ``--scheduler-file FILE`` appended; its exit status is this script's.

Needs dask-jobqueue (``pip install 'mpfpipe[slurm]'``) and the same Python environment, at the same path, on
the compute nodes (a shared filesystem), as well as the data, Zarr stores and run directories.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(argv):
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    else:
        command = []
    p = argparse.ArgumentParser(
        prog="launch.py", description=__doc__.split("\n\n")[0],
        epilog="Everything after -- is the command to run, e.g. -- mpfpipe train --config train.yaml")
    p.add_argument("--jobs", type=int, default=2, help="number of SLURM worker jobs (= Dask workers) [2]")
    p.add_argument("--min-workers", type=int, default=None,
                   help="start the command once this many workers joined [all --jobs]")
    p.add_argument("--wait-timeout", type=float, default=3600.0,
                   help="seconds to wait for --min-workers (jobs may queue) [3600]")
    p.add_argument("--config", type=Path, default=HERE / "jobqueue.yaml",
                   help="dask-jobqueue YAML [deploy/slurm/jobqueue.yaml]")
    p.add_argument("--scheduler-file", type=Path, default=None,
                   help="where to write the scheduler file [a temporary file, removed at the end]")
    p.add_argument("--queue", help="override jobqueue.slurm.queue (partition)")
    p.add_argument("--account", help="override jobqueue.slurm.account")
    p.add_argument("--walltime", help="override jobqueue.slurm.walltime, e.g. 08:00:00")
    p.add_argument("--cores", type=int, help="override jobqueue.slurm.cores (threads per worker)")
    p.add_argument("--memory", help="override jobqueue.slurm.memory, e.g. 120GiB")
    p.add_argument("--interface", help="override jobqueue.slurm.interface, e.g. ib0")
    p.add_argument("--dry-run", action="store_true", help="print the worker job script and the command; submit nothing")
    args = p.parse_args(argv)
    if not command and not args.dry_run:
        p.error("give the command to run after --, e.g. -- mpfpipe run workflows/quickstart.yaml")
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    return args, command


def load_config(args):
    import dask.config
    import yaml

    with open(args.config) as fh:
        cfg = yaml.safe_load(fh) or {}
    overrides = {k: getattr(args, k) for k in ("queue", "account", "walltime", "cores", "memory", "interface")}
    slurm = cfg.setdefault("jobqueue", {}).setdefault("slurm", {})
    slurm.update({k: v for k, v in overrides.items() if v is not None})
    dask.config.update(dask.config.config, cfg, priority="new")


def main(argv=None):
    args, command = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        sys.exit("launch.py: dask-jobqueue is not installed (pip install 'mpfpipe[slurm]')")
    from distributed import Client

    load_config(args)
    cluster = SLURMCluster()
    try:
        if args.dry_run:
            print(cluster.job_script())
            if command:
                print("# then: " + " ".join(command + ["--scheduler-file", "<scheduler file>"]))
            return 0
        print(f"launch.py: scheduler {cluster.scheduler_address}, dashboard {cluster.dashboard_link}",
              file=sys.stderr)
        cluster.scale(jobs=args.jobs)
        with Client(cluster) as client:
            if args.scheduler_file is None:
                fd, name = tempfile.mkstemp(prefix="mpfpipe-scheduler-", suffix=".json", dir=os.getcwd())
                os.close(fd)
                sfile, remove = Path(name), True
            else:
                sfile, remove = args.scheduler_file, False
            client.write_scheduler_file(str(sfile))
            try:
                need = args.jobs if args.min_workers is None else args.min_workers
                print(f"launch.py: waiting for {need} worker(s) (SLURM jobs may queue)...", file=sys.stderr)
                client.wait_for_workers(need, timeout=args.wait_timeout)
                full = command + ["--scheduler-file", str(sfile)]
                print("launch.py: " + " ".join(full), file=sys.stderr)
                proc = subprocess.Popen(full)
                forward = lambda signum, _frame: proc.send_signal(signum)  # noqa: E731
                old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
                try:
                    return proc.wait()
                finally:
                    for s, h in old.items():
                        signal.signal(s, h)
                    if proc.poll() is None:
                        proc.terminate()
                        proc.wait()
            finally:
                if remove:
                    sfile.unlink(missing_ok=True)
    finally:
        cluster.close()  # cancels the SLURM worker jobs


if __name__ == "__main__":
    sys.exit(main())
