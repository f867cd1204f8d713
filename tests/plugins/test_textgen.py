"""Chat formatting, stop sequences and the held-back stream buffer."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from promptyard.plugins.textgen import PROMPT_FORMATS, StopBuffer, cut_at_stop, plain_chat, render_chat

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



CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _render(messages, generation_prompt):
    import jinja2

    return jinja2.Template(CHATML).render(messages=messages, add_generation_prompt=generation_prompt)


def test_render_chat_adds_the_generation_prompt_after_a_user_turn():
    chat = [{"role": "user", "content": "Write add."}]
    assert render_chat(chat, _render) == "<|im_start|>user\nWrite add.<|im_end|>\n<|im_start|>assistant\n"


def test_a_chat_ending_with_an_assistant_message_is_continued():
    chat = [{"role": "user", "content": "Write add."}, {"role": "assistant", "content": "Here:\n```python\n"}]
    assert render_chat(chat, _render) == (
        "<|im_start|>user\nWrite add.<|im_end|>\n<|im_start|>assistant\nHere:\n```python\n")
    assert plain_chat(chat) == "user: Write add.\nassistant: Here:\n```python\n"


def test_a_template_that_drops_the_assistant_message_cannot_be_continued():
    import pytest

    from promptyard.errors import Unprocessable

    chat = [{"role": "user", "content": "Write add."}, {"role": "assistant", "content": "Here:"}]
    with pytest.raises(Unprocessable) as caught:
        render_chat(chat, lambda messages, generation_prompt: "only the user: " + messages[0]["content"])
    assert caught.value.code == "chat_template_error"
