"""ChatGPT's export (``conversations.json``) read as Hearth conversations.

Each conversation there is a tree of nodes (``mapping``: id → ``{message, parent, children}``)
from a root without a message; ``current_node`` is the end of the branch ChatGPT showed. What
comes over, and how:

- user and assistant messages, with their branches (edits, regenerations); the branch through
  ``current_node`` is the one shown;
- nodes ChatGPT does not show are left out (no message, ``system`` messages,
  ``metadata.is_visually_hidden_from_conversation``, a reasoning model's thoughts and the tool
  calls it made while reasoning, memory updates, calls to tools such as the browser) and their
  children hang on the nearest message that is kept;
- the user's custom instructions become the conversation's system prompt; a pinned chat
  (``pinned_time``) is pinned;
- ``multimodal_text``: its text, and "[image]" for each picture (the files are not in
  conversations.json); a voice message's transcript;
- Code Interpreter: the code the assistant ran (``code``) as a fenced block, its
  ``execution_output`` after it, both joined with the reply they belong to into one
  assistant message (ChatGPT shows them as one turn).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from app.chats.records import Role, Status
from app.chats.transfer import ImportedConversation, ImportedMessage, ordered

IMAGE = "[image]"


def looks_like_chatgpt(data: Any) -> bool:
    """Whether decoded JSON is ChatGPT's export: a list of conversations with a ``mapping``
    (or one such conversation)."""
    if isinstance(data, dict):
        return isinstance(data.get("mapping"), dict)
    return isinstance(data, list) and all(
        isinstance(c, dict) and isinstance(c.get("mapping"), dict) for c in data
    )


def chatgpt_conversations(data: Any) -> list[ImportedConversation]:
    conversations = [data] if isinstance(data, dict) else data
    return [_conversation(c) for c in conversations]


@dataclass
class _Kept:
    """Where the walk down the tree stands: the last message kept above, and whether the nodes
    since then had no branches (so that tool output can join that message)."""

    key: str | None
    role: Role | None
    linear: bool


def _conversation(c: dict[str, Any]) -> ImportedConversation:
    mapping: dict[str, Any] = c["mapping"]
    created = _number(c.get("create_time"))
    source = c.get("conversation_id") or c.get("id")
    if not isinstance(source, str) or not source:
        source = hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:32]
    messages: dict[str, ImportedMessage] = {}
    node_message: dict[str, str] = {}  # node id → key of the message that holds its text
    system_prompt = ""

    def visit(node_id: str, above: _Kept) -> _Kept:
        """Keep the node's message (or fold it into the one above); returns what its children
        hang on."""
        nonlocal system_prompt
        node = mapping.get(node_id)
        message = node.get("message") if isinstance(node, dict) else None
        branches = len(_children(node))
        if not isinstance(message, dict):
            return _Kept(above.key, above.role, above.linear and branches <= 1)
        instructions = _custom_instructions(message)
        if instructions:
            system_prompt = system_prompt or instructions
        role, text = _shown(message)
        joins = _is_tool(message)  # tool output is shown only with the reply it belongs to
        can_join = role == "assistant" and above.role == "assistant" and above.linear
        if role is None or not text or (joins and not can_join):
            return _Kept(above.key, above.role, above.linear and branches <= 1)
        stamp = _number(message.get("create_time"), created)
        if can_join:
            assert above.key is not None
            joined = messages[above.key]
            joined.content = f"{joined.content}\n\n{text}"
            joined.status, joined.stats = _ending(message)
            node_message[node_id] = above.key
            return _Kept(above.key, role, branches <= 1)
        status, stats = _ending(message)
        metadata = message.get("metadata")
        model = metadata.get("model_slug") if isinstance(metadata, dict) else None
        messages[node_id] = ImportedMessage(
            key=node_id,
            parent=above.key,
            role=role,
            content=text,
            status=status,
            model=model if isinstance(model, str) and role == "assistant" else "",
            stats=stats,
            created_at=stamp,
            selected_at=stamp,
        )
        node_message[node_id] = node_id
        return _Kept(node_id, role, branches <= 1)

    roots = [
        node_id
        for node_id, node in mapping.items()
        if not isinstance(node, dict) or node.get("parent") not in mapping
    ]
    stack: list[tuple[str, _Kept]] = [(r, _Kept(None, None, False)) for r in reversed(roots)]
    seen: set[str] = set()
    while stack:
        node_id, above = stack.pop()
        if node_id in seen:  # a malformed file's cycle
            continue
        seen.add(node_id)
        below = visit(node_id, above)
        for child in reversed(_children(mapping.get(node_id))):
            if child in mapping:
                stack.append((child, below))

    latest = max((m.created_at for m in messages.values()), default=created)
    node: Any = c.get("current_node")
    steps = 0
    while isinstance(node, str) and node in mapping and steps <= len(mapping):
        key = node_message.get(node)
        if key is not None:  # ChatGPT's shown branch is shown here too
            messages[key].selected_at = latest + 1.0
        parent = mapping[node].get("parent") if isinstance(mapping[node], dict) else None
        node, steps = parent, steps + 1

    title = c.get("title")
    return ImportedConversation(
        uid=f"chatgpt:{source}",
        title=title.strip() if isinstance(title, str) and title.strip() else "ChatGPT chat",
        messages=ordered(list(messages.values())),
        system_prompt=system_prompt,
        pinned=isinstance(c.get("pinned_time"), int | float),
        created_at=created,
        updated_at=_number(c.get("update_time"), latest),
    )


def _children(node: Any) -> list[str]:
    children = node.get("children") if isinstance(node, dict) else None
    return [x for x in children if isinstance(x, str)] if isinstance(children, list) else []


def _shown(message: dict[str, Any]) -> tuple[Role | None, str]:
    """Who a message is from in Hearth and its text as ChatGPT showed it; (None, "") for one
    ChatGPT does not show."""
    metadata = message.get("metadata")
    if isinstance(metadata, dict) and (
        metadata.get("is_visually_hidden_from_conversation")
        # a reasoning model's steps (its tool calls and their output), shown folded as thoughts
        or metadata.get("reasoning_status") == "is_reasoning"
    ):
        return None, ""
    if message.get("channel") == "analysis":
        return None, ""
    author = message.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    content = message.get("content")
    if not isinstance(content, dict):
        return None, ""
    kind = content.get("content_type")
    recipient = message.get("recipient", "all")
    if role == "user":
        return "user", _parts_text(content)
    if role == "assistant":
        if kind == "code":  # code sent to a tool: shown when it is Code Interpreter's Python
            if recipient != "python" or not isinstance(content.get("text"), str):
                return None, ""
            language = content.get("language")
            language = language if isinstance(language, str) and language != "unknown" else ""
            return "assistant", f"```{language or 'python'}\n{content['text'].rstrip()}\n```"
        if recipient not in ("all", None) or kind not in ("text", "multimodal_text"):
            return None, ""  # a call to a tool, reasoning, a memory update
        return "assistant", _parts_text(content)
    if role == "tool":  # shown with the reply it belongs to
        if kind == "execution_output" and isinstance(content.get("text"), str):
            output = content["text"].rstrip()
            return "assistant", f"Output:\n```\n{output}\n```" if output else ""
        if kind == "multimodal_text":  # a generated image
            images = [p for p in _parts(content) if _is_image(p)]
            return "assistant", "\n".join(IMAGE for _ in images)
    return None, ""


def _is_tool(message: dict[str, Any]) -> bool:
    author = message.get("author")
    return isinstance(author, dict) and author.get("role") == "tool"


def _parts(content: dict[str, Any]) -> list[Any]:
    parts = content.get("parts")
    return parts if isinstance(parts, list) else []


def _is_image(part: Any) -> bool:
    return isinstance(part, dict) and part.get("content_type") == "image_asset_pointer"


def _parts_text(content: dict[str, Any]) -> str:
    """The text of ``text`` and ``multimodal_text`` content: strings as they are, pictures as
    "[image]", voice as its transcript; nothing else."""
    out: list[str] = []
    for part in _parts(content):
        if isinstance(part, str):
            if part:
                out.append(part)
        elif _is_image(part):
            out.append(IMAGE)
        elif (
            isinstance(part, dict)
            and part.get("content_type") == "audio_transcription"
            and isinstance(part.get("text"), str)
        ):
            out.append(part["text"])
    if not out and isinstance(content.get("text"), str):
        out.append(content["text"])
    return "\n\n".join(out).strip()


def _custom_instructions(message: dict[str, Any]) -> str:
    """The user's custom instructions, where this hidden message carries them."""
    content = message.get("content")
    if isinstance(content, dict) and content.get("content_type") == "user_editable_context":
        fields = (content.get("user_profile"), content.get("user_instructions"))
    else:
        metadata = message.get("metadata")
        data = metadata.get("user_context_message_data") if isinstance(metadata, dict) else None
        if not isinstance(data, dict):
            return ""
        fields = (data.get("about_user_message"), data.get("about_model_message"))
    return "\n\n".join(f.strip() for f in fields if isinstance(f, str) and f.strip())


def _ending(message: dict[str, Any]) -> tuple[Status, dict[str, Any]]:
    """How a reply ended, as Hearth saves it: cut by the token limit, stopped, or complete."""
    metadata = message.get("metadata")
    finish = metadata.get("finish_details") if isinstance(metadata, dict) else None
    kind = finish.get("type") if isinstance(finish, dict) else None
    if kind == "max_tokens":
        return "complete", {"stop_reason": "length"}
    if kind == "interrupted" or message.get("status") == "in_progress":
        return "interrupted", {}
    return "complete", {}


def _number(value: Any, default: float = 0.0) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else default
