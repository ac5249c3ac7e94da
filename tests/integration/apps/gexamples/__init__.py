"""Apps shaped like gunicorn 25's dirty-arbiter examples (dirty_example,
embedding_service, streaming_chat, celery_alternative) and like apps built
on them: the same gunicorn.dirty imports, client calls, argument forms,
DirtyApp attributes, config settings and hooks, with fakes in place of the
heavy libraries.  Written for cunicorn's tests; driven by
tests/integration/test_dirty_examples.py."""
