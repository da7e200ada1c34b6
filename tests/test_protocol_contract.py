"""docs/protocol.md is the contract: what it lists, the server handles, and the other way round."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from stemserver.server.messages import MAX_BUNDLE_DEPTH
from stemserver.server.osc import OscServer
from stemserver.server.protocol import ERROR_CODES, MAX_ID_CHARS, RESULT_FIELDS
from stemserver.server.uploads import MAX_HOST_BYTES, MAX_PENDING_PER_HOST, MAX_TOTAL_BYTES, MIB
from stemserver.server.websocket import MESSAGE_TYPES

ROOT = Path(__file__).parent.parent
DOC = (ROOT / "docs" / "protocol.md").read_text()


def doc_table(heading: str) -> str:
    """The text of a '## heading' section."""
    return DOC.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def first_column(section: str) -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))


def test_every_osc_address_the_server_handles_is_documented_and_vice_versa():
    assert first_column(doc_table("OSC")) == set(OscServer(service=None).handlers)


def test_every_osc_address_in_the_code_is_documented_with_its_arguments():
    sent = {node.values[1].value for name in ("osc.py", "messages.py")
            for node in ast.walk(ast.parse((ROOT / "stemserver" / "server" / name).read_text()))
            if isinstance(node, ast.JoinedStr) and len(node.values) == 2
            and isinstance(node.values[1], ast.Constant) and node.values[1].value.startswith("/")}
    replies = {f"/stemserver{suffix}" for suffix in sent}
    assert {"/stemserver/result", "/stemserver/done", "/stemserver/error", "/stemserver/pong"} <= replies
    for address in replies:  # documented with its arguments, as a table row or as a reply line
        documented = re.search(re.escape(address) + r"(` \| `| +)(id|port)", DOC)
        assert documented, f"{address} is used but its arguments are not documented"


def test_every_websocket_type_is_documented_and_vice_versa():
    assert first_column(doc_table("WebSocket")) == set(MESSAGE_TYPES)


def test_every_error_code_is_documented_and_vice_versa():
    assert first_column(doc_table("Error codes")) == set(ERROR_CODES)



def test_the_documented_result_arguments_are_the_order_the_server_sends():
    line = re.search(r"^/stemserver/result +id (.+)$", DOC, flags=re.MULTILINE).group(1)
    assert tuple(argument.split(":")[0] for argument in line.split()) == RESULT_FIELDS


def test_the_limits_table_states_the_limits_the_code_enforces():
    limits = doc_table("Limits")
    for stated in (f"{MAX_PENDING_PER_HOST} in progress per host", f"{MAX_HOST_BYTES // MIB} MiB per host",
                   f"{MAX_TOTAL_BYTES // MIB} MiB in all", f"at most {MAX_ID_CHARS} characters",
                   f"nested at most {MAX_BUNDLE_DEPTH} deep"):
        assert stated in limits, stated
