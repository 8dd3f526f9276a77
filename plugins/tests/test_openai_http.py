"""The OpenAI-compatible endpoint of `pema serve --http`, driven by the `openai` package and
curl against the real daemon and model. A rewrite through HTTP must equal the same rewrite
through pema/rewrite (greedy decoding is deterministic)."""

from __future__ import annotations

import json
import subprocess

import openai
import pytest

TEXT = "Do not be troubled in your heart, for I will come back to you."


def oa(d, key=None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{d.http}/v1", api_key=key or d.token, max_retries=0)


def test_models_lists_each_workspace_and_the_plain_model(daemon):
    ids = [m.id for m in oa(daemon).models.list()]
    assert ids == [daemon.model, "pema/plain"]


def test_chat_plain_equals_pema_rewrite_streamed_and_not(daemon):
    c = oa(daemon)
    r = c.chat.completions.create(
        model="pema/plain", messages=[{"role": "system", "content": "ignored"},
                                      {"role": "user", "content": TEXT}])
    with daemon.client() as pc:
        want = pc.rewrite(TEXT, str(daemon.workspace), mode="plain").text
    assert want.strip()
    assert r.choices[0].message.content == want
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens > 0
    pieces, finish = [], None
    for chunk in c.chat.completions.create(
            model="pema/plain", messages=[{"role": "user", "content": TEXT}], stream=True):
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        finish = chunk.choices[0].finish_reason or finish
    assert len(pieces) > 1, "the rewrite streams in pieces"
    assert "".join(pieces) == want
    assert finish == "stop"


def test_chat_in_the_workspace_style_matches_the_daemon(ready):
    c = oa(ready)
    r = c.chat.completions.create(model=ready.model, messages=[{"role": "user", "content": TEXT}])
    with ready.client() as pc:
        want = pc.rewrite(TEXT, str(ready.workspace))
    assert want.mode != "plain"
    assert r.choices[0].message.content == want.text
    # pema's own fields: mode and λ.
    r = c.chat.completions.create(model=ready.model, messages=[{"role": "user", "content": TEXT}],
                                  extra_body={"mode": "fixed", "lambda": 0.5})
    with ready.client() as pc:
        assert r.choices[0].message.content == pc.rewrite(
            TEXT, str(ready.workspace), mode="fixed", lambda_fixed=0.5).text


def test_only_the_fenced_selection_is_rewritten_and_layout_is_kept(daemon):
    sel = "He went up into the mountain.\n\n    And he sat down there."
    wrapped = f"Rewrite the following text.\n```text\n{sel}\n```\nAnswer with the text only."
    c = oa(daemon)
    r = c.chat.completions.create(model="pema/plain", messages=[{"role": "user", "content": wrapped}])
    with daemon.client() as pc:
        want = pc.rewrite(sel, str(daemon.workspace), mode="plain").text
    got = r.choices[0].message.content
    assert got == want
    assert got.split("\n")[1] == "" and got.split("\n")[2].startswith("    ")


def test_completions_endpoint(daemon):
    c = oa(daemon)
    r = c.completions.create(model="pema/plain", prompt=TEXT, max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert 0 < r.usage.completion_tokens <= 3
    text = "".join(ch.choices[0].text for ch in c.completions.create(
        model="pema/plain", prompt=TEXT, stream=True))
    with daemon.client() as pc:
        assert text == pc.rewrite(TEXT, mode="plain", workspace=str(daemon.workspace)).text


def test_errors_have_openais_shape_and_status(daemon):
    c = oa(daemon)
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="pema/nothing", messages=[{"role": "user", "content": TEXT}])
    assert e.value.status_code == 404 and e.value.code == "model_not_found"
    assert "pema/plain" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="pema/plain", temperature=9,
                                  messages=[{"role": "user", "content": TEXT}])
    assert "temperature" in e.value.message and e.value.param == "temperature"
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="pema/plain", messages=[{"role": "assistant", "content": "x"}])


def test_a_wrong_token_is_refused(daemon):
    with pytest.raises(openai.AuthenticationError) as e:
        oa(daemon, key="not-the-token-at-all").models.list()
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        oa(daemon, key=daemon.token[:-1] + "x").chat.completions.create(
            model="pema/plain", messages=[{"role": "user", "content": TEXT}])


def test_curl(daemon):
    body = json.dumps({"model": "pema/plain", "messages": [{"role": "user", "content": TEXT}]})
    out = subprocess.run(
        ["curl", "-sS", "--fail-with-body", f"{daemon.http}/v1/chat/completions",
         "-H", f"Authorization: Bearer {daemon.token}", "-H", "Content-Type: application/json",
         "-d", body], capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    assert r["object"] == "chat.completion" and r["choices"][0]["message"]["content"]
    stream = json.loads(body) | {"stream": True}
    out = subprocess.run(
        ["curl", "-sSN", "--fail-with-body", f"{daemon.http}/v1/chat/completions",
         "-H", f"Authorization: Bearer {daemon.token}", "-d", json.dumps(stream)],
        capture_output=True, text=True, check=True).stdout
    events = [l[len("data: "):] for l in out.splitlines() if l.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == r["choices"][0]["message"]["content"]
    out = subprocess.run(["curl", "-sS", "-w", "%{http_code}", f"{daemon.http}/v1/models"],
                         capture_output=True, text=True).stdout
    assert out.endswith("401") and "invalid_api_key" in out
