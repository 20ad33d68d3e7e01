"""What each write of a job's message carries: an edit changes only what it is given."""

from __future__ import annotations

import io

import discord

from cogs.delivery import MessageBody


def test_a_progress_edit_leaves_the_messages_files_and_buttons_as_they_are():
    embed = discord.Embed(title="Imagine")
    assert MessageBody(embed=embed).edit_kwargs() == {"embed": embed}


def test_an_edit_with_no_attachments_removes_the_messages_files():
    body = MessageBody(embed=discord.Embed(), attachments=(), view=discord.ui.View(timeout=None))
    assert body.edit_kwargs()["attachments"] == []


def test_a_new_message_carries_the_files_as_uploads_and_its_mention_text():
    file = discord.File(io.BytesIO(b"jpeg"), filename="imagine-1-1.jpg")
    view = discord.ui.View(timeout=None)
    body = MessageBody(embed=discord.Embed(), content="<@3> here it is", attachments=[file], view=view)
    kwargs = body.send_kwargs()
    assert (kwargs["content"], kwargs["files"], kwargs["view"], "attachments" in kwargs) == (
        "<@3> here it is",
        [file],
        view,
        False,
    )


def test_a_new_message_without_files_sends_no_empty_upload():
    assert "files" not in MessageBody(embed=discord.Embed(), attachments=()).send_kwargs()
