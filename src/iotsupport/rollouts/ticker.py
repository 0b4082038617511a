"""Who advances rollouts: each worker process, every ROLLOUT_TICK_SECONDS and as soon as
it has written device reports (its check-in flush wakes it).

Each active rollout is evaluated in a transaction of its own with its row locked
(`FOR UPDATE SKIP LOCKED` on PostgreSQL): a worker that finds it locked leaves it to the
one holding it, so many workers and replicas share the work without doing it twice.
All of a rollout's state is in the database, so a restart loses nothing: the next tick
(of any worker) picks up where the last one ended. Each tick also corrects the devices of
ended rollouts by their late reports (late_reports.py).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from iotsupport.background import Periodic
from iotsupport.db import Database
from iotsupport.db import commit
from iotsupport.db.base import utcnow
from iotsupport.notifications import Publisher
from iotsupport.rollouts.late_reports import correct_finished
from iotsupport.rollouts.service import RolloutService
from iotsupport.rollouts.tables import Rollout
from iotsupport.settings import Settings

log = logging.getLogger(__name__)


class RolloutTicker:
    def __init__(self, settings: Settings, database: Database, publisher: Publisher) -> None:
        self.database = database
        self.publisher = publisher
        self.timeout_seconds = settings.rollout_device_timeout_seconds
        self._periodic = Periodic("rollout-tick", settings.rollout_tick_seconds, self.evaluate_all)

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop(final=False)

    def wake(self) -> None:
        """Evaluate soon (on the ticker's thread), e.g. after device reports were written."""
        self._periodic.wake()

    def evaluate_all(self) -> int:
        """Evaluate every active rollout this worker can lock; returns how many it did."""
        try:
            with self.database.session(read_only=True) as session:
                ids = session.scalars(
                    select(Rollout.id).where(Rollout.active_model_id.is_not(None))
                ).all()
        except SQLAlchemyError as exc:
            log.warning("rollouts not evaluated: %s", type(exc).__name__)
            return 0
        done = 0
        for rollout_id in ids:
            try:
                with self.database.session() as session:
                    service = RolloutService(
                        session, self.publisher, timeout_seconds=self.timeout_seconds
                    )
                    if service.evaluate(rollout_id, skip_locked=True):
                        commit(session)
                        done += 1
            except SQLAlchemyError as exc:
                log.warning("rollout %d not evaluated: %s", rollout_id, type(exc).__name__)
        try:
            with self.database.session() as session:
                if correct_finished(session, utcnow()):
                    commit(session)
        except SQLAlchemyError as exc:
            log.warning("late reports not applied: %s", type(exc).__name__)
        return done
