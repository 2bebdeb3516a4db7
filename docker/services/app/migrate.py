"""The example's migration, run once by grace before anything else starts (`once = true`): it creates or
upgrades the app's SQLite database, and the app refuses to start on a database it does not know.

APP_DB names the database (default /var/lib/app/app.db; its directory must be writable: a volume).
"""
import os
import sqlite3
import sys

SCHEMA_VERSION = 1
DATABASE = os.environ.get("APP_DB", "/var/lib/app/app.db")

with sqlite3.connect(DATABASE) as database:
    version = database.execute("PRAGMA user_version").fetchone()[0]
    if version < 1:
        database.execute("CREATE TABLE IF NOT EXISTS greeting (text TEXT NOT NULL)")
        database.execute("INSERT INTO greeting (text) VALUES ('hello from the example app')")
        database.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
print(f"migrate: {DATABASE} at schema version {SCHEMA_VERSION} (was {version})", file=sys.stderr, flush=True)
