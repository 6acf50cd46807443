"""The store's Alembic migrations (``versions/``); the facts about them that code needs without Alembic."""

# The newest revision in versions/ (tests/core/store check it against Alembic's own head).
# A store already at it is opened without importing Alembic (about 8 MB of a runner's memory).
HEAD_REVISION = "0003"
VERSION_TABLE = "adf_alembic_version"  # not alembic_version: the database may be shared with an application
