"""Chat formatting, stop sequences and the held-back stream buffer."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from promptyard.plugins.textgen import PROMPT_FORMATS, StopBuffer, cut_at_stop, plain_chat

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_cut_at_stop_uses_the_earliest_stop():
    assert cut_at_stop("a; b\n c", ["\n", ";"]) == ("a", True)
    assert cut_at_stop("abc", ["x", ""]) == ("abc", False)
    assert cut_at_stop("abc", []) == ("abc", False)


def test_plain_chat_joins_roles():
    assert plain_chat(CHAT) == "system: Be brief.\nuser: Hi\nassistant:"


def test_whiterabbitneo_prompt_format():
    from jinja2 import Environment

    template = Environment().from_string(PROMPT_FORMATS["system-user-assistant"])
    text = template.render(messages=CHAT, add_generation_prompt=True)
    assert text == "SYSTEM: Be brief.\nUSER: Hi\nASSISTANT:"


@given(
    pieces=st.lists(st.text(alphabet="ab;\n", max_size=6), max_size=12),
    stops=st.lists(st.text(alphabet="ab;\n", min_size=1, max_size=3), max_size=3),
)
@example(pieces=[";\n", ";"], stops=["\n", ";\n;"])  # a longer stop began before a shorter one was found
def test_stop_buffer_emits_exactly_the_text_before_the_first_stop(pieces, stops):
    buffer = StopBuffer(stops)
    emitted = "".join(buffer.feed(piece) for piece in pieces) + buffer.flush()
    expected, found = cut_at_stop("".join(pieces), stops)
    assert emitted == expected == buffer.text
    assert buffer.stopped == found


def test_bad_chat_messages_are_refused():
    import pytest

    from promptyard.errors import Unprocessable
    from promptyard.plugins.textgen import prompt_to_text

    for bad in ([], [{"role": "user"}], ["hello"], [{"role": "user", "content": 3}]):
        with pytest.raises(Unprocessable) as caught:
            prompt_to_text(bad, tokenizer=None, prompt_format=None)
        assert caught.value.code == "invalid_messages"

