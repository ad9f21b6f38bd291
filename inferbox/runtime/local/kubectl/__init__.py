"""Answers to the admin's kubectl commands from the local runtime, in kubectl's own formats.

The local runtime has no Kubernetes API, so this package plays one from a snapshot of the platform
(`cluster.Cluster`, built by the control plane from plain values): tenants are namespaces, each model is
an InferenceService with a `{model}-predictor` Deployment, each replica process is a pod
(`{model}-predictor-<suffix>`), and this machine is the node. Tables follow kubectl's printers (column
names, `tabwriter` spacing, AGE as kubectl rounds it); `-o json|yaml|name` print the objects as the API
server would; errors read as kubectl prints them (`error: the server doesn't have a resource type
"foo"`), with exit code 1.

Commands arrive already validated by `inferbox.runtime.kubectl.guard`; this package only answers them.

- `cluster`: the snapshot (plain dataclasses);
- `printers`: AGE, tables, describe blocks, json/yaml;
- `kinds`: the resource kinds and every name kubectl accepts for them;
- `items`: one object in every form kubectl prints it; `objects`: the objects of each kind;
- `selectors`: label selectors;
- `targets`: what a command names (types, names, namespace, selector) and kubectl's errors for them;
- `verbs`: the answers, verb by verb, and the flags this view cannot honour; `top`: `kubectl top`;
- `usage`: this machine's CPU, sampled, and its memory in use; `host`: its OS, kernel, architecture.
"""

from inferbox.runtime.local.kubectl.cluster import Cluster, ModelState, Namespace
from inferbox.runtime.local.kubectl.verbs import Answer, ReplicaLogs, answer

__all__ = ["Answer", "Cluster", "ModelState", "Namespace", "ReplicaLogs", "answer"]
