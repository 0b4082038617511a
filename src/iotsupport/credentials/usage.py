"""When and from where each credential was last used, written in the background.

Like device check-ins: a use is noted in memory (a dict assignment), and every
CHECKIN_FLUSH_SECONDS a background thread writes the latest use per credential,
never overwriting a newer one that another worker wrote.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from datetime import UTC
from datetime import datetime

from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import or_
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from iotsupport.background import Periodic
from iotsupport.configs.checkins import Networks
from iotsupport.configs.checkins import client_address
from iotsupport.credentials.tables import CREDENTIALS

log = logging.getLogger(__name__)

_C = CREDENTIALS.c
_RECORD_USE = (
    update(CREDENTIALS)
    .where(
        and_(
            _C.config_id == bindparam("id"),
            or_(_C.last_used_at.is_(None), _C.last_used_at < bindparam("used_at")),
        )
    )
    .values(last_used_at=bindparam("used_at"), last_used_from=bindparam("used_from"))
)


class CredentialUseRecorder:
    def __init__(
        self,
        session_factory: t.Callable[[], Session],
        *,
        interval: float = 2.0,
        trusted_proxies: Networks = (),
    ) -> None:
        self._session_factory = session_factory
        self._trusted = trusted_proxies
        self._pending: dict[int, tuple[float, str | None, str | None]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._writer = Periodic("credential-use-flush", interval, self.flush)

    def record(self, config_id: int, peer: str | None, forwarded_for: str | None) -> None:
        with self._lock:
            self._pending[config_id] = (time.time(), peer, forwarded_for)

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        self._writer.stop()

    def flush(self) -> int:
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return 0
            rows = []
            for config_id, (used_at, peer, forwarded_for) in pending.items():
                address = client_address(peer, forwarded_for, self._trusted)
                rows.append(
                    {
                        "id": config_id,
                        "used_at": datetime.fromtimestamp(used_at, UTC),
                        "used_from": address[:64] if address else None,
                    }
                )
            try:
                with self._session_factory() as session, session.begin():
                    session.connection().execute(_RECORD_USE, rows)
            except SQLAlchemyError as exc:
                log.warning("credential uses not written, retrying later: %s", type(exc).__name__)
                with self._lock:
                    for config_id, use in pending.items():
                        self._pending.setdefault(config_id, use)
                return 0
            return len(rows)
