"""`pema mcp` driven by the official MCP Python SDK's stdio client: list the tools, call
rewrite, status and examples on the workspace the daemon fixture trained (its adapter is loaded
from pema's cache)."""

from __future__ import annotations

import asyncio

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from conftest import PEMA

TEXT = "Do not be troubled in your heart."


async def session_run(d):
    params = StdioServerParameters(command=PEMA, args=["mcp", "--workspace", str(d.workspace)],
                                   env=d.env)
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            init = await s.initialize()
            assert init.server_info.name == "pema"
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert set(tools) == {"rewrite", "status", "examples"}
            assert tools["rewrite"].input_schema["required"] == ["text"]
            assert "strength" in tools["rewrite"].input_schema["properties"]
            plain = await s.call_tool("rewrite", {"text": TEXT, "mode": "plain"})
            assert not plain.is_error, plain.content
            styled = await s.call_tool("rewrite", {"text": TEXT, "workspace": str(d.workspace)})
            status = await s.call_tool("status", {})
            examples = await s.call_tool("examples", {})
            bad = await s.call_tool("rewrite", {"text": TEXT, "strength": 7})
            return plain, styled, status, examples, bad


def test_mcp_tools_through_the_official_sdk(ready):
    plain, styled, status, examples, bad = asyncio.run(session_run(ready))
    with ready.client() as c:
        want_plain = c.rewrite(TEXT, str(ready.workspace), mode="plain").text
        want = c.rewrite(TEXT, str(ready.workspace)).text
    assert plain.content[0].text == want_plain
    assert not styled.is_error, styled.content
    assert styled.content[0].text == want
    assert status.structured_content["workspaces"][0]["root"] == str(ready.workspace)
    ex = examples.structured_content["examples"]
    assert len(ex) == 3 and all(e["source"] and e["target"] for e in ex), examples
    assert bad.is_error and "strength" in bad.content[0].text
