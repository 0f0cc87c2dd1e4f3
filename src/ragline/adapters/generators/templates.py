"""Chat templates for OpenAI-compatible completion endpoints (which apply none)."""

from __future__ import annotations

from ragline.core.models import Prompt


def render(prompt: Prompt, template: str) -> str:
    """A chat prompt as plain text, for /v1/completions (which applies no template)."""
    if template == "chatml":
        parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in prompt.messages()]
        return "".join(parts) + "<|im_start|>assistant\n"
    if template == "llama3":
        parts = [
            f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>" for m in prompt.messages()
        ]
        return "<|begin_of_text|>" + "".join(parts) + "<|start_header_id|>assistant<|end_header_id|>\n\n"
    return f"{prompt.system}\n\n{prompt.user_message()} "


STOP_SEQUENCES = {"chatml": ["<|im_end|>"], "llama3": ["<|eot_id|>"], "raw": ["\nQuestion:"]}
