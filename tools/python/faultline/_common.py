"""What the synchronous and the asyncio API share: request bodies, names, profile lookup,
warnings. No I/O on sockets here (profile files are read, which is local and short)."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import warnings
from typing import Any, Iterable, Optional, Tuple

# resp_error presets (Redis's own wording); anything else is sent as the error text.
REDIS_ERROR_PRESETS = (
    "loading", "readonly", "oom", "busy", "noscript", "masterdown", "tryagain", "clusterdown",
    "noauth", "wrongpass", "max_clients", "unblocked", "moved", "ask",
)


class FaultlineError(Exception):
    """An error reply from the API: `status` and faultline's message."""

    def __init__(self, status: int, message: str, method: str = "", path: str = ""):
        super().__init__(f"{method} {path}: {status} {message}".strip())
        self.status = status
        self.message = message


class UnmatchedToxicWarning(UserWarning):
    """A RESP toxic was removed having matched no command: its `commands`/`keys` filter
    probably names something the client never sends (a typo, another command name)."""


def error_message(text: str) -> str:
    try:
        return json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        return text


def q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def encode_query(query: Optional[dict]) -> str:
    if not query:
        return ""
    query = {k: v for k, v in query.items() if v is not None}
    return "?" + urllib.parse.urlencode(query) if query else ""


def encode_body(body: Any) -> Optional[bytes]:
    if body is None:
        return None
    if isinstance(body, bytes):
        return body
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


# -- toxics --

def toxic_body(type: str, name: Optional[str], stream: str, toxicity: float,
               attributes: dict) -> dict:
    body = {"type": type, "stream": stream, "toxicity": toxicity, "attributes": attributes}
    if name:
        body["name"] = name
    return body


_CONFLICT_NAME = re.compile(r"a toxic named '([^']+)'")


def next_free_name(err: FaultlineError, type: str, stream: str, attempt: int) -> Optional[str]:
    """For a toxic added without a name that collided (409) with one already there (nested
    context managers of the same kind): the name to try next, `<default>_<attempt + 1>`. The
    default name is the server's (read from its 409 text, `a toxic named 'NAME'`), so the first
    toxic keeps the name the API docs give and only the nested ones get a suffix."""
    if err.status != 409:
        return None
    m = _CONFLICT_NAME.search(err.message)
    base = m.group(1) if m else f"{type}_{stream}"
    base = re.sub(r"_\d+$", "", base) if attempt > 0 else base
    return f"{base}_{attempt + 2}"


def resp_error_attrs(error: str, commands: Optional[Iterable[str]], keys: Optional[str],
                     filter_attrs: dict) -> dict:
    attrs = dict(filter_attrs)
    if error.lower() in REDIS_ERROR_PRESETS:
        attrs["preset"] = error.lower()
    else:
        attrs["error"] = error
    if commands is not None:
        attrs["commands"] = list(commands)
    if keys is not None:
        attrs["keys"] = keys
    return attrs


def warn_if_unmatched(proxy: str, toxic: Optional[dict], stacklevel: int) -> None:
    """Warns (UnmatchedToxicWarning) when a RESP toxic (one that counts `matched`) matched no
    command during its block."""
    if not toxic:
        return
    attrs = toxic.get("attributes") or {}
    if "matched" in attrs and attrs.get("matched") == 0:
        filt = {k: attrs[k] for k in ("commands", "keys") if attrs.get(k)}
        warnings.warn(
            f"faultline: toxic {toxic.get('name')!r} ({toxic.get('type')}) on proxy {proxy!r} "
            f"matched no command while it was on"
            + (f" (filter {json.dumps(filt)})" if filt else ""),
            UnmatchedToxicWarning, stacklevel=stacklevel + 1)


# -- clients verdicts --

def clients_query(client: Optional[str], since_ms: Optional[float],
                  until_ms: Optional[float]) -> dict:
    return {"client": client, "since_ms": since_ms, "until_ms": until_ms}


# -- profiles --

def profile_request(profile: Any) -> Tuple[bytes, str]:
    """The body and content type of POST /profiles for a profile given as a dict (sent as
    JSON), TOML or JSON text, a path to a .toml/.json file, or the name of a shipped profile."""
    if isinstance(profile, dict):
        return json.dumps(profile).encode(), "application/json"
    if not isinstance(profile, (str, os.PathLike)):
        raise TypeError(f"a profile is a name, a path, TOML text or a dict, not {type(profile).__name__}")
    text = profile_text(os.fspath(profile))
    kind = "application/json" if text.lstrip().startswith("{") else "application/toml"
    return text.encode(), kind


def profile_text(profile: str) -> str:
    if "\n" not in profile and os.path.isfile(profile):
        with open(profile, encoding="utf-8") as f:
            return f.read()
    if "\n" in profile or "=" in profile or profile.lstrip().startswith("{"):
        return profile  # TOML or JSON text
    tried = []
    for d in profile_dirs():
        for ext in ("", ".toml", ".json"):
            p = os.path.join(d, profile + ext)
            tried.append(p)
            if os.path.isfile(p):
                with open(p, encoding="utf-8") as f:
                    return f.read()
    raise FileNotFoundError(f"no profile named {profile!r}: not a file, and not in "
                            f"{', '.join(profile_dirs())}")


def profile_dict(profile: Any) -> dict:
    """A profile as a dict (TOML parsed with tomllib, Python 3.11+), e.g. to add [expect]."""
    if isinstance(profile, dict):
        return json.loads(json.dumps(profile))
    body, kind = profile_request(profile)
    if kind == "application/json":
        return json.loads(body)
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        raise RuntimeError("changing a TOML profile needs Python 3.11 (tomllib); "
                           "give the profile as a dict instead") from None
    return tomllib.loads(body.decode())


def with_expect(profile: Any, expect: dict) -> dict:
    """The profile as a dict with `expect` added to (or replacing keys of) its [expect]."""
    d = profile_dict(profile)
    d.setdefault("expect", {}).update(expect)
    return d


def profile_name(report: dict) -> str:
    return report.get("name") or (report.get("profile") or {}).get("name")


def profile_done(report: dict) -> bool:
    """True when a profile's timeline ended and its [expect] verdicts (if any) are decided."""
    if report.get("state") in ("running", "idle"):
        return False
    expect = report.get("expect")
    return expect is None or bool(expect.get("decided"))


def expect_failures(report: dict) -> list:
    """The [expect] verdicts of a report that failed (empty when none failed or none declared)."""
    expect = report.get("expect") or {}
    return [v for v in expect.get("verdicts", []) if v.get("state") == "FAIL"]


def describe_verdicts(report: dict) -> str:
    expect = report.get("expect") or {}
    lines = [f"profile {profile_name(report)!r}: {report.get('state')}"]
    for v in expect.get("verdicts", []):
        lines.append(f"  {v.get('proxy', ''):<8} {v.get('key', ''):<24} expected "
                     f"{v.get('expected', ''):<12} measured {v.get('measured', ''):<28} "
                     f"{v.get('state')}")
    for proxy, c in (report.get("clients") or {}).items():
        if isinstance(c, dict) and c.get("resends", {}).get("total"):
            lines.append(f"  {proxy}: resends by command {json.dumps(c['resends'].get('by_command'))}, "
                         f"latest {json.dumps(c['resends'].get('recent', [])[-3:])}")
    return "\n".join(lines)


def profile_dirs() -> list:
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = []
    if os.environ.get("FAULTLINE_PROFILES"):
        dirs.append(os.environ["FAULTLINE_PROFILES"])
    root = source_root()
    if root:
        dirs.append(os.path.join(root, "profiles"))
    # Installed with the package (setup.py copies them), then cmake --install's share/faultline/.
    dirs.append(os.path.join(here, "profiles"))
    dirs.append(os.path.normpath(os.path.join(here, "..", "..", "profiles")))
    out = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def source_root() -> Optional[str]:
    """The faultline source tree: the one this package sits in (tools/python/faultline), else
    the one an installed copy was built from (recorded by setup.py)."""
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.normpath(os.path.join(here, "..", "..", ".."))
    if os.path.exists(os.path.join(tree, "tools", "run")):
        return tree
    try:
        from ._source import SOURCE_ROOT  # type: ignore
    except ImportError:
        return None
    if SOURCE_ROOT and os.path.isdir(SOURCE_ROOT):
        return SOURCE_ROOT
    return None
