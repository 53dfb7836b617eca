"""The chat database's schema: one migration per ``PRAGMA user_version`` step, never edited once
released (a database at version N has run exactly the first N scripts)."""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 1: conversations and messages
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        system_prompt TEXT NOT NULL DEFAULT '',
        sampling TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'complete'
            CHECK (status IN ('complete', 'streaming', 'interrupted', 'error')),
        error TEXT,
        model TEXT NOT NULL DEFAULT '',
        stats TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    CREATE INDEX conversations_by_update ON conversations(updated_at DESC);
    """,
    # 2: a streaming reply names its writer and when it last saved (app/chats/writers.py)
    """
    ALTER TABLE messages ADD COLUMN writer TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN saved_at REAL NOT NULL DEFAULT 0;
    CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming';
    """,
    # 3: conversations as trees. Among siblings the one selected (or added) last is shown, so
    # the shown path survives a restart and each branch remembers its own choice below it.
    # The list: pins, a title the user set (kept from automatic titles), and a trash for undo.
    """
    ALTER TABLE messages ADD COLUMN selected_at REAL NOT NULL DEFAULT 0;
    UPDATE messages SET selected_at = created_at;
    CREATE INDEX messages_by_parent ON messages(parent_id, selected_at);
    ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN title_edited INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN deleted_at REAL;
    """,
    # 4: full-text search over every message (app/chats/search.py), kept in sync by triggers; the
    # messages already there are indexed here. Diacritics fold ("café" finds "cafe").
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content='messages', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
    """,
    # 5: a conversation's id everywhere (kept through export and import; a ChatGPT import keeps
    # ChatGPT's), so that importing a file again adds nothing twice
    """
    ALTER TABLE conversations ADD COLUMN uid TEXT;
    UPDATE conversations SET uid = lower(hex(randomblob(16)));
    CREATE UNIQUE INDEX conversations_by_uid ON conversations(uid);
    """,
    # 6: system-prompt presets (app/chats/presets.py), names unique in any letter case, at most
    # one the default
    """
    CREATE TABLE system_prompts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        text TEXT NOT NULL,
        is_default INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX system_prompts_default ON system_prompts(is_default) WHERE is_default = 1;
    """,
]


def statements(script: str) -> list[str]:
    """The SQL statements of ``script``, whole: a trigger's body holds semicolons of its own."""
    out: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        out.append(pending.strip())
    return out


def migrate(db: sqlite3.Connection) -> None:
    """Bring ``db`` to the newest schema, all steps in one transaction. Raises ``ValueError`` for
    a database from a newer Hearth (left untouched)."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise ValueError(version)
    if version == len(MIGRATIONS):
        return
    with db:
        # Taken before reading the version again: two processes opening a new database at
        # once must not both create its tables.
        db.execute("BEGIN IMMEDIATE")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for i, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {i}")
