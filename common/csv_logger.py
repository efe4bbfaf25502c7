"""A CSV logger whose ``metrics.csv`` survives a resume.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when a run starts in a non-empty log
folder, so resuming a run with a fixed ``version`` wipes the loss history of the steps before the
checkpoint. ``ResumableCSVLogger`` keeps those rows: on its first write it keeps the earlier rows
of steps before the first step it logs (rows of later steps were logged after the checkpoint it
resumed from, and are logged again), merges the columns, and appends from there. Rewrites of the
file go through ``common.atomic``.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from common.atomic import atomic_open


class _HistoryWriter(ExperimentWriter):
    """``ExperimentWriter`` that merges with the rows already in ``metrics.csv``."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self._merged = False

    def _check_log_dir_exists(self) -> None:
        pass  # the parent deletes metrics.csv here; the history is merged in ``save`` instead

    def save(self) -> None:
        if self.metrics and not self._merged:
            self._merged = True
            if self._fs.isfile(self.metrics_file_path):
                self._merge_history()
        super().save()

    def _merge_history(self) -> None:
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            reader = csv.DictReader(f)
            keys, rows = list(reader.fieldnames or []), list(reader)
        first = min(int(m["step"]) for m in self.metrics)
        rows = [r for r in rows if not _step_at_or_after(r, first)]
        self.metrics_keys = sorted(set(keys) | set(self.metrics_keys))
        self._write(rows, self.metrics_keys)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            rows = list(csv.DictReader(f))
        self._write(rows, fieldnames)

    def _write(self, rows: list[dict[str, Any]], fieldnames: list[str]) -> None:
        with atomic_open(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)


def _step_at_or_after(row: dict[str, Any], step: int) -> bool:
    try:
        return int(float(row.get("step") or "")) >= step
    except ValueError:
        return False


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that keeps the earlier rows of ``metrics.csv`` when a run resumes into the
    same folder (a fixed ``version``, e.g. ``""``).

    Args:
        save_dir: parent folder of the logs; ``train.py`` resolves a relative one against
            ``trainer.default_root_dir`` (the default ``"."`` is that folder itself).
        name: sub-folder of ``save_dir``.
        version: sub-folder of ``name``; ``""`` writes straight into ``save_dir/name``, so a
            resumed run finds its history there. None picks the next ``version_N``.
        prefix: prefix of every metric name.
        flush_logs_every_n_steps: how often rows are written to disk.
    """

    def __init__(
        self,
        *,
        save_dir: str = ".",
        name: str = "logs",
        version: int | str | None = "",
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        super().__init__(
            save_dir,
            name=name,
            version=version,
            prefix=prefix,
            flush_logs_every_n_steps=flush_logs_every_n_steps,
        )

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(log_dir=self.log_dir)
        return self._experiment
