"""The Kubernetes side: kubeconfig, the pod (spec + status), and the in-container probe over exec.

Every client failure is translated here into a ``PidmapError``; nothing from ``kubernetes``,
``urllib3`` or ``websocket`` leaves this module.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pidmap.errors import (
    ConfigError,
    ExecError,
    ForbiddenError,
    NotFoundError,
    PidmapError,
    UnreachableError,
    UsageError,
)
from pidmap.model import Container, ContainerState, ContainerType, Options, Pod, ProbeResult, Target
from pidmap.procfs import ScanFormatError, parse_scan, probe_argv

# DNS-1123 subdomain (pod names) and label (namespaces, container names): checked before any call,
# so that no odd text ever reaches a URL, a log line or a shell.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_namespace(namespace: str) -> None:
    if len(namespace) > 63 or not _LABEL.match(namespace):
        raise UsageError(f"invalid namespace {namespace!r}: not a DNS-1123 label",
                         "namespaces are lower-case letters, digits and '-'")


def validate_node_name(node_name: str) -> None:
    if len(node_name) > 253 or not _SUBDOMAIN.match(node_name):
        raise UsageError(f"invalid node name {node_name!r}: not a DNS-1123 subdomain",
                         "list nodes: kubectl get nodes")


def validate_target(target: Target) -> None:
    if len(target.pod) > 253 or not _SUBDOMAIN.match(target.pod):
        raise UsageError(f"invalid pod name {target.pod!r}: not a DNS-1123 subdomain",
                         "pod names are lower-case letters, digits, '-' and '.'")
    validate_namespace(target.namespace)
    if target.container is not None and (len(target.container) > 63 or not _LABEL.match(target.container)):
        raise UsageError(f"invalid container name {target.container!r}: not a DNS-1123 label",
                         "container names are lower-case letters, digits and '-'")


def validate_names(*, pod: str | None = None, namespace: str | None = None, container: str | None = None,
                   node_name: str | None = None) -> None:
    """UsageError for the first name that Kubernetes could not have made; before any kubeconfig load."""
    if pod is not None:
        validate_target(Target(namespace=namespace or "default", pod=pod, container=container))
    elif namespace is not None:
        validate_namespace(namespace)
    if node_name is not None:
        validate_node_name(node_name)


class HttpError(Exception):
    """A non-2xx answer, shaped like the client's ApiException (status, reason, body)."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.body = status, reason, body


class ApiNotFound(NotFoundError):
    """A 404 from the API server; ``kind`` is the Status's details.kind (pods, namespaces, ...)."""

    def __init__(self, message: str, hint: str | None = None, *, kind: str | None = None) -> None:
        super().__init__(message, hint)
        self.kind = kind


class ApiConflict(PidmapError):
    """A 409 from the API server: the object already exists (or changed meanwhile)."""


def request_parts(configuration: Any, path: str, query: list[tuple[str, str]] | None = None,
                  *, body: bool = False) -> tuple[str, dict[str, str]]:
    """(url, headers with authorization) for a request of ``path``, as the generated client makes them.

    Built from what every declared client version (kubernetes 30 to 37) offers: ``Configuration.host``
    and ``Configuration.auth_settings()`` (which runs the refresh hook of exec plugins and tokens
    that expire). Not ``ApiClient.param_serialize``: that exists only from kubernetes 37.
    """
    from urllib.parse import quote, urlencode

    url = configuration.host + path
    if query:
        url += "?" + urlencode(query, quote_via=quote)
    headers = {"Accept": "application/json"}
    if body:
        headers["Content-Type"] = "application/json"
    for auth in (configuration.auth_settings() or {}).values():
        if auth.get("in") == "header" and auth.get("value"):
            headers[auth["key"]] = auth["value"]
    return url, headers


class Rest:
    """Requests with the official client's connection pool: its TLS (CA, client certificates,
    server name), proxy and retry settings as the kubeconfig says — but not its generated
    ``CoreV1Api``, whose ~250 models cost ~0.6 s to import on every run (measured with
    scripts/bench.py: pidmap show went from 0.9 s to about half that), and not ``call_api``, whose
    signature changed in kubernetes 37 (``ApiClient.rest_client.pool_manager`` is in 30 to 37)."""

    def __init__(self, configuration: Any) -> None:
        from kubernetes.client.api_client import ApiClient

        self.configuration = configuration
        self.client: Any = ApiClient(configuration)

    def call(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
             body: dict[str, Any] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """One request; HttpError for a non-2xx answer, the JSON document otherwise."""
        import urllib3

        url, headers = request_parts(self.configuration, path, query, body=body is not None)
        response: Any = self.client.rest_client.pool_manager.request(
            method, url, headers=headers, body=None if body is None else json.dumps(body).encode(),
            preload_content=True, timeout=urllib3.Timeout(total=timeout) if timeout else None)
        text = (response.data or b"").decode("utf-8", "replace")
        if response.status >= 400:
            raise HttpError(response.status, response.reason or "", text)
        doc: dict[str, Any] = json.loads(text) if text.strip() else {}
        return doc

    def get(self, path: str, query: list[tuple[str, str]] | None = None,
            timeout: float | None = None) -> dict[str, Any]:
        return self.call("GET", path, query, timeout=timeout)

    def close(self) -> None:
        self.client.close()


def _pod_path(namespace: str, pod: str) -> str:
    # Both parts passed validate_names (DNS-1123), so they need no quoting.
    return f"/api/v1/namespaces/{namespace}/pods/{pod}"


class Cluster:
    """A loaded kubeconfig: makes one Rest (one ApiClient) per caller, so threads share none."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.configuration = _load_configuration(options)

    def rest(self) -> Rest:
        return Rest(self.configuration)

    def request(self, method: str, path: str, *, what: str, query: list[tuple[str, str]] | None = None,
                body: dict[str, Any] | None = None, timeout: float | None = None,
                rest: Rest | None = None) -> dict[str, Any]:
        """Every REST call pidmap makes: transport failures and 401/403/404/409/other statuses
        translated once (``status_error``), ``what`` naming the object in the message ("pod
        default/kubia-manual"). ``rest``: a kept client (its connection is reused, as watch does),
        else one ApiClient made for this call and closed after."""
        own = rest is None
        client = self.rest() if rest is None else rest
        try:
            with _translate_transport(self.configuration.host):
                return client.call(method, path, query, body,
                                   timeout=timeout if timeout is not None else self.options.request_timeout)
        except HttpError as err:
            body_doc = _status_body(err.body)
            raise status_error(err.status, body_doc.get("message") or err.reason or "error",
                               verb=_VERBS.get(method, method.lower()), what=what,
                               kind=(body_doc.get("details") or {}).get("kind")) from err
        finally:
            if own:
                client.close()

    def get_pod(self, target: Target, rest: Rest | None = None) -> Pod:
        """One GET of the pod; ``rest``: a kept client (its connection is reused), else a new one."""
        try:
            raw = self.request("GET", _pod_path(target.namespace, target.pod), what=f"pod {target.pod}",
                               rest=rest)
        except ApiNotFound as err:
            raise self._not_found(target) from err
        return pod_from_api(raw)

    def _not_found(self, target: Target) -> PidmapError:
        # A 404 for the pod reads the same whether the pod or its namespace is missing; asking for
        # the namespace tells them apart (a 403 on namespaces just leaves the pod message).
        try:
            self.request("GET", f"/api/v1/namespaces/{target.namespace}",
                         what=f"namespace {target.namespace}")
        except ApiNotFound as err:
            if err.kind == "namespaces":
                return NotFoundError(f'namespace "{target.namespace}" not found',
                                     "list namespaces: kubectl get namespaces")
        except PidmapError:
            pass
        return NotFoundError(f'pod "{target.pod}" not found in namespace "{target.namespace}"',
                             f"list pods: kubectl get pods -n {target.namespace}")

    def probe(self, target: Target, container: str, mode: str = "probe") -> ProbeResult:
        """Run ``SCAN_SCRIPT`` in one container over the exec WebSocket (v5/v4 channel protocol).

        ``mode`` is the script's fixed argument: "probe" (a pod's container: PIDs and names) or
        "full" (the node agent: also each process's namespace link, cgroup and start time)."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import ws_client
        from websocket import WebSocketException, setdefaulttimeout

        query = [("command", arg) for arg in probe_argv("full" if mode == "full" else "probe")]
        query += [("container", container), ("stderr", "true"), ("stdin", "false"), ("stdout", "true"),
                  ("tty", "false")]
        try:
            path = _pod_path(target.namespace, target.pod) + "/exec"
            url, headers = request_parts(self.configuration, path, query)
            # The client connects the WebSocket without a timeout: an API server that accepts the
            # connection and then stops answering (SIGSTOP, a hung proxy) would hang the handshake.
            setdefaulttimeout(self.options.exec_timeout)
            with _translate_transport(self.configuration.host):
                websocket_call: Any = ws_client.websocket_call
                resp = websocket_call(self.configuration, "GET", url, headers=headers,
                                      _preload_content=False, _request_timeout=self.options.exec_timeout)
                try:
                    too_much = _run_bounded(resp, self.options.exec_timeout)
                    still_open = resp.is_open()
                    stdout = resp.read_stdout(timeout=0) if resp.peek_stdout() else ""
                    stderr = resp.read_stderr(timeout=0) if resp.peek_stderr() else ""
                    status_text = resp.peek_channel(3)
                    returncode = _returncode(resp)
                finally:
                    resp.close()
        except ApiException as err:
            return _exec_api_failure(err, container)
        except ExecError as err:
            return ProbeResult(table=None, error=err.message)
        except WebSocketException as err:
            # The stream broke after the upgrade (node gone, proxy timeout, server restart): that
            # container's probe failed, the host side can still map the pod.
            detail = f"{type(err).__name__}: {err}".rstrip(": ")
            return ProbeResult(table=None,
                               error=f"the exec connection was lost: {detail}")
        if too_much:
            return ProbeResult(table=None, error=f"the probe printed more than {MAX_PROBE_BYTES >> 20} MiB "
                                                 "(not what the fixed probe prints): not read further")
        if still_open:
            return ProbeResult(table=None,
                               error=f"the probe did not finish within {self.options.exec_timeout:g}s")
        return _probe_result(container, stdout, stderr, status_text, returncode)


# The probe prints ~150 bytes per process (a few KiB more for long command lines): 16 MiB is far
# beyond any real container, and bounds what a container that answers in place of the probe can
# make pidmap hold in memory.
MAX_PROBE_BYTES = 16 * 2**20


def _run_bounded(resp: Any, timeout: float) -> bool:
    """WSClient.run_forever with a byte bound too: read until the stream closes or ``timeout``
    passes; True when stdout and stderr together went past ``MAX_PROBE_BYTES`` (stopped there)."""
    deadline = time.monotonic() + timeout
    while resp.is_open():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        resp.update(timeout=min(remaining, 1.0))
        if len(resp.peek_channel(1)) + len(resp.peek_channel(2)) > MAX_PROBE_BYTES:
            return True
    return False


def _returncode(resp: Any) -> int | None:
    """WSClient.returncode, minus its failure modes (REFERENCE.md): ValueError for a failure
    without an exit code (missing binary), TypeError/AttributeError for an empty channel 3, None
    when the server dropped the connection. Those cases are told apart from the status text."""
    try:
        code = resp.returncode
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        return None
    return code if isinstance(code, int) else None


def _probe_result(container: str, stdout: str, stderr: str, status_text: str,
                  returncode: int | None = None) -> ProbeResult:
    exit_code, message = parse_exec_status(status_text)
    if returncode is not None:
        exit_code = returncode
    if exit_code == 0 or (exit_code is not None and stdout.rstrip().endswith("end")):
        try:
            return ProbeResult(table=parse_scan(stdout))
        except ScanFormatError as err:
            return ProbeResult(table=None, error=f"unreadable probe output: {err}")
    text = f"{message or ''} {stderr}".lower()
    # Only the runtime's own words mean "no shell": a bare 126/127 or "no such file" also comes
    # from a container that exited while the exec was being set up.
    if "executable file not found" in text or re.search(r'exec: "?sh"?: (no such file|not found)', text) \
            or (exit_code == 127 and not stdout and re.search(r"\bsh: (not found|no such file)", text)):
        return ProbeResult(table=None, no_shell=True,
                           error="the container has no shell (sh) to run the probe")
    if "not running" in text or "container not found" in text:
        return ProbeResult(table=None,
                           error=f"exec refused: {message or stderr}".strip())
    if exit_code is None and message is None:
        return ProbeResult(table=None,
                           error="the API server closed the exec stream without a status")
    detail = message or stderr.strip() or f"exit code {exit_code}"
    return ProbeResult(table=None, error=f"the probe failed: {detail}")


def parse_exec_status(text: str) -> tuple[int | None, str | None]:
    """(exit code, message) from the channel-3 Status; (None, None) when there is none."""
    if not text.strip():
        return None, None
    try:
        status = json.loads(text)
    except ValueError:
        return None, text.strip()
    if not isinstance(status, dict):
        return None, text.strip()  # JSON, but no Status object: said as it came
    if status.get("status") == "Success":
        return 0, None
    message = status.get("message")
    message = message if isinstance(message, str) else None
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    for cause in causes if isinstance(causes, list) else []:
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message") or ""), message
            except (TypeError, ValueError, OverflowError):
                break
    reason = status.get("reason")
    return None, message or (reason if isinstance(reason, str) else None) or "exec failed"


def _exec_api_failure(err: Any, container: str) -> ProbeResult:
    # Before the upgrade stream() wraps the HTTP error in ApiException(status=0): the code is only
    # in the text, and the websocket exception (status_code, resp_body) is its __context__.
    ws_err = err.__context__
    code = getattr(ws_err, "status_code", None) or err.status or _code_in(str(err.reason))
    body_raw = getattr(ws_err, "resp_body", None) or err.body or ""
    if isinstance(body_raw, bytes):
        body_raw = body_raw.decode("utf-8", "replace")
    try:
        message = json.loads(body_raw).get("message") or ""
    except (ValueError, AttributeError):
        message = ""
    if code in (401, 403):
        raise status_error(code, message or "pods/exec denied", verb="create", what="pods/exec")
    text = message or str(err.reason)
    if "not running" in text or code == 400:
        return ProbeResult(table=None, error=f"exec refused: {text}")
    if code == 404:
        return ProbeResult(table=None, error=f"exec target not found: {text}")
    return ProbeResult(table=None, error=f"exec failed: {text}")


def _code_in(text: str) -> int | None:
    match = re.search(r"\b([45]\d\d)\b", text)
    return int(match.group(1)) if match else None


def _status_body(text: str | bytes | None) -> dict[str, Any]:
    """The Status object of an error answer; {} when the body is not one."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        body = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


_VERBS = {"GET": "get", "POST": "create", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}


def status_error(code: int | None, message: str, *, verb: str, what: str,
                 kind: str | None = None) -> PidmapError:
    """The one translation of an API server's error status into pidmap's errors."""
    if code == 401:
        return ForbiddenError("the API server rejected the credentials (401 Unauthorized)",
                              "the token or certificate in the kubeconfig is wrong or expired")
    if code == 403:
        if what == "pods/exec":
            return ForbiddenError(f"exec into pod is forbidden: {message}",
                                  "your credentials need the create verb on pods/exec (RBAC)")
        action = "reading" if verb in ("get", "list", "watch") else f"{verb} of"
        return ForbiddenError(f"{action} {what} is forbidden: {message}",
                              f"your credentials need {verb} on {_resource_of(what)} in that "
                              "namespace (RBAC)")
    if code == 404:
        return ApiNotFound(f"{what} not found: {message}", "kubectl get pods,nodes,namespaces", kind=kind)
    if code == 409:
        return ApiConflict(f"{what} already exists or changed meanwhile: {message}",
                           "rerun; if it persists, look at it with kubectl")
    if code == 0 or code is None:
        return UnreachableError(f"the API server failed: {message}")
    return PidmapError(f"the API server answered {code} for {what}: {message}",
                       "rerun with --debug for details")


def _resource_of(what: str) -> str:
    word = what.split()[0] if what else "pods"
    return word if word.endswith("s") or "/" in word else word + "s"


@contextmanager
def _translate_transport(host: str) -> Iterator[None]:
    """urllib3 / socket / TLS failures → UnreachableError (one line, the server named)."""
    import ssl

    import urllib3.exceptions

    try:
        yield
    except urllib3.exceptions.MaxRetryError as err:
        reason = err.reason
        if isinstance(reason, urllib3.exceptions.SSLError | ssl.SSLError):
            raise UnreachableError(f"TLS to the API server at {host} failed: {reason}",
                                   "the kubeconfig's certificate-authority does not match the server"
                                   ) from err
        # NewConnectionError (refused, no route) is a ConnectTimeoutError subclass in urllib3.
        if isinstance(reason, urllib3.exceptions.TimeoutError) \
                and not isinstance(reason, urllib3.exceptions.NewConnectionError):
            step = "connecting" if isinstance(reason, urllib3.exceptions.ConnectTimeoutError) else "reading"
            raise UnreachableError(f"the API server at {host} did not answer in time (timed out {step})",
                                   "is it up and not stuck? raise --request-timeout if it is just slow"
                                   ) from err
        raise UnreachableError(f"the API server at {host} does not answer") from err
    except urllib3.exceptions.NewConnectionError as err:
        raise UnreachableError(f"the API server at {host} does not answer ({type(err).__name__})") from err
    except (urllib3.exceptions.TimeoutError, TimeoutError) as err:
        raise UnreachableError(f"the API server at {host} did not answer in time ({type(err).__name__})",
                               "is it up and not stuck? raise --request-timeout if it is just slow") from err
    except (urllib3.exceptions.HTTPError, ConnectionError) as err:
        raise UnreachableError(f"the API server at {host} does not answer ({type(err).__name__})") from err
    except OSError as err:
        raise UnreachableError(f"the API server at {host} does not answer: {err}") from err


def kubeconfig_chain(explicit: str | None = None) -> list[Path]:
    """The files kubectl reads: --kubeconfig, else every $KUBECONFIG entry, else ~/.kube/config."""
    if explicit:
        return [Path(explicit).expanduser()]
    entries = [Path(part).expanduser() for part in os.environ.get("KUBECONFIG", "").split(os.pathsep) if part]
    return entries or [Path.home() / ".kube" / "config"]


def kubeconfig_for_writing(explicit: str | None = None) -> Path:
    """The file a new context goes into, by kubectl's (and kind's) rule: the first file of the chain
    that exists, else the last one of the chain."""
    chain = kubeconfig_chain(explicit)
    return next((path for path in chain if path.is_file()), chain[-1])


def _contexts(paths: list[str]) -> tuple[str | None, list[str]]:
    """(current-context as kubectl picks it: the first non-empty one, every context name)."""
    import yaml

    current: str | None = None
    names: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
        if not isinstance(raw, dict):
            continue
        if current is None and raw.get("current-context"):
            current = str(raw["current-context"])
        names += [str(c["name"]) for c in raw.get("contexts") or [] if isinstance(c, dict) and c.get("name")]
    return current, names


def _load_configuration(options: Options) -> Any:
    import yaml
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    chain = kubeconfig_chain(options.kubeconfig)
    existing = [str(path) for path in chain if path.is_file()]
    if not existing:
        raise ConfigError(f"no kubeconfig at {os.pathsep.join(str(path) for path in chain)}")
    # The client's merger splits on os.pathsep and merges clusters, users and contexts as kubectl
    # does (the first file defining a name wins), but lets the LAST file's current-context win where
    # kubectl takes the first non-empty one: that one is picked here.
    path = os.pathsep.join(existing)
    configuration = client.Configuration()
    try:
        current, names = _contexts(existing)
        context = options.context or current
        # Said plainly here: the client's own words for these are "Expected object with name  in
        # ... contexts list" (an empty name when there is no current context at all).
        known = ", ".join(names) or "none"
        if context is None:
            raise ConfigError(f"the kubeconfig {path} has no current context (contexts: {known})",
                              "pass --context NAME, or kubectl config use-context NAME "
                              "(or create a cluster: pidmap sandbox up)")
        if context not in names:
            raise ConfigError(f'context "{context}" is not in the kubeconfig {path} (contexts: {known})',
                              "list contexts: kubectl config get-contexts")
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, client_configuration=configuration,
            persist_config=False)
    except ConfigException as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else "invalid kubeconfig"
        raise ConfigError(f"cannot use kubeconfig {path}: {text}",
                          "list contexts: kubectl config get-contexts") from err
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read kubeconfig {path}: {err}") from err
    configuration.retries = 0  # an unreachable server should fail fast, not after urllib3's retries
    return configuration


_PREFIX = re.compile(r"^([a-z0-9.-]+)://([0-9a-f]+)$")


def _split_container_id(raw: str | None) -> tuple[str | None, str | None]:
    if not raw:
        return None, None
    match = _PREFIX.match(raw)
    return (match.group(2), match.group(1)) if match else (raw, None)


def _container(spec: dict[str, Any], status: dict[str, Any] | None, kind: ContainerType) -> Container:
    state: ContainerState = "unknown"
    reason = None
    exit_code = None
    container_id = runtime = None
    restarts = 0
    if status is not None:
        container_id, runtime = _split_container_id(status.get("containerID"))
        restarts = status.get("restartCount") or 0
        st = status.get("state") or {}
        if st.get("running") is not None:
            state = "running"
        elif st.get("terminated") is not None:
            terminated = st["terminated"]
            state, reason = "terminated", terminated.get("reason")
            exit_code = terminated.get("exitCode")
        elif st.get("waiting") is not None:
            state, reason = "waiting", st["waiting"].get("reason")
    return Container(name=spec["name"], type=kind, image=spec.get("image") or "", container_id=container_id,
                     runtime=runtime, state=state, reason=reason, exit_code=exit_code,
                     restart_count=restarts)


def pod_from_api(raw: dict[str, Any]) -> Pod:
    """A Pod from the API's JSON (a v1 Pod object, as ``kubectl get pod -o json`` prints it)."""
    metadata, spec, status = raw.get("metadata") or {}, raw.get("spec") or {}, raw.get("status") or {}
    containers: list[Container] = []
    for kind, spec_key, status_key in (
        ("init", "initContainers", "initContainerStatuses"),
        ("app", "containers", "containerStatuses"),
        ("ephemeral", "ephemeralContainers", "ephemeralContainerStatuses"),
    ):
        by_name = {s["name"]: s for s in status.get(status_key) or []}
        containers.extend(_container(c, by_name.get(c["name"]), kind)  # type: ignore[arg-type]
                          for c in spec.get(spec_key) or [])
    return Pod(namespace=metadata.get("namespace") or "", name=metadata.get("name") or "",
               uid=metadata.get("uid") or "", phase=status.get("phase") or "Unknown",
               node_name=spec.get("nodeName"),
               share_process_namespace=bool(spec.get("shareProcessNamespace")),
               containers=tuple(containers), reason=status.get("reason"), message=status.get("message"))


# --- added for `pidmap node`, `whois`, `show --all` and completion (issue 4): one list call --------

def list_pods(cluster: Cluster, *, namespace: str | None = None, node_name: str | None = None) -> list[Pod]:
    """Pods of one namespace (every namespace when None), optionally only those on ``node_name``.

    One API call: the field selector ``spec.nodeName=NODE`` makes the server do the filtering, as
    the kubelet's own pod list does.
    """
    validate_names(namespace=namespace, node_name=node_name)
    query = [("fieldSelector", f"spec.nodeName={node_name}")] if node_name is not None else []
    path = "/api/v1/pods" if namespace is None else f"/api/v1/namespaces/{namespace}/pods"
    what = f"pods in namespace {namespace}" if namespace else "pods in all namespaces"
    try:
        items = cluster.request("GET", path, query=query, what=what).get("items") or []
    except ApiNotFound as err:
        raise NotFoundError(f'namespace "{namespace}" not found',
                            "list namespaces: kubectl get namespaces") from err
    if namespace is not None and not items:
        # A real API server lists a missing namespace's pods as an empty list (200): only the
        # namespace itself tells a typo from an empty namespace (a 403 there: unknown).
        try:
            cluster.request("GET", f"/api/v1/namespaces/{namespace}", what=f"namespace {namespace}")
        except ApiNotFound as err:
            raise NotFoundError(f'namespace "{namespace}" not found',
                                "list namespaces: kubectl get namespaces") from err
        except ForbiddenError:
            pass
    return [pod_from_api(item) for item in items]


def get_node(cluster: Cluster, node_name: str) -> dict[str, Any]:
    """The Node object; NotFoundError when the cluster has no node of that name."""
    validate_node_name(node_name)
    try:
        return cluster.request("GET", f"/api/v1/nodes/{node_name}", what=f"node {node_name}")
    except ApiNotFound as err:
        raise NotFoundError(f'node "{node_name}" not found', "list nodes: kubectl get nodes") from err
