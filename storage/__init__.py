"""Persistence: SQLAlchemy Core over SQLite (default), PostgreSQL and MySQL/MariaDB."""
