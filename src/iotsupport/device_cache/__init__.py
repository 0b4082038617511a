"""The device fetch from memory: each worker keeps every device's document (content,
ETag, version, credential) and keeps it current from the database's change feed.

- PostgreSQL: triggers `NOTIFY iotsupport_devices, '<mac>'` in the changing transaction;
  a listener thread per worker reloads the MACs it hears of (postgres.py). Before the
  MQTT announcements of a commit go out, the committing process waits until every
  listening worker has applied it (`settle`).
- SQLite: triggers append to a journal; each fetch compares its newest `seq` with the
  one the worker applied and catches up first (sqlite.py), so it is never stale.

Until a worker has loaded everything, and while its listener is away, its fetches read
the database, as before this cache; while the database itself is out of its reach, it
answers from memory with the header `X-Device-Cache: stale`. Health and metrics say
which it does.
"""

from iotsupport.device_cache.documents import DeviceDocument
from iotsupport.device_cache.store import DeviceCache
from iotsupport.device_cache.store import build_device_cache

STALE_HEADER = "X-Device-Cache"

__all__ = ["STALE_HEADER", "DeviceCache", "DeviceDocument", "build_device_cache"]
