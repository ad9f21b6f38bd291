"""The chat box of the console, in a real browser: a tenant deploys the tiny GPT-2 (built in the test)
from the Deploy form, opens its Test tab, chats with the keyboard alone, and sees the answer appended
piece by piece as the stream is read, the usage at its end, and the conversation carried into the next
turn. What the user types (markup here) stays text. The screenshots are tests/artifacts/console/chat.png
and chat-narrow.png (390 px)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import RunningServer

pytestmark = [pytest.mark.browser, pytest.mark.llm]

XSS = "<img src=x onerror=alert(1)>"

# Counts, for each answer bubble, the text pieces appended to it while it streamed.
WATCH_PIECES = """() => {
  window.__pieces = [];
  new MutationObserver((records) => {
    for (const r of records) {
      const item = r.target.closest && r.target.closest('li.msg.assistant');
      if (item && item.dataset.state === 'streaming' && r.addedNodes.length) {
        const index = [...document.querySelectorAll('li.msg.assistant')].indexOf(item);
        window.__pieces[index] = (window.__pieces[index] || 0) + r.addedNodes.length;
      }
    }
  }).observe(document.body, { childList: true, subtree: true });
}"""


@pytest.fixture(scope="module")
def srv(module_servers: Callable[..., RunningServer]) -> RunningServer:
    return module_servers()


def test_chatting_with_a_language_model_streams_the_answer(
    srv: RunningServer, chromium: Any, tiny_gpt2_dir: Path, artifacts: Path
) -> None:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: sent.append(json.loads(r.post_data or "{}")) if r.url.endswith("/chat") else None,
    )
    try:
        page.goto(srv.base_url + "/")
        page.get_by_label("Token").fill(srv.tenant_token("chatter"))
        page.get_by_role("button", name="Sign in with token").click()
        page.get_by_text("No models yet.").wait_for()

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Deploy", exact=True).click()
        page.get_by_label("Name").fill("tiny-gpt2")
        page.get_by_label("Framework").select_option("huggingface")
        page.get_by_label("Storage URI").fill(f"file://{tiny_gpt2_dir}")
        page.get_by_role("button", name="Deploy", exact=True).click()
        page.get_by_role("heading", name="tiny-gpt2").wait_for()
        page.locator(".title-badge [data-phase='Ready']").wait_for(timeout=120_000)

        page.get_by_role("tab", name="Test").click()
        message = page.get_by_label("Message")
        message.wait_for()  # shown for a text-generation model only
        page.evaluate(WATCH_PIECES)
        message.fill(f"hello world {XSS}")
        page.get_by_label("Most tokens in the answer").fill("12")
        message.focus()
        message.press("Enter")
        page.locator("li.msg.assistant[data-state='done']").wait_for(timeout=60_000)
        usage = page.get_by_test_id("chat-usage")
        usage.wait_for()
        match = re.search(r"Usage: (\d+) prompt \+ (\d+) completion = (\d+) tokens", usage.inner_text())
        assert match, usage.inner_text()
        prompt_tokens, completion, total = map(int, match.groups())
        assert 1 <= completion <= 12 and total == prompt_tokens + completion
        pieces = page.evaluate("window.__pieces")
        assert pieces[0] >= 2, pieces  # appended as the stream was read, not at its end
        first_answer = page.locator("li.msg.assistant .msg-text").first.text_content()
        assert first_answer and first_answer.strip()
        # The user's markup is text: no element was made of it.
        assert page.locator("li.msg.user .msg-text").first.inner_text() == f"hello world {XSS}"
        assert page.locator(".chat-log img").count() == 0
        assert message.input_value() == ""

        # The next turn carries the conversation.
        message.fill("and the quick brown fox?")
        message.press("Enter")
        page.locator("li.msg.assistant[data-state='done']").nth(1).wait_for(timeout=60_000)
        assert page.locator("li.msg").count() == 4
        page.screenshot(path=str(artifacts / "chat.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.get_by_label("Conversation").scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "chat-narrow.png"))
    finally:
        context.close()
    assert [len(body["messages"]) for body in sent] == [1, 3]
    assert sent[1]["messages"][1] == {"role": "assistant", "content": first_answer}
    assert all(body["stream"] is True and body["stream_options"] == {"include_usage": True} for body in sent)
    assert dialogs == []
