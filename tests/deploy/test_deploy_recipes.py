"""Checks of the deploy/ recipes that run without Docker, Kubernetes or SLURM.

What is checked: every YAML parses; the compose services and the operator manifests have the expected shape;
every `dask ...` / `mpfpipe ...` command named in the recipes exists (and so do the flags used with it); the
Dockerfile's COPY sources exist; the shell scripts pass `bash -n`; launch.py compiles and renders a SLURM job
script; submit.sbatch runs end to end with a stand-in `srun`; and a real TLS round trip with certificates
from deploy/tls/make-certs.sh (a TLS scheduler and worker; a client with the certificate gets in, clients
without it are refused). Subprocesses are always killed in a `finally`.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
DASK = BIN / "dask" if (BIN / "dask").exists() else (shutil.which("dask") and Path(shutil.which("dask")))

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
SHELL_FILES = sorted([*DEPLOY.rglob("*.sh"), *DEPLOY.rglob("*.sbatch"), *(DEPLOY / "bin").iterdir()])
# Text files whose non-comment lines are commands (plus README code blocks and launch.py's usage lines).
COMMAND_TEXT_FILES = [DEPLOY / "bin" / "mpfpipe-job", DEPLOY / "slurm" / "submit.sbatch"]
CONTAINER_PROGRAMS = {"dask", "mpfpipe", "mpfpipe-job"}


def load_yaml(path):
    with open(path) as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def compose():
    return load_yaml(DEPLOY / "docker-compose.yml")[0]


def containers(obj):
    """Every container dict (anything inside a `containers` list) in a parsed manifest."""
    if isinstance(obj, dict):
        for key, val in obj.items():
            if key == "containers" and isinstance(val, list):
                yield from (c for c in val if isinstance(c, dict))
            else:
                yield from containers(val)
    elif isinstance(obj, list):
        for item in obj:
            yield from containers(item)


def argv_lists():
    """(source, argv) for every command given as a list: compose `command`, container `command` + `args`."""
    out = []
    for name, svc in compose()["services"].items():
        cmd = svc.get("command")
        out.append((f"docker-compose.yml:{name}", cmd if isinstance(cmd, list) else shlex.split(cmd)))
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in load_yaml(path):
            for c in containers(doc):
                out.append((f"{path.name}:{c['name']}", [str(a) for a in c.get("command", []) + c.get("args", [])]))
    return out


def command_lines():
    """(source, line) for shell-like command lines: scripts (no comments), README code blocks, usage lines."""
    out = []
    for path in COMMAND_TEXT_FILES:
        text = path.read_text().replace("\\\n", " ")
        out += [(path.name, ln) for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    readme = (DEPLOY / "README.md").read_text()
    for block in re.findall(r"```[a-z]*\n(.*?)```", readme, flags=re.S):
        out += [("README.md", ln) for ln in block.replace("\\\n", " ").splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    doc = (DEPLOY / "slurm" / "launch.py").read_text().split('"""')[1]
    out += [("launch.py", ln) for ln in doc.splitlines() if "launch.py" in ln and " -- " in ln]
    return out


def split_words(text):
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


def invocations(program):
    """(source, subcommand, flags) for each `program SUBCOMMAND ...` in the recipes."""
    found = []
    for src, argv in argv_lists():
        for i, word in enumerate(argv[:-1]):
            if word == program and re.fullmatch(r"[a-z][\w-]*", argv[i + 1]):
                found.append((src, argv[i + 1], [a.split("=")[0] for a in argv[i + 2:] if a.startswith("--")]))
    for src, line in command_lines():
        for m in re.finditer(rf"(?<![\w/.-]){program}\s+([a-z][\w-]*)\b(.*)", line):
            words = []
            for w in split_words(m.group(2)):
                if w in ("&", "&&", ";", "|", "||", ")") or w.endswith(";"):
                    break
                words.append(w)
            found.append((src, m.group(1), [w.split("=")[0] for w in words if w.startswith("--")]))
    return found


DASK_CALLS = invocations("dask")
MPFPIPE_CALLS = invocations("mpfpipe")
# Flags deploy/bin/mpfpipe-job and launch.py add to the mpfpipe command line they build.
ADDED_FLAGS = {"run": ["--set", "--scheduler", "--scheduler-file"]}
ADDED_FLAGS_ANY = ["--scheduler", "--scheduler-file"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for_file(path, proc, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.stat().st_size:
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass
        if proc.poll() is not None:
            pytest.fail(f"process exited early ({proc.returncode}); see its log")
        time.sleep(0.1)
    pytest.fail(f"{path} did not appear within {timeout}s")


def base_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "MPF_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path):
    docs = load_yaml(path)
    assert docs and all(isinstance(d, dict) for d in docs)


def test_expected_files_exist():
    for rel in ["Dockerfile", "Dockerfile.dockerignore", "docker-compose.yml", "README.md", "bin/mpfpipe-job",
                "slurm/jobqueue.yaml", "slurm/launch.py", "slurm/submit.sbatch", "kubernetes/daskcluster.yaml",
                "kubernetes/daskjob.yaml", "kubernetes/pvc.yaml", "tls/make-certs.sh"]:
        assert (DEPLOY / rel).is_file(), rel
    for rel in ["bin/mpfpipe-job", "slurm/launch.py", "tls/make-certs.sh"]:
        assert os.access(DEPLOY / rel, os.X_OK), f"{rel} is not executable"


# ---------------------------------------------------------------------------------------------- compose
def test_compose_services():
    c = compose()
    services = c["services"]
    assert {"scheduler", "worker", "job"} <= set(services)
    for port in services["scheduler"]["ports"]:
        assert str(port).startswith("127.0.0.1:"), f"scheduler port {port} is published beyond localhost"
    assert {str(p).rsplit(":", 1)[1] for p in services["scheduler"]["ports"]} == {"8786", "8787"}
    assert "replicas" in services["worker"]["deploy"]
    worker = services["worker"]["command"]
    assert worker[:3] == ["dask", "worker", "tcp://scheduler:8786"]
    assert worker[worker.index("--nworkers") + 1] == "1"
    assert worker[worker.index("--nthreads") + 1] == services["worker"]["deploy"]["resources"]["limits"]["cpus"]
    job = services["job"]["command"]
    assert job[0] == "mpfpipe-job" and "tcp://scheduler:8786" in job
    # one shared volume, mounted at the same path in every service, declared at the top level
    for name in ("scheduler", "worker", "job"):
        vols = services[name]["volumes"]
        assert any(v.endswith(":/data") for v in vols), name
        assert services[name]["working_dir"] == "/data"
    assert "mpfdata" in c["volumes"]
    assert services["worker"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / services["worker"]["build"]["context"]).resolve() == ROOT


# ---------------------------------------------------------------------------------------------- kubernetes
def _check_cluster_spec(spec, cluster_name):
    """Shape required by the operator's CRD (templates.yaml: DaskCluster / DaskScheduler / DaskWorker)."""
    assert {"scheduler", "worker"} <= set(spec)
    assert isinstance(spec["worker"]["replicas"], int) and spec["worker"]["replicas"] >= 1
    assert spec["worker"]["spec"]["containers"]
    sched = spec["scheduler"]
    assert {"spec", "service"} <= set(sched)
    svc = sched["service"]
    assert svc["selector"] == {"dask.org/cluster-name": cluster_name, "dask.org/component": "scheduler"}
    named = {p["name"]: p["containerPort"] for c in sched["spec"]["containers"] for p in c.get("ports", [])}
    ports = {p["name"]: p for p in svc["ports"]}
    assert ports["tcp-comm"]["port"] == 8786 and ports["http-dashboard"]["port"] == 8787
    for p in ports.values():
        assert p["targetPort"] in named, f"service targetPort {p['targetPort']} is no named container port"
    for c in spec["worker"]["spec"]["containers"]:
        args = c["args"]
        assert args[:2] == ["dask", "worker"] and "$(DASK_WORKER_NAME)" in args
        assert args[args.index("--nworkers") + 1] == "1"
        assert args[args.index("--nthreads") + 1] == str(c["resources"]["limits"]["cpu"])


def _claims(doc):
    out = set()
    if isinstance(doc, dict):
        if "persistentVolumeClaim" in doc:
            out.add(doc["persistentVolumeClaim"]["claimName"])
        for v in doc.values():
            out |= _claims(v)
    elif isinstance(doc, list):
        for v in doc:
            out |= _claims(v)
    return out


def test_kubernetes_manifests():
    k8s = DEPLOY / "kubernetes"
    (pvc,) = load_yaml(k8s / "pvc.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in pvc["spec"]["accessModes"]
    (dc,) = load_yaml(k8s / "daskcluster.yaml")
    assert (dc["apiVersion"], dc["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    _check_cluster_spec(dc["spec"], dc["metadata"]["name"])
    (dj,) = load_yaml(k8s / "daskjob.yaml")
    assert (dj["apiVersion"], dj["kind"]) == ("kubernetes.dask.org/v1", "DaskJob")
    assert {"job", "cluster"} <= set(dj["spec"])
    # the operator names the job's cluster after the DaskJob
    _check_cluster_spec(dj["spec"]["cluster"]["spec"], dj["metadata"]["name"])
    (job,) = dj["spec"]["job"]["spec"]["containers"]
    assert job["args"][0] == "mpfpipe-job"
    assert job["args"][job["args"].index("--scheduler") + 1] == "$(DASK_SCHEDULER_ADDRESS)"
    assert dj["spec"]["job"]["spec"]["restartPolicy"] == "Never"
    for path in k8s.glob("*.yaml"):
        for doc in load_yaml(path):
            assert _claims(doc) <= {pvc["metadata"]["name"]}, path.name
            for c in containers(doc):
                prog = (c.get("command") or c.get("args"))[0]
                assert prog in CONTAINER_PROGRAMS, f"{path.name}: {prog}"
    (run,) = load_yaml(k8s / "run-job.yaml")
    args = run["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--scheduler") + 1] == f"tcp://{dc['metadata']['name']}-scheduler:8786"


# ---------------------------------------------------------------------------------------------- commands
def test_recipes_name_commands():
    assert {s for _, s, _ in DASK_CALLS} == {"scheduler", "worker"}
    assert "run" in {s for _, s, _ in MPFPIPE_CALLS}


_HELP = {}


@pytest.mark.parametrize("sub", sorted({s for _, s, _ in DASK_CALLS}))
def test_dask_commands_exist(sub):
    if not DASK:
        pytest.skip("no `dask` executable next to this Python or on PATH")
    res = subprocess.run([str(DASK), sub, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for src, s, flags in DASK_CALLS:
        if s != sub:
            continue
        for flag in flags:
            assert re.search(rf"(^|[\s,/]){re.escape(flag)}\b", res.stdout, flags=re.M), \
                f"{src}: `dask {sub}` has no option {flag}"


def test_container_programs_are_known():
    for src, argv in argv_lists():
        assert argv and argv[0] in CONTAINER_PROGRAMS, f"{src}: {argv[:2]}"


@pytest.mark.parametrize("sub", sorted({s for _, s, _ in MPFPIPE_CALLS}))
def test_mpfpipe_subcommands_exist(sub):
    from click.testing import CliRunner

    from mpfpipe.cli import cli

    res = CliRunner().invoke(cli, [sub, "--help"])
    assert sub in cli.commands, f"the deploy recipes call `mpfpipe {sub}`, which does not exist"
    assert res.exit_code == 0, res.output
    opts = {o for p in cli.commands[sub].params for o in getattr(p, "opts", [])}
    used = set(ADDED_FLAGS_ANY) | set(ADDED_FLAGS.get(sub, []))
    used |= {f for _, s, flags in MPFPIPE_CALLS if s == sub for f in flags}
    missing = sorted(f for f in used if f not in opts and f not in ("--help", "-h"))
    assert not missing, f"`mpfpipe {sub}` lacks {missing}, which deploy/ uses: adjust deploy/bin/mpfpipe-job"


def test_dockerfile_default_cmd_and_copy_sources():
    from click.testing import CliRunner

    from mpfpipe.cli import cli

    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, flags=re.M)
    assert re.search(r'^CMD \["mpfpipe", "--help"\]\s*$', text, flags=re.M)
    assert re.search(r"^USER (?!root)\w+", text, flags=re.M), "the image must run as a non-root user"
    assert CliRunner().invoke(cli, ["--help"]).exit_code == 0
    for line in text.replace("\\\n", " ").splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        sources = [w for w in words[1:-1] if not w.startswith("--")]
        for src in sources:
            path = ROOT / src.rstrip("/")
            assert path.exists(), f"Dockerfile copies {src}, which is not in the repository"


def test_workflows_named_in_recipes_exist():
    names = set()
    for path in [DEPLOY / "docker-compose.yml", *(DEPLOY / "kubernetes").glob("*.yaml"),
                 DEPLOY / "bin" / "mpfpipe-job", DEPLOY / "slurm" / "submit.sbatch"]:
        names |= set(re.findall(r"workflows/([\w.-]+\.yaml)", path.read_text()))
    assert "quickstart.yaml" in names
    missing = sorted(n for n in names if not (ROOT / "workflows" / n).is_file())
    assert not missing, f"the recipes name workflows that do not exist: {missing}"


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_shell_syntax(path):
    res = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_mpfpipe_job_builds_command(tmp_path):
    job = str(DEPLOY / "bin" / "mpfpipe-job")

    def dry(*args, **env):
        res = subprocess.run([job, *args], capture_output=True, text=True, env=base_env(MPF_DRY_RUN="1", **env))
        assert res.returncode == 0, res.stderr
        return shlex.split(res.stdout)

    argv = dry("--scheduler", "tcp://scheduler:8786", MPF_WORKFLOW="workflows/quickstart.yaml",
               MPF_SET="data=/data/isbi2012 iterations=3")
    assert argv == ["mpfpipe", "run", "workflows/quickstart.yaml", "--set", "data=/data/isbi2012",
                    "--set", "iterations=3", "--scheduler", "tcp://scheduler:8786"]
    assert dry(DASK_SCHEDULER_ADDRESS="tcp://x:8786")[-2:] == ["--scheduler", "tcp://x:8786"]
    assert dry("--scheduler-file", "/s.json")[-2:] == ["--scheduler-file", "/s.json"]
    assert dry("--scheduler", "tcp://h:1", "--", "segment", "--model", "m.safetensors") == [
        "mpfpipe", "segment", "--model", "m.safetensors", "--scheduler", "tcp://h:1"]
    res = subprocess.run([job, "--bogus"], capture_output=True, text=True, env=base_env())
    assert res.returncode == 2


# ---------------------------------------------------------------------------------------------- slurm
def test_launch_py_compiles_and_helps(tmp_path):
    launch = DEPLOY / "slurm" / "launch.py"
    res = subprocess.run([sys.executable, "-m", "py_compile", str(launch)], capture_output=True, text=True,
                         env=base_env(PYTHONPYCACHEPREFIX=str(tmp_path)))
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, str(launch), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--jobs" in res.stdout
    res = subprocess.run([sys.executable, str(launch), "--jobs", "2"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "after --" in res.stderr


def test_jobqueue_yaml_renders_a_slurm_job_script():
    (cfg,) = load_yaml(DEPLOY / "slurm" / "jobqueue.yaml")
    import dask.config
    import dask_jobqueue  # noqa: F401  (importing it loads its defaults, which name every valid key)

    known = set(dask.config.get("jobqueue.slurm"))
    assert set(cfg["jobqueue"]["slurm"]) <= known, set(cfg["jobqueue"]["slurm"]) - known
    assert cfg["jobqueue"]["slurm"]["processes"] == 1
    res = subprocess.run([sys.executable, str(DEPLOY / "slurm" / "launch.py"), "--dry-run", "--queue", "testq",
                          "--cores", "3", "--memory", "5GiB", "--", "mpfpipe", "run", "workflows/quickstart.yaml"],
                         capture_output=True, text=True, timeout=120, env=base_env())
    assert res.returncode == 0, res.stderr
    script = res.stdout
    for needle in ["#SBATCH -p testq", "#SBATCH --cpus-per-task=3", "--nthreads 3", "NUMBA_NUM_THREADS=1",
                   "NUMBA_THREADING_LAYER=omp", "--scheduler-file"]:
        assert needle in script, needle
    assert "--nworkers" not in script or "--nworkers 1" in script


def test_submit_sbatch_runs_with_a_stand_in_srun(tmp_path):
    """Run submit.sbatch on this machine: `srun` runs its command once, `mpfpipe` records its argv."""
    if not DASK:
        pytest.skip("no `dask` executable")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text('#!/usr/bin/env bash\nwhile [[ $1 == -* ]]; do shift; done\nexec "$@"\n')
    (fake / "mpfpipe").write_text(f'#!/usr/bin/env bash\necho "$@" > {tmp_path}/argv\n')
    for f in fake.iterdir():
        f.chmod(0o755)
    sfile = tmp_path / "scheduler.json"
    env = base_env(PATH=f"{fake}{os.pathsep}{BIN}{os.pathsep}/usr/bin:/bin", MPF_REPO=str(ROOT),
                   SLURM_NNODES="1", SLURM_CPUS_PER_TASK="1", SLURM_JOB_ID="test", MPF_SCHEDULER_FILE=str(sfile),
                   MPF_SCHEDULER_PORT="0", MPF_DASHBOARD_ADDRESS=":0", MPF_LOCAL_DIR=str(tmp_path),
                   MPF_WAIT_TIMEOUT="40")
    log = open(tmp_path / "log", "w")
    proc = subprocess.Popen(["bash", str(DEPLOY / "slurm" / "submit.sbatch")], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        rc = proc.wait(timeout=50)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        kill(proc)
        log.close()
    out = (tmp_path / "log").read_text()
    assert rc == 0, out
    assert (tmp_path / "argv").read_text().split() == ["run", "workflows/quickstart.yaml", "--scheduler-file",
                                                       str(sfile)]
    assert "1 worker(s)" in out
    assert not sfile.exists(), "the scheduler file is removed at the end"


# ---------------------------------------------------------------------------------------------- TLS
def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_tls_round_trip(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is not installed")
    if not DASK:
        pytest.skip("no `dask` executable")
    import dask.config
    from distributed import Client
    from distributed.security import Security

    make = DEPLOY / "tls" / "make-certs.sh"
    certs, other = tmp_path / "certs", tmp_path / "other"
    for out in (certs, other):
        res = subprocess.run(["bash", str(make), str(out)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
    assert (os.stat(certs / "client-key.pem").st_mode & 0o077) == 0, "private keys must not be world-readable"

    port = free_port()
    sfile = tmp_path / "scheduler.json"
    sched = worker = None
    slog, wlog = open(tmp_path / "scheduler.log", "w"), open(tmp_path / "worker.log", "w")
    try:
        sched = subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--protocol", "tls",
             "--tls-ca-file", str(certs / "ca.pem"), "--tls-cert", str(certs / "scheduler.pem"),
             "--tls-key", str(certs / "scheduler-key.pem"), "--no-dashboard", "--scheduler-file", str(sfile)],
            env=base_env(DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION="True"), stdout=slog, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=tmp_path)
        address = wait_for_file(sfile, sched)["address"]
        assert address == f"tls://127.0.0.1:{port}"
        # The worker gets its TLS settings only from the generated distributed config (DASK_CONFIG).
        worker = subprocess.Popen(
            [str(DASK), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host",
             "127.0.0.1", "--local-directory", str(tmp_path)],
            env=base_env(DASK_CONFIG=str(certs / "dask-tls-worker.yaml")), stdout=wlog, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=tmp_path)

        sec = Security(tls_ca_file=str(certs / "ca.pem"), tls_client_cert=str(certs / "client.pem"),
                       tls_client_key=str(certs / "client-key.pem"), require_encryption=True)
        with Client(address, security=sec, timeout=20, set_as_default=False) as client:
            info = client.scheduler_info()
            assert info["address"] == address
            client.wait_for_workers(1, timeout=30)
            (waddr,) = client.scheduler_info()["workers"]
            assert waddr.startswith("tls://")
            assert client.submit(sum, [1, 2, 3], pure=False).result(timeout=30) == 6

        # the generated client config works the same way, through dask's config (as DASK_CONFIG would load it)
        with open(certs / "dask-tls-client.yaml") as fh:
            cfg = _flat(yaml.safe_load(fh))
        with dask.config.set(cfg):
            with Client(address, security=Security(), timeout=20, set_as_default=False) as client:
                assert client.scheduler_info()["address"] == address

        # Refused: plain TCP to the TLS port, and certificates from another CA.
        refused = {
            "plain tcp:// (no TLS)": (address.replace("tls://", "tcp://"), None),
            "certificate from another CA": (address, Security(
                tls_ca_file=str(other / "ca.pem"), tls_client_cert=str(other / "client.pem"),
                tls_client_key=str(other / "client-key.pem"), require_encryption=True)),
        }
        for why, (addr, security) in refused.items():
            with pytest.raises((OSError, TimeoutError)):  # timeout=2: a refusal cannot hang
                with Client(addr, security=security, timeout=2, set_as_default=False) as client:
                    client.scheduler_info()
        # Refused: a TLS client that trusts the CA but has no certificate (distributed's Security cannot even
        # express that, so use the ssl module): the scheduler ends the connection instead of answering.
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        ctx.check_hostname = False
        with pytest.raises((ssl.SSLError, ConnectionError, EOFError, socket.timeout)):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as tls:
                    tls.sendall(b"\0" * 8)
                    if not tls.recv(1):
                        raise EOFError("connection closed by the scheduler")

        # deploy/bin/mpfpipe-job waits for the workers over TLS (settings from DASK_CONFIG), then runs mpfpipe
        fake = tmp_path / "fakebin"
        fake.mkdir()
        (fake / "mpfpipe").write_text(f'#!/usr/bin/env bash\necho "$@" > {tmp_path}/argv\n')
        (fake / "mpfpipe").chmod(0o755)
        res = subprocess.run(
            [str(DEPLOY / "bin" / "mpfpipe-job"), "--scheduler", address], capture_output=True, text=True,
            timeout=60, env=base_env(PATH=f"{fake}{os.pathsep}{BIN}{os.pathsep}/usr/bin:/bin",
                                     DASK_CONFIG=str(certs / "dask-tls-client.yaml"), MPF_MIN_WORKERS="1",
                                     MPF_WAIT_TIMEOUT="30", MPF_WORKFLOW="workflows/quickstart.yaml"))
        assert res.returncode == 0, res.stderr
        assert (tmp_path / "argv").read_text().split() == ["run", "workflows/quickstart.yaml", "--scheduler", address]
    finally:
        kill(worker)
        kill(sched)
        slog.close()
        wlog.close()
