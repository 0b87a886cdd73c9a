"""The Faust tables of the stream worker, as Faust's web view and the changelog topics name them.

- `like_counts`: key b"user_id:content_id" -> likes, set from PostgreSQL after every batch
  (changelog `<FAUST_APP_ID>-like_counts-changelog`; web views under `/likes/`).

Each is declared next to the views that read it, in app/stream/.
"""

from __future__ import annotations

from app.stream.like_table import like_counts

__all__ = ["like_counts"]
