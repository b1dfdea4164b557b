"""Scheduling files in deploy/: valid YAML/ini, consistent names, commands the CLI accepts."""

import configparser
import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from training.nightly import nightly_command

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(REPO, "deploy")
K8S = os.path.join(DEPLOY, "k8s")
SYSTEMD = os.path.join(DEPLOY, "systemd")
MODELS_PATH = "/var/lib/xsell/models"
SERVE_OPTIONS = {"--models", "--host", "--port", "--workers"}  # CONTRACT.md, `xsell serve`


def load_k8s() -> dict:
    docs = {}
    for name in sorted(os.listdir(K8S)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(K8S, name), encoding="utf-8") as fh:
                for doc in yaml.safe_load_all(fh):
                    assert doc, f"{name}: empty YAML document"
                    key = doc["metadata"]["name"] if "metadata" in doc else name
                    docs[(doc["kind"], key)] = doc
    return docs


def by_kind(docs: dict, kind: str) -> dict:
    found = [d for (k, _), d in docs.items() if k == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def check_nightly_args(args: list[str]) -> dict:
    """The arguments parse with the real `xsell nightly` command (option names, types)."""
    assert args[0] == "nightly", args
    ctx = nightly_command.make_context("nightly", list(args[1:]),
                                       default_map={"orders": "env-provided"})
    return ctx.params


def check_serve_args(args: list[str]) -> None:
    assert args[0] == "serve", args
    options = {a for a in args[1:] if a.startswith("--")}
    assert options <= SERVE_OPTIONS, options - SERVE_OPTIONS
    assert args[args.index("--models") + 1] == MODELS_PATH


# ---------------------------------------------------------------- Kubernetes


def test_every_manifest_is_valid_yaml_with_the_expected_kinds():
    docs = load_k8s()
    kinds = sorted(k for k, _ in docs)
    assert kinds == sorted(["CronJob", "Deployment", "Service", "PersistentVolumeClaim",
                            "ConfigMap", "Kustomization"])
    for (kind, _), doc in docs.items():
        assert doc.get("apiVersion"), kind
    kustomization = by_kind(docs, "Kustomization")
    for resource in kustomization["resources"]:
        assert os.path.isfile(os.path.join(K8S, resource)), resource
    listed = set(kustomization["resources"])
    on_disk = {n for n in os.listdir(K8S) if n.endswith(".yaml") and n != "kustomization.yaml"}
    assert listed == on_disk


def pod_volumes(pod_spec: dict) -> dict:
    return {v["name"]: v for v in pod_spec["volumes"]}


def xsell_container(pod_spec: dict) -> dict:
    """The pod's one container running ``xsell`` (the API pod also has the proxy sidecar)."""
    [container] = [c for c in pod_spec["containers"] if c.get("command") == ["xsell"]]
    return container


def test_cronjob_and_deployment_share_the_models_volume():
    docs = load_k8s()
    pvc = by_kind(docs, "PersistentVolumeClaim")
    cron = by_kind(docs, "CronJob")
    deploy = by_kind(docs, "Deployment")
    pods = {"cron": cron["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            "api": deploy["spec"]["template"]["spec"]}
    configmap = by_kind(docs, "ConfigMap")
    for where, pod in pods.items():
        volumes = pod_volumes(pod)
        container = xsell_container(pod)
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes, f"{where}: mount {mount['name']} has no volume"
            vol = volumes[mount["name"]]
            if "persistentVolumeClaim" in vol:
                assert vol["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
                assert mount["mountPath"] == MODELS_PATH
            if "configMap" in vol:
                assert vol["configMap"]["name"] == configmap["metadata"]["name"]
        claims = [v for v in volumes.values() if "persistentVolumeClaim" in v]
        assert len(claims) == 1, where
    # The API only reads models; the nightly job writes them.
    def models_mount(pod):
        return [m for m in xsell_container(pod)["volumeMounts"] if m["mountPath"] == MODELS_PATH]

    [api_mount] = models_mount(pods["api"])
    assert api_mount.get("readOnly") is True
    [job_mount] = models_mount(pods["cron"])
    assert not job_mount.get("readOnly")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]


def test_cronjob_runs_the_nightly_command_once_at_a_time():
    cron = by_kind(load_k8s(), "CronJob")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert len(spec["schedule"].split()) == 5
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["command"] == ["xsell"]
    params = check_nightly_args(container["args"])
    assert params["models_dir"] == MODELS_PATH and params["orders_query"]
    env = {e["name"]: e for e in container["env"]}
    # The source URL and its password come from a secret, not from the manifest.
    assert "secretKeyRef" in env["XSELL_ORDERS"]["valueFrom"]
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]
    assert not re.search(r"://[^/@\s]+:[^/@\s]+@", yaml.safe_dump(cron))
    [rule] = job["podFailurePolicy"]["rules"]
    assert rule["onExitCodes"]["containerName"] == container["name"]
    assert sorted(rule["onExitCodes"]["values"]) == [2, 3, 4]


def test_deployment_probes_and_service_wiring():
    docs = load_k8s()
    deploy = by_kind(docs, "Deployment")
    service = by_kind(docs, "Service")
    pod = deploy["spec"]["template"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    container = xsell_container(pod["spec"])
    check_serve_args(container["args"])
    port_arg = int(container["args"][container["args"].index("--port") + 1])
    # gunicorn listens on the pod's loopback only: clients and probes go through the
    # nginx sidecar (deploy/nginx), which buffers whole requests (slow clients).
    assert container["args"][container["args"].index("--host") + 1] == "127.0.0.1"
    assert "ports" not in container
    [proxy] = [c for c in pod["spec"]["containers"] if c["name"] == "proxy"]
    env = {e["name"]: e["value"] for e in proxy["env"]}
    assert env["XSELL_UPSTREAM"] == f"127.0.0.1:{port_arg}"
    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    assert ports["http"] == int(env["XSELL_LISTEN"])
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert proxy[probe]["httpGet"]["port"] in (ports["http"], "http")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert all(p["targetPort"] in ports or p["targetPort"] in ports.values()
               for p in service["spec"]["ports"])


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_kustomize_builds_all_resources():
    out = subprocess.run(["kubectl", "kustomize", K8S], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out.stdout))
    assert kinds == sorted(["CronJob", "Deployment", "Service", "PersistentVolumeClaim",
                            "ConfigMap"])


# ---------------------------------------------------------------- systemd and cron


def parse_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    with open(os.path.join(SYSTEMD, name), encoding="utf-8") as fh:
        parser.read_file(fh)
    return parser


def test_systemd_units_have_the_right_structure():
    nightly = parse_unit("xsell-nightly.service")
    assert nightly["Service"]["Type"] == "oneshot"
    args = shlex.split(nightly["Service"]["ExecStart"])
    assert args[0].endswith("/xsell")
    params = check_nightly_args(args[1:])
    assert params["models_dir"] == MODELS_PATH
    assert nightly["Service"]["SuccessExitStatus"].split() == ["4"]
    assert MODELS_PATH.startswith(nightly["Service"]["ReadWritePaths"])

    timer = parse_unit("xsell-nightly.timer")
    assert timer["Timer"]["Unit"] == "xsell-nightly.service"
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"

    api = parse_unit("xsell.service")
    args = shlex.split(api["Service"]["ExecStart"])
    assert args[0].endswith("/xsell")
    check_serve_args(args[1:])
    assert api["Service"]["Restart"] == "on-failure"
    for unit in (nightly, api):
        assert {"Unit", "Service", "Install"} <= set(unit.sections())


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    # verify insists that ExecStart's program exists: point it at /bin/true in a copy.
    names = ["xsell-nightly.service", "xsell-nightly.timer", "xsell.service"]
    for name in names:
        with open(os.path.join(SYSTEMD, name), encoding="utf-8") as fh:
            text = fh.read().replace("/opt/xsell/.venv/bin/xsell", "/bin/true")
        (tmp_path / name).write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", *[str(tmp_path / n) for n in names]],
                         capture_output=True, text=True, timeout=60)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if str(tmp_path) in line or "xsell" in line]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_cron_line_runs_nightly_with_valid_fields():
    with open(os.path.join(DEPLOY, "cron", "xsell.cron"), encoding="utf-8") as fh:
        lines = [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    jobs = [ln for ln in lines if not re.match(r"^[A-Z_]+=", ln)]
    assert len(jobs) == 1
    fields = jobs[0].split(None, 6)
    minute, hour, dom, month, dow, user, command = fields
    assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24
    assert (dom, month, dow) == ("*", "*", "*") and user == "xsell"
    assert "%" not in command  # cron turns % into newlines
    xsell = shlex.split(command.split("&&")[-1].split(">>")[0])
    assert xsell[0].endswith("/xsell")
    params = check_nightly_args(xsell[1:])
    assert params["models_dir"] == MODELS_PATH
