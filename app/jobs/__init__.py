"""Celery before the send: the app and its queues, digests, planning, dispatch, beat schedule."""
