r"""Screening of incoming JSON-RPC messages, so that no request goes unanswered.

The ``mcp`` SDK's transports validate each incoming message against their pydantic models and drop the ones
that fail (stdio logs them at DEBUG, python-sdk issue 2751), so a client that sends a malformed request with an
``id`` waits for an answer forever. :func:`check_message` runs before the SDK sees a message: a message the SDK
would handle returns ``None`` and is passed on untouched; anything else returns a :class:`Rejection` carrying the
JSON-RPC 2.0 error response the transport writes instead.

Error codes (JSON-RPC 2.0, section 5.1):

* ``-32700`` Parse error, ``"id": null``: not JSON at all (also ``NaN``/``Infinity``, which are not JSON).
* ``-32600`` Invalid Request: not a JSON object; ``"jsonrpc"`` missing or not ``"2.0"``; ``"method"`` missing or
  not a string; ``"params"`` a scalar or ``null`` (JSON-RPC allows only an object or array); an ``id`` that is
  ``null``, a boolean, an object, an array (``"id": null`` in the answer) or a non-integer number (the SDK takes
  only strings and integers; the number is echoed); a lone UTF-16 surrogate (``"\ud800"``) or nesting deeper than
  :data:`MAX_DEPTH` outside ``params``; a message longer than the transport's bound; a batch (below).
* ``-32602`` Invalid params: ``params`` an array (MCP methods take named parameters), or a lone surrogate or
  nesting deeper than :data:`MAX_DEPTH` inside ``params``.

The answer echoes the request's ``id`` whenever it is a string or a number, so the client can match it, and
``null`` otherwise. Notifications and client responses (messages with no ``id``, or with ``result``/``error``) are
never answered (JSON-RPC forbids it); a malformed one is dropped with a warning in the log, and over HTTP the POST
gets a 400 with an id-less error body, as MCP's streamable-HTTP transport specifies.

Batches: MCP 2025-06-18 removed JSON-RPC batching and the SDK does not process arrays, so an array is answered
(per JSON-RPC 2.0 section 6) with an array holding one ``-32600`` error for each member that expects an answer (a
request with an id, or a member that is not a valid message at all); an empty array gets a single ``-32600``.

Answers never contain lone surrogates: :func:`dumps` replaces them with U+FFFD.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "MAX_DEPTH",
    "MAX_LINE_CHARS",
    "PARSE_ERROR",
    "Rejection",
    "check_message",
    "dumps",
    "message_too_large",
    "wire_safe",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602

#: Deepest nesting of arrays and objects accepted in one message (the message object itself is level 1). The
#: SDK's JSON parser gives up near 200 levels, and no MCP call here needs more than a handful.
MAX_DEPTH = 100

#: Longest stdio line accepted, in characters (64 Mi): room for the engine's own limits (256 texts of 200,000
#: characters each), small enough to keep one line's memory bounded.
MAX_LINE_CHARS = 64 * 1024 * 1024

# How much of an over-long message is kept to look for its id.
_HEAD_CHARS = 64 * 1024
# Most regex steps spent skipping one over-deep value to look for the id past it.
_SKIP_STEPS = 1_000_000

_SURROGATE = re.compile("[\ud800-\udfff]")
# A \uD800-\uDFFF escape in raw JSON text: the only way a lone surrogate gets into text read as UTF-8.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_WS = re.compile(r"[ \t\n\r]*")
# One token of a JSON value for skipping it: a string, a run of opening or closing brackets, or anything else.
_RUN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]+|[\]}]+|[^"\[\]{}]+', re.S)
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Rejection:
    """Why a message was not passed on, and the JSON-RPC error that answers it.

    Attributes:
        code: The JSON-RPC error code.
        message: What was wrong and what is allowed.
        id: The id the answer carries (``None`` for ``"id": null``).
        answer: False for a notification or a client response: JSON-RPC forbids answering those.
        batch: For a JSON array, the verdict on each member.
    """

    code: int
    message: str
    id: str | int | float | None = None
    answer: bool = True
    batch: tuple[Rejection, ...] | None = None

    def response(self, *, with_id: bool = True) -> dict[str, Any]:
        """The JSON-RPC error response object (``with_id=False``: ``"id": null``)."""
        return {
            "jsonrpc": "2.0",
            "id": self.id if with_id else None,
            "error": {"code": self.code, "message": self.message},
        }

    def wire(self) -> str | None:
        """What to send back on a message stream (stdio), one JSON text without newline; None: send nothing."""
        if self.batch:
            answers = [member.response() for member in self.batch if member.answer]
            return dumps(answers) if answers else None
        return dumps(self.response()) if self.answer else None

    def http_body(self) -> str:
        """The body of the HTTP error reply, which is always sent (id-less for notifications and responses)."""
        if self.batch:
            answers = [member.response() for member in self.batch if member.answer]
            if answers:
                return dumps(answers)
        return dumps(self.response(with_id=self.answer))


def dumps(value: Any) -> str:
    """Compact JSON text of ``value`` with any lone surrogate replaced by U+FFFD (so it always encodes as UTF-8)."""
    return wire_safe(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def wire_safe(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD; the same object when there are none (the usual case)."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub("\ufffd", text)


def check_message(text: str) -> Rejection | None:
    """Screen one incoming JSON-RPC message (a stdio line or an HTTP body).

    Returns:
        None when the SDK can take the message as it is; otherwise the :class:`Rejection` to answer with.
    """
    if not text.strip():
        return Rejection(PARSE_ERROR, "Parse error: the message is empty; send one JSON-RPC 2.0 object")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return _too_deep(text)
    except ValueError as exc:  # JSONDecodeError, and our NaN/Infinity refusal
        return Rejection(PARSE_ERROR, f"Parse error: the message is not valid JSON ({exc}); send a JSON-RPC 2.0 object")
    if isinstance(value, list):
        return _batch(value)
    if not isinstance(value, dict):
        return Rejection(
            INVALID_REQUEST, f"Invalid Request: the message is {_kind(value)}; it must be a JSON-RPC 2.0 object"
        )
    # Walking the whole message is needed only when the raw text could hold a lone surrogate or deep nesting.
    inspect = (
        _ESCAPED_SURROGATE.search(text) is not None
        or (not text.isascii() and _SURROGATE.search(text) is not None)
        or text.count("[") + text.count("{") > MAX_DEPTH
    )
    return _check_object(value, deep_keys=frozenset(), inspect=inspect)


def message_too_large(head: str, size: str, limit: str) -> Rejection:
    """The answer to a message over the transport's size bound; ``head`` is its beginning (the id is looked for there).

    Args:
        head: The first characters of the message.
        size: How big it was, for the message (e.g. ``"more than 67,108,864 characters"``).
        limit: The bound, for the message (e.g. ``"67,108,864 characters"``).
    """
    members, _, _ = _top_level_members(head[:_HEAD_CHARS])
    request_id = _echo_id(members.get("id"))
    expects_answer = "method" in members or not ({"result", "error"} & members.keys())
    return Rejection(
        INVALID_REQUEST,
        f"Invalid Request: the message is {size}; at most {limit} are accepted (send less per call)",
        request_id,
        answer=expects_answer,
    )


# ---------------------------------------------------------------------------------------------- internals
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _kind(value: Any) -> str:
    """``value``'s JSON type with its article, for error messages ("a number", "an array", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _echo_id(value: Any) -> str | int | float | None:
    """The id to put in an answer: the request's own when it is a clean string or a number, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and not _SURROGATE.search(value):
        return value
    return None


def _id_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f'"id" must be a string or an integer (MCP forbids null); got {_kind(value)}'
    if isinstance(value, str) and _SURROGATE.search(value):
        return '"id" contains a lone UTF-16 surrogate; it must be valid Unicode'
    return None


def _inspect(value: Any, depth: int) -> tuple[bool, bool]:
    """(nesting deeper than MAX_DEPTH, a lone surrogate somewhere) for ``value`` found at nesting ``depth``."""
    too_deep = surrogate = False
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            surrogate = surrogate or _SURROGATE.search(item) is not None
        elif isinstance(item, dict):
            if level + 1 > MAX_DEPTH:
                too_deep = True
                continue
            for key, member in item.items():
                surrogate = surrogate or _SURROGATE.search(key) is not None
                stack.append((member, level + 1))
        elif isinstance(item, list):
            if level + 1 > MAX_DEPTH:
                too_deep = True
                continue
            stack.extend((member, level + 1) for member in item)
        if too_deep and surrogate:
            break
    return too_deep, surrogate


def _check_object(message: dict[str, Any], *, deep_keys: frozenset[str], inspect: bool) -> Rejection | None:
    """Screen a message object; ``deep_keys`` are members known to nest too deep (their values are absent)."""
    present = message.keys() | deep_keys
    has_id = "id" in message
    request_id = _echo_id(message.get("id")) if has_id else None
    if "method" not in present and "id" in present and ("result" in present or "error" in present):
        problem = _response_problem(message, deep_keys, inspect)
        return None if problem is None else Rejection(INVALID_REQUEST, problem, request_id, answer=False)

    def invalid(problem: str) -> Rejection:
        return Rejection(INVALID_REQUEST, f"Invalid Request: {problem}", request_id)

    if message.get("jsonrpc") != "2.0":
        got = "missing" if "jsonrpc" not in present else "not that string"
        return invalid(f'"jsonrpc" must be the string "2.0" (it is {got})')
    if not isinstance(message.get("method"), str):
        got = "missing" if "method" not in present else "not a string"
        return invalid(f'"method" must be a string naming the MCP method (it is {got})')
    if "id" in deep_keys:
        return invalid(f'"id" nests deeper than {MAX_DEPTH} levels; it must be a string or an integer')
    if has_id:
        id_problem = _id_problem(message["id"])
        if id_problem is not None:
            return invalid(id_problem)
    if "params" in message and not isinstance(message["params"], (dict, list)):
        return invalid(f'"params" must be an object when present (it is {_kind(message["params"])})')
    if deep_keys - {"params"}:
        return invalid(f"a member nests deeper than {MAX_DEPTH} levels; at most {MAX_DEPTH} are accepted")
    if inspect:
        too_deep, surrogate = _inspect({key: value for key, value in message.items() if key != "params"}, 0)
        if surrogate:
            return invalid("it contains a lone UTF-16 surrogate (e.g. \\ud800); strings must be valid Unicode")
        if too_deep:
            return invalid(f"it nests deeper than {MAX_DEPTH} levels; at most {MAX_DEPTH} are accepted")

    params_problem = _params_problem(message, deep_keys, inspect)
    if params_problem is None:
        return None
    return Rejection(INVALID_PARAMS, f"Invalid params: {params_problem}", request_id, answer=has_id)


def _params_problem(message: dict[str, Any], deep_keys: frozenset[str], inspect: bool) -> str | None:
    if "params" in deep_keys:
        return f'"params" nests deeper than {MAX_DEPTH} levels; at most {MAX_DEPTH} are accepted'
    if "params" not in message:
        return None
    params = message["params"]
    if isinstance(params, list):
        return '"params" must be an object of named parameters (MCP takes no positional parameters); got an array'
    if inspect:
        too_deep, surrogate = _inspect(params, 1)
        if surrogate:
            return '"params" contains a lone UTF-16 surrogate (e.g. \\ud800); strings must be valid Unicode'
        if too_deep:
            return f'"params" nests deeper than {MAX_DEPTH} levels; at most {MAX_DEPTH} are accepted'
    return None


def _response_problem(message: dict[str, Any], deep_keys: frozenset[str], inspect: bool) -> str | None:
    """What is wrong with a client's response to a server request, if anything (it is never answered)."""
    if deep_keys:
        return f"response nests deeper than {MAX_DEPTH} levels"
    if message.get("jsonrpc") != "2.0":
        return 'response without "jsonrpc": "2.0"'
    id_problem = _id_problem(message["id"])
    if id_problem is not None:
        return f"response: {id_problem}"
    if ("result" in message) == ("error" in message):
        return 'response must carry exactly one of "result" and "error"'
    if "result" in message and not isinstance(message["result"], dict):
        return '"result" must be an object'
    if "error" in message:
        error = message["error"]
        code = error.get("code") if isinstance(error, dict) else None
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(error.get("message"), str):
            return '"error" must be an object with an integer "code" and a string "message"'
    if inspect:
        too_deep, surrogate = _inspect(message, 0)
        if surrogate:
            return "response contains a lone UTF-16 surrogate"
        if too_deep:
            return f"response nests deeper than {MAX_DEPTH} levels"
    return None


def _batch(members: list[Any]) -> Rejection:
    note = "batches are not supported (MCP 2025-06-18 removed JSON-RPC batching); send each message on its own"
    if not members:
        return Rejection(INVALID_REQUEST, f"Invalid Request: an empty array; {note}")
    verdicts: list[Rejection] = []
    for member in members:
        if not isinstance(member, dict):
            verdicts.append(Rejection(INVALID_REQUEST, f"Invalid Request: a batch member is not an object; {note}"))
            continue
        has_id = "id" in member
        is_response = "method" not in member and has_id and ("result" in member or "error" in member)
        is_notification = "method" in member and not has_id
        verdicts.append(
            Rejection(
                INVALID_REQUEST,
                f"Invalid Request: {note}",
                _echo_id(member.get("id")) if has_id else None,
                answer=not (is_response or is_notification),
            )
        )
    return Rejection(INVALID_REQUEST, f"Invalid Request: {note}", batch=tuple(verdicts))


def _too_deep(text: str) -> Rejection:
    """A message JSON could not parse for its depth: find its id and where the depth is, without recursing."""
    if text.lstrip().startswith("["):
        return _batch([None])  # an over-deep array: a batch, and one we cannot look into
    members, deep_keys, complete = _top_level_members(text)
    if not complete:
        return Rejection(PARSE_ERROR, f"Parse error: the message is not valid JSON or nests deeper than {MAX_DEPTH}")
    return _check_object(members, deep_keys=deep_keys, inspect=True) or Rejection(
        INVALID_REQUEST, f"Invalid Request: it nests deeper than {MAX_DEPTH} levels", _echo_id(members.get("id"))
    )


def _top_level_members(text: str) -> tuple[dict[str, Any], frozenset[str], bool]:
    """Parse a JSON object one member at a time: (members parsed, members too deep to parse, reached the end).

    A member whose value is too deep for ``json`` is skipped by bracket counting (bounded work) and its name
    recorded. Stops at the first syntax error, keeping what it had (used on message heads, too).
    """
    members: dict[str, Any] = {}
    deep: set[str] = set()
    end = len(text)
    i = _skip_ws(text, 0)
    if i >= end or text[i] != "{":
        return members, frozenset(deep), False
    i = _skip_ws(text, i + 1)
    if i < end and text[i] == "}":
        return members, frozenset(deep), _skip_ws(text, i + 1) == end
    while i < end:
        if text[i] != '"':
            break
        try:
            key, i = _DECODER.raw_decode(text, i)
        except ValueError:
            break
        i = _skip_ws(text, i)
        if i >= end or text[i] != ":":
            break
        i = _skip_ws(text, i + 1)
        try:
            value, i = _DECODER.raw_decode(text, i)
        except RecursionError:
            skipped = _skip_value(text, i)
            if skipped is None:
                break
            deep.add(key)
            i = skipped
        except ValueError:
            break
        else:
            members[key] = value
        i = _skip_ws(text, i)
        if i < end and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < end and text[i] == "}":
            return members, frozenset(deep), _skip_ws(text, i + 1) == end
        break
    return members, frozenset(deep), False


def _skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _skip_value(text: str, start: int) -> int | None:
    """The index just past the array or object opening at ``start``, by bracket counting; None if not found."""
    depth = 0
    pos = start
    for _ in range(_SKIP_STEPS):
        match = _RUN.match(text, pos)
        if match is None:
            return None
        token = match.group()
        if token[0] in "[{":
            depth += len(token)
        elif token[0] in "]}":
            if len(token) >= depth:
                return match.start() + depth
            depth -= len(token)
        elif depth == 0:
            return None
        pos = match.end()
    return None
