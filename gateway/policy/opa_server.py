"""``PolicyEngine`` on an OPA server (the production / scale-out engine), through ``opa-python-client``.

Two modes, one query path:

- ``push``: the gateway owns the policy of its OPA sidecar. It uploads every module of the ``Bundle``
  (``PUT /v1/policies/<id>``) and its data (``PUT /v1/data/<path>``), removes the modules of an earlier push that the
  bundle no longer has, and records the bundle's label as its revision.
- ``bundle``: OPA serves the bundle itself (``opa run -s -b policies/``); the gateway only queries it and records
  the manifest revision OPA reports. Every answer carries OPA's provenance, so a decision made by another revision
  (OPA reloaded its bundle) is refused instead of being audited under the wrong revision.

Every query asks for ``strict-builtin-errors``: without it OPA turns a failing built-in into an undefined expression,
which can stop a ``deny`` rule from firing (fail open). regorus and the conformance oracle raise such errors too.

REST API: https://www.openpolicyagent.org/docs/rest-api (Policy, Data and Health APIs, Provenance). Needs OPA >= 1.0:
the bundle is Rego v1 (``"rego_version": 1``) and is uploaded verbatim (``rego_compat=False``), never rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from opa_client import OpaClient
from opa_client.errors import (
    ConnectionsError,
    DeleteDataError,
    DeletePolicyError,
    PolicyNotFoundError,
    QueryExecuteError,
    RegoParseError,
    TypeException,
)

from gateway.policy.base import EngineClosed, PolicyEngineError
from gateway.policy.bundle import Bundle

Mode = Literal["push", "bundle"]
DEFAULT_ID_PREFIX = "mediagate-gateway"

_T = TypeVar("_T")
_Step = tuple[str, Callable[[], object]]  # what it does (for messages), the request
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")
# OPA answers these for a module or document that conflicts with what it holds; a later step of the same push (the
# module a new one depends on, the removal of a stale one) can resolve them, so they are retried, not fatal at once.
_CONFLICTS = (RegoParseError, DeletePolicyError, DeleteDataError)
_CLIENT_ERRORS = (PolicyNotFoundError, QueryExecuteError, ConnectionsError, TypeException)
_ABSENT = object()


@dataclass(frozen=True)
class OpaAddress:
    """Where OPA listens, split the way ``OpaClient`` wants it (it builds URLs from host and port, without a path)."""

    host: str
    port: int
    ssl: bool


def parse_opa_url(url: str) -> OpaAddress:
    """``http(s)://host[:port]`` -> ``OpaAddress``. Port defaults follow the scheme (80, 443), not OPA's 8181."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"`url` must look like http://host:port but is {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"`url` must be scheme://host[:port], without path, query or credentials, but is {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"`url` has an invalid port: {url!r}") from exc
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return OpaAddress(host, port or (443 if parts.scheme == "https" else 80), parts.scheme == "https")


def rule_endpoint(path: str) -> str:
    """``data.mediagate.pre.decision`` -> ``mediagate/pre/decision``, the Data API path of that document."""
    parts = path.split(".")
    if len(parts) < 2 or parts[0] != "data" or not all(_IDENT.fullmatch(p) for p in parts[1:]):
        raise PolicyEngineError(f"{path!r} is not a rule path of the form data.<package>.<rule>")
    return "/".join(parts[1:])


def policy_id(prefix: str, rel: str) -> str:
    """The Policy API id of bundle file ``rel``: ``<prefix>/<rel>``.

    Ids are stable across revisions on purpose: a new revision replaces each module in place (two live copies of one
    package would conflict), and any id under the prefix that the new bundle lacks is a module to remove.
    """
    parts = rel.split("/")
    if not all(_SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts):
        raise PolicyEngineError(f"{rel}: a pushed policy path may only use letters, digits and . _ - / segments")
    return f"{prefix}/{rel}"


def package_path(rel: str, source: str) -> tuple[str, ...]:
    """The package a module declares, as path segments (``mediagate.pre`` -> ``("mediagate", "pre")``)."""
    match = _PACKAGE.search(source)
    if match is None:
        raise PolicyEngineError(f"{rel}: no package declaration")
    return tuple(match.group(1).split("."))


def data_writes(data: Mapping[str, Any], packages: Iterable[tuple[str, ...]]) -> list[tuple[str, dict[str, Any]]]:
    """Split the bundle's data into ``(data API path, object)`` writes that OPA accepts next to the policies.

    OPA refuses base data at a path that holds or contains a package's rules (the Data API answers 404 "write
    conflict"), so data is written at the shallowest paths that are not a package or one of its parents.
    """
    prefixes = {pkg[:i] for pkg in packages for i in range(1, len(pkg) + 1)}
    writes: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Mapping[str, Any], at: tuple[str, ...]) -> None:
        for key, value in node.items():
            here = (*at, key)
            where = "data." + ".".join(here)
            if not _SEGMENT.fullmatch(key):
                raise PolicyEngineError(f"{where}: push mode can only write data keys of letters, digits and . _ -")
            if here in prefixes:
                if not isinstance(value, dict):
                    raise PolicyEngineError(f"{where} is data but also a package path; OPA cannot hold both")
                walk(value, here)
            elif isinstance(value, dict):
                writes.append(("/".join(here), value))
            else:
                raise PolicyEngineError(f"{where}: push mode writes objects only, this is a {type(value).__name__}")

    walk(data, ())
    return writes


def _describe(response: requests.Response | None) -> str:
    """``HTTP 400: invalid_parameter: ...`` from an OPA error answer, or its raw text when it is not OPA's JSON."""
    if response is None:
        return "no response"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("message" in body or "error" in body):
        details = "; ".join(str(e.get("message", e)) for e in body.get("errors") or [] if isinstance(e, dict))
        text = f"{body.get('code', '')}: {body.get('message', body.get('error'))}"
        text += f" ({details})" if details else ""
    else:
        text = response.text[:200]
    return f"HTTP {response.status_code}: {text}"


class OpaServerEngine:
    """``PolicyEngine`` on an OPA server. Safe under concurrent requests (one pooled HTTP session)."""

    name = "opa-server"

    def __init__(
        self,
        bundle: Bundle | None = None,
        *,
        url: str,
        mode: Mode = "push",
        timeout_s: float = 2.0,
        retries: int = 2,
        token: str | None = None,
        ca_bundle: str | None = None,
        bundle_name: str | None = None,
        id_prefix: str = DEFAULT_ID_PREFIX,
    ) -> None:
        if mode not in ("push", "bundle"):
            raise ValueError(f"`mode` must be 'push' or 'bundle' but is {mode!r}")
        if mode == "push" and bundle is None:
            raise ValueError("`bundle` is required in push mode: it is what the gateway uploads")
        if timeout_s <= 0:
            raise ValueError(f"`timeout_s` must be positive but is {timeout_s}")
        if retries < 0:
            raise ValueError(f"`retries` must be at least 0 but is {retries}")
        if not all(_SEGMENT.fullmatch(p) for p in id_prefix.split("/")):
            raise ValueError(f"`id_prefix` must be letters, digits and . _ - / segments but is {id_prefix!r}")
        address = parse_opa_url(url)
        self.url, self.mode, self.bundle, self.timeout_s = url, mode, bundle, timeout_s
        self.id_prefix = id_prefix
        self.bundle_name = bundle_name
        self._closed = False
        self._modules: dict[str, str] = {}
        self._data: list[tuple[str, dict[str, Any]]] = []
        # `ssl` doubles as requests' `verify`: True checks against the system CAs, a path against that CA bundle.
        ssl: bool | str = (ca_bundle or True) if address.ssl else False
        self._client = OpaClient(host=address.host, port=address.port, ssl=ssl, timeout=timeout_s, retries=retries,
                                 token=token)
        try:
            if bundle is not None and mode == "push":
                self._modules = {policy_id(id_prefix, rel): src for rel, src in bundle.policies}
                self._data = data_writes(bundle.data, [package_path(rel, src) for rel, src in bundle.policies])
                self.revision = bundle.label
                self.push()
            else:
                self.revision = self._served_revision()
                if bundle is not None and bundle.revision != self.revision:
                    raise PolicyEngineError(
                        f"OPA at {url} serves bundle revision {self.revision!r} but the gateway's own copy of the "
                        f"bundle is revision {bundle.revision!r}"
                    )
        except BaseException:
            self._client.close_connection()
            raise

    # -- transport -------------------------------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        """Run one client call; a transport or protocol failure becomes a ``PolicyEngineError`` naming ``what``."""
        try:
            return call()
        except requests.ConnectionError as exc:
            # A connect timeout is a Timeout too; a read timeout after urllib3's retries (GETs) is a ConnectionError
            # around ReadTimeoutError. (NewConnectionError, "refused", subclasses ConnectTimeoutError: not checked.)
            reason = getattr(exc.args[0] if exc.args else None, "reason", None)
            if isinstance(exc, requests.Timeout) or isinstance(reason, urllib3.exceptions.ReadTimeoutError):
                raise PolicyEngineError(f"{what}: no answer from OPA at {self.url} within {self.timeout_s} s") from exc
            cause = _ERRNO.search(str(exc))
            raise PolicyEngineError(f"{what}: cannot reach OPA at {self.url}: {cause[0] if cause else exc}") from exc
        except requests.Timeout as exc:  # a read timeout
            raise PolicyEngineError(f"{what}: no answer from OPA at {self.url} within {self.timeout_s} s") from exc
        except requests.HTTPError as exc:
            raise PolicyEngineError(f"{what}: OPA answered {_describe(exc.response)}") from exc
        except requests.JSONDecodeError as exc:  # the answer
            raise PolicyEngineError(f"{what}: the answer from {self.url} is not JSON ({exc})") from exc
        except requests.exceptions.InvalidJSONError as exc:  # the request body, e.g. a NaN in the input
            raise PolicyEngineError(f"{what}: the document sent to OPA is not JSON: {exc}") from exc
        except requests.RequestException as exc:
            raise PolicyEngineError(f"{what}: the request to OPA at {self.url} failed: {exc}") from exc
        except _CONFLICTS:
            raise  # push steps OPA refused: `_run` retries them
        except _CLIENT_ERRORS as exc:
            raise PolicyEngineError(f"{what}: OPA at {self.url} answered {exc.args or exc}") from exc

    def _policy_raw(self, ident: str) -> str | None:
        """The Rego OPA holds under policy id ``ident``, None when it holds none."""

        def get() -> Any:
            try:
                return self._client.get_policy(ident)
            except PolicyNotFoundError:
                return {}

        held = self._call(f"GET policy {ident}", get)
        raw = (held.get("result") or {}).get("raw") if isinstance(held, dict) else None
        return raw if isinstance(raw, str) else None

    def _data_value(self, where: str) -> Any:
        """The base document OPA holds at ``where``, ``_ABSENT`` when there is none."""

        def get() -> Any:
            try:
                return self._client.get_data(where)["result"]
            except PolicyNotFoundError:
                return _ABSENT

        return self._call(f"GET data {where}", get)

    # -- the PolicyEngine protocol ---------------------------------------------------------------------------------

    def evaluate(self, path: str, input_doc: Mapping[str, Any]) -> Any:
        if self._closed:
            raise EngineClosed(f"the OPA engine for revision {self.revision} is closed")
        endpoint = rule_endpoint(path)
        params = {"strict-builtin-errors": "true"}
        if self.mode == "bundle":
            params["provenance"] = "true"
        try:
            body = self._call(path, lambda: self._client.query_rule(dict(input_doc), endpoint, query_params=params))
        except TypeError as exc:  # requests serialises the input: a set, a datetime
            raise PolicyEngineError(f"{path}: the document sent to OPA is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise PolicyEngineError(f"{path}: OPA's answer is not a JSON object: {str(body)[:200]}")
        if self.mode == "bundle":
            served = self._provenance_revision(body)
            if served != self.revision:
                # Fail closed: the decision would be audited under a revision that did not make it.
                raise PolicyEngineError(
                    f"{path}: OPA decided with bundle revision {served!r}, not {self.revision!r}; restart the gateway "
                    "(or reload its policy engine) to adopt the new revision"
                )
        if "result" not in body:
            # The Data API answers 200 without `result` for an undefined document. Undefined is no decision.
            raise PolicyEngineError(f"{path} is undefined for this input (OPA at {self.url})")
        return body["result"]

    def check(self) -> None:
        """Raise unless OPA is healthy and holds exactly what this engine would answer with."""
        if self._closed:
            raise PolicyEngineError(f"the OPA engine for revision {self.revision} is closed")
        query = {"bundles": "true"} if self.mode == "bundle" else None
        if not self._client.check_health(query=query):
            raise PolicyEngineError(f"OPA at {self.url} is not healthy (GET /health did not answer 200)")
        if self.mode == "bundle":
            served = self._served_revision()
            if served != self.revision:
                raise PolicyEngineError(f"OPA at {self.url} now serves revision {served!r}, not {self.revision!r}")
            return
        for ident, source in self._modules.items():
            if self._policy_raw(ident) != source:
                raise PolicyEngineError(f"OPA at {self.url} does not hold policy {ident} as revision {self.revision} "
                                        "pushed it (restarted, or changed by someone else?)")
        for where, value in self._data:
            if self._data_value(where) != value:
                raise PolicyEngineError(f"OPA at {self.url} does not hold data {where} as revision {self.revision} "
                                        "pushed it (restarted, or changed by someone else?)")

    def close(self) -> None:
        """Close the HTTP session. Idempotent. Pushed policies stay on OPA for the engine that replaces this one."""
        if not self._closed:
            self._closed = True
            self._client.close_connection()

    # -- push mode -------------------------------------------------------------------------------------------------

    def push(self) -> None:
        """Upload the bundle's data and modules and remove stale modules under ``id_prefix``; roll back on failure.

        OPA's REST API changes one module per request and compiles everything on each, so a module may be refused
        until the module it depends on has arrived (or a stale one left): every step is retried in rounds until all
        succeed or a round makes no progress. Not atomic: during a push OPA briefly holds a mix of both revisions.
        Where that matters, use bundle mode.
        """
        if self.mode != "push":
            raise PolicyEngineError("push() is for push mode; in bundle mode OPA loads the bundle itself")
        modules, data = self._snapshot()
        stale = [ident for ident in modules if ident not in self._modules]
        try:
            self._run(self._steps(dict(self._data), self._modules, stale))
        except PolicyEngineError as exc:
            # Put back what the previous push left, so the engine still serving from it is not left on a mix.
            restore = {where: data.get(where) for where, _ in self._data}
            try:
                self._run(self._steps(restore, modules, stale=[i for i in self._modules if i not in modules]))
            except PolicyEngineError as again:
                raise PolicyEngineError(f"{exc}; rolling back also failed, OPA at {self.url} holds a mix of "
                                        f"revisions and must be restarted: {again}") from exc
            raise

    def _snapshot(self) -> tuple[dict[str, str], dict[str, Any]]:
        """Our modules (id -> Rego) and the current value of each data path we write (absent ones left out)."""
        listed = self._call("GET policies", self._client.get_policies_list)
        modules = {str(i): self._policy_raw(str(i)) for i in listed if str(i).startswith(self.id_prefix + "/")}
        data = {where: self._data_value(where) for where, _ in self._data}
        return (
            {ident: raw for ident, raw in modules.items() if raw is not None},
            {where: value for where, value in data.items() if value is not _ABSENT},
        )

    def _steps(self, data: Mapping[str, Any], modules: Mapping[str, str], stale: list[str]) -> list[_Step]:
        """Write ``data`` (None: delete), put ``modules``, delete ``stale`` modules: the requests of one push."""
        client = self._client
        steps: list[_Step] = [
            (f"PUT data {w}", partial(client.update_or_create_data, v, w)) if v is not None
            else (f"DELETE data {w}", partial(self._delete, client.delete_data, w))
            for w, v in data.items()
        ]
        steps += [(f"PUT policy {i}", partial(client.update_policy_from_string, src, i, rego_compat=False))
                  for i, src in modules.items()]
        return steps + [(f"DELETE policy {i}", partial(self._delete, client.delete_policy, i)) for i in stale]

    def _run(self, steps: list[_Step]) -> None:
        pending = steps
        while pending:
            refused: list[_Step] = []
            errors: list[str] = []
            for what, step in pending:
                try:
                    self._call(what, step)
                except _CONFLICTS as exc:
                    refused.append((what, step))
                    errors.append(f"{what}: {exc}")
            if len(refused) == len(pending):
                raise PolicyEngineError(f"OPA at {self.url} refused the push: " + " | ".join(errors))
            pending = refused

    @staticmethod
    def _delete(delete: Callable[[str], object], ident: str) -> None:
        try:
            delete(ident)
        except (DeletePolicyError, DeleteDataError) as exc:
            if exc.expression != "resource_not_found":  # already gone is what we wanted
                raise

    # -- bundle mode -----------------------------------------------------------------------------------------------

    def _served_revision(self) -> str:
        """The manifest revision of the bundle OPA serves.

        OPA stores each activated bundle's manifest at ``data.system.bundles[<name>].manifest`` (``ManifestStoragePath``
        in OPA's ``bundle/store.go``), readable through the Data API; a bundle loaded with ``opa run -b DIR`` is named
        after DIR. With several bundles, ``bundle_name`` says which one holds the gateway's policies.
        """
        bundles = self._data_value("system/bundles")
        if not isinstance(bundles, dict) or not bundles:
            raise PolicyEngineError(f"OPA at {self.url} serves no bundle (start it with `opa run -s -b <bundle dir>`)")
        if self.bundle_name is None:
            if len(bundles) != 1:
                raise PolicyEngineError(f"OPA at {self.url} serves bundles {sorted(bundles)}; set `bundle_name`")
            self.bundle_name = next(iter(bundles))
        if self.bundle_name not in bundles:
            raise PolicyEngineError(f"OPA at {self.url} serves bundles {sorted(bundles)}, not {self.bundle_name!r}")
        revision = (bundles[self.bundle_name].get("manifest") or {}).get("revision")
        if not isinstance(revision, str) or not revision:
            raise PolicyEngineError(
                f"bundle {self.bundle_name!r} on OPA at {self.url} has no manifest revision; decisions could not be "
                "attributed to a policy revision"
            )
        return revision

    def _provenance_revision(self, body: Mapping[str, Any]) -> str | None:
        """The revision OPA says answered this query (``provenance.bundles[name].revision``; legacy ``revision``)."""
        provenance = body.get("provenance") or {}
        served = (provenance.get("bundles") or {}).get(self.bundle_name) or {}
        revision = served.get("revision", provenance.get("revision"))
        return revision if isinstance(revision, str) else None
