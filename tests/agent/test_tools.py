"""The agent's own tool: undo and redo along a session's versions within a turn."""

import pytest
from switchboard.agent.tools import VersionCursor
from switchboard.core import InvalidInputError


def test_the_cursor_moves_along_stored_and_new_versions():
    stored = [{"id": 1, "parent_id": None, "kind": "image"},
              {"id": 2, "parent_id": 1, "kind": "image"},
              {"id": 3, "parent_id": 1, "kind": "image"}]  # fmt: skip
    loaded = []
    cur = VersionCursor(stored, 3, lambda v: loaded.append(v["id"]) or f"pixels {v['id']}")
    assert cur.move("undo") == (stored[0], "pixels 1")
    assert cur.move("redo")[0]["id"] == 3  # the newest made from it
    with pytest.raises(InvalidInputError, match="nothing to redo"):
        cur.move("redo")
    cur.made("edited now")  # an edit of this turn: current, not stored yet
    version, media = cur.move("undo")
    assert version["id"] == 3 and media == "pixels 3"
    version, media = cur.move("redo")  # back to this turn's edit, newer than any stored one
    assert version["id"] < 0 and media == "edited now"
    assert loaded == [1, 3, 3]  # stored versions are read when moved to
    with pytest.raises(InvalidInputError, match="nothing to undo"):
        VersionCursor([], None, lambda v: None).move("undo")
