"""The driver: one way to run files, whatever executes the units (this process, local workers, Ray).

For each input, in order, the driver goes through the same named steps:

1. **plan**: the run's :class:`vsr.plan.RunPlan`, made once by the caller;
2. **claim** (:func:`vsr.running.lifecycle.claim`): skip what is done, report
   what is busy, probe the input, **check the destination** (container, codec,
   size, folder) before any network is built, take the output's lock;
3. **units** (:mod:`vsr.running.units`): the work folder is opened (a resume
   starts after its last finished piece) and the units still to do are handed
   to the executor, a few more than it has slots;
4. **join**: once every unit is back, the encoder joins the segments with the
   input's other streams into the hidden partial file;
5. **publish** (:func:`vsr.running.lifecycle.publish`): synced, recorded and
   renamed into place.

A failure ends only its own file, and is handled by what it means
(:func:`vsr.running.report.failure_kind`): bad or changed input removes the
work folder; a failed resource (a full disk, a lost worker) keeps every
finished segment and says that a rerun resumes; an interruption (SIGINT,
SIGTERM, SIGHUP) stops the run, keeps everything finished, and reports every
file, the ones never started too.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from vsr.errors import Interrupted, VsrError, shown
from vsr.pipeline import build_pipeline
from vsr.plan import RunPlan
from vsr.running.executors import Executor, WorkerLost
from vsr.running.inputs import Item
from vsr.running.lifecycle import Claim, RunResult, claim, publish, segmenter_of
from vsr.running.report import Entry, Report, failure_kind
from vsr.running.units import PRIME_FRAMES, Unit, UnitRequest, UnitResult, cut_units, cuts_digest
from vsr.segments import DEFAULT_POLICY, SegmentedEncoder, SegmentPolicy, WorkDir
from vsr.stage import MediaInfo


class Progress(Protocol):
    """What the driver tells a progress display (:class:`vsr.cli.progress.Progress` is the CLI's)."""

    def plan(self, frames: int, done: int = 0) -> None:
        """A file starts: ``frames`` more to show, ``done`` of them done by earlier runs."""

    def advance(self, frames: int) -> None:
        """``frames`` more are done."""


@dataclass
class _File:
    """One claimed output and its units in flight."""

    number: int
    item: Item
    claimed: Claim
    units: int
    work: WorkDir | None = None
    segmenter: SegmentedEncoder | None = None
    left: int = 0
    frames: int = 0
    resumed_at: int = 0
    started: float = field(default_factory=time.perf_counter)
    error: BaseException | None = None

    def keep(self) -> int:
        """Keep the finished segments for the next run, remove the half-written pieces; the frames kept."""
        if self.work is None:
            return 0
        self.work.load()
        self.work.tidy()
        return self.work.frames_done


class Driver:
    """Runs files through an executor and owns their whole life (see the module's docstring)."""

    def __init__(
        self,
        plan: RunPlan,
        executor: Executor,
        *,
        force: bool = False,
        policy: SegmentPolicy = DEFAULT_POLICY,
        prime: int = PRIME_FRAMES,
        settle: float = 0.0,
        log: logging.Logger,
        progress: Progress | None = None,
        describe: bool = True,
    ) -> None:
        self.plan, self.executor, self.force, self.policy, self.settle = plan, executor, force, policy, settle
        self.prime = prime if plan.stage("smooth") is not None else 0  # only stages with memory need priming
        self.log = log
        self.progress = progress
        self.describe = describe  # log each file's size, codec and destination as it starts
        self.queue: deque[tuple[_File, Unit | None]] = deque()
        self.running: dict[Future[UnitResult], tuple[_File, Unit | None]] = {}
        self.open: list[_File] = []
        self.per_worker: dict[str, list[float]] = {}
        self.total = 0

    def run(self, items: list[Item], report: Report) -> None:
        """Upscale ``items``, adding an entry per file to ``report`` (in the items' order).

        Raises nothing for a file's failure (it is in the report); an
        interruption is recorded in ``report.interrupted`` and the files never
        started are reported ``pending``.
        """
        order = {shown(item.input): n for n, item in enumerate(items)}
        first = len(report.entries)
        self.total = len(items)
        pending: Iterator[tuple[int, Item]] = enumerate(items, start=1)
        try:
            while True:
                while len(self.running) < 2 * self.executor.slots:
                    if self.queue:
                        self._submit(*self.queue.popleft(), report)
                    elif (nxt := next(pending, None)) is not None:
                        self._start(*nxt, report)
                    else:
                        break
                if not self.running:
                    break
                finished, _ = wait(list(self.running), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    self._collect(future, report)
        except Interrupted as exc:
            report.interrupted = exc
            self.executor.close(cancel=True)
            for file in self.open:  # finished units stay for the next run
                self._stop(file, report, exc)
            self.open.clear()
            reported = {entry.input for entry in report.entries[first:]}
            for item in items:  # never started, or stopped while being claimed
                if shown(item.input) not in reported:
                    report.entries.append(
                        Entry(shown(item.input), "pending", error="not started: the run was interrupted")
                    )
        except BaseException:
            self.executor.close(cancel=True)  # a bug: stop the workers rather than wait for them
            for file in self.open:
                file.claimed.job.output.unlink(missing_ok=True)
                file.claimed.lock.release()
            raise
        else:
            self.executor.close(cancel=False)
        report.entries[first:] = sorted(report.entries[first:], key=lambda e: order.get(e.input, len(order)))
        for worker, (frames, seconds) in sorted(self.per_worker.items()):
            fps = frames / seconds if seconds else 0.0
            self.log.debug("%s: %d frames in %.1f s of work, %.2f fps", worker, frames, seconds, fps)

    # --- claim and units ---

    def _start(self, number: int, item: Item, report: Report) -> None:
        try:
            claimed = claim(
                self.plan,
                item.input,
                item.output,
                force=self.force,
                make_parent=item.output_dir is not None,
                settle=self.settle,
                log=self.log,
            )
        except Interrupted:
            raise
        except Exception as exc:  # one file's failure never ends the run
            self._record(number, report, Entry.of_failure(item.input, exc))
            return
        if isinstance(claimed, RunResult):
            self._record(number, report, _entry(claimed))
            return
        file = _File(number, item, claimed, 0)
        self.open.append(file)
        try:
            units = self._cut(file)
        except Interrupted:
            raise
        except Exception as exc:
            self.open.remove(file)
            claimed.lock.release()
            self._record(number, report, Entry.of_failure(item.input, exc))
            return
        file.units = file.left = len(units)
        if self.describe:
            self._describe(claimed.media, claimed.job.final_output)
        if self.progress is not None:
            whole = claimed.media.frames or 0  # the rest of the file in one unit, or units cut in advance
            left = sum(u.frames for u in units if u is not None) if None not in units else whole - file.resumed_at
            self.progress.plan(max(left, 0) + file.resumed_at, file.resumed_at)
        if not file.left:  # every unit was done by an earlier run
            self._finish(file, report)
        for unit in units:
            self.queue.append((file, unit))

    def _describe(self, media: MediaInfo, output: Path) -> None:
        rate = f" @ {float(media.frame_rate):.3g} fps" if media.frame_rate and not media.is_image else ""
        frames = f", {media.frames} frames" if media.frames else ""
        self.log.info("%dx%d %s%s%s -> %s", media.width, media.height, media.codec_name, rate, frames, shown(output))

    def _cut(self, file: _File) -> list[Unit | None]:
        """The units still to do (None: the whole file, or the rest of it in order), and the work folder."""
        claimed = file.claimed
        job, media = claimed.job, claimed.media
        segmenter = segmenter_of(claimed.encoder) if not media.is_image else None
        file.segmenter = segmenter
        if segmenter is None:
            return [None]
        if self.executor.in_order:
            file.work = WorkDir(job.final_output, {"input": claimed.before, "settings": self.plan.settings}, job.log)
            file.work.open()
            if file.work.entries:
                file.resumed_at = file.work.frames_done
                job.log.info("resuming at frame %d (%d segments already done)", file.resumed_at, len(file.work.entries))
            return [None]
        times = build_pipeline(self.plan, job).stages[0].frame_times()  # a pass of the decoder that decodes nothing
        if not times:
            file.segmenter = None
            return [None]
        units = cut_units(times, media.time_base, self.policy, self.prime)
        identity = {"input": claimed.before, "settings": self.plan.settings, "units": cuts_digest(units)}
        file.work = WorkDir(job.final_output, identity, job.log, in_order=False)
        file.work.open()
        done = {int(e["first_index"]) for e in file.work.entries}
        if done:
            file.resumed_at = file.work.frames_done
            job.log.info("resuming: %d of %d units already done", len(done), len(units))
        return [u for u in units if u.first_index not in done]

    def _submit(self, file: _File, unit: Unit | None, report: Report) -> None:
        if file.error is not None:  # another unit of this file failed: the rest is not worth doing
            self._done_with(file, report)
            return
        job = file.claimed.job
        in_order = self.executor.in_order and file.work is not None
        request = UnitRequest(
            self.plan.source,
            self.plan.settings,
            job.input,
            job.final_output,
            job.output,
            file.claimed.media,
            dict(job.metadata),
            unit,
            file.work.dir if file.work is not None else Path(),
            self.policy if in_order else None,
            file.work.identity if in_order and file.work is not None else {},
        )
        try:
            self.running[self.executor.submit(request)] = (file, unit)
        except Interrupted:
            raise
        except Exception as exc:  # the executor itself failed (a local pool whose worker died)
            file.error = file.error or self.executor.error(exc)
            self._done_with(file, report)

    def _collect(self, future: Future[UnitResult], report: Report) -> None:
        file, unit = self.running.pop(future)
        try:
            result = future.result()
            if result.segment is not None and file.work is not None:
                file.work.add(result.segment, {})
        except Exception as exc:  # the unit's own error, the executor's for a lost worker, or a full disk
            error = self.executor.error(exc)
            if isinstance(error, WorkerLost) and file.error is None:
                self.log.warning("%s: %s", shown(file.item.input), error)
            file.error = file.error or error
        else:
            file.frames += result.frames
            totals = self.per_worker.setdefault(result.worker, [0, 0.0])
            totals[0] += result.frames
            totals[1] += result.seconds
            if unit is not None:
                fps = result.frames / result.seconds if result.seconds else 0.0
                where = f"unit {unit.number + 1}/{file.units}"
                self.log.debug(
                    "%s, %s: %d frames on %s, %.2f fps", file.item.input.name, where, result.frames, result.worker, fps
                )
            if self.progress is not None and not self.executor.live_progress:
                self.progress.advance(result.frames)
        self._done_with(file, report)

    def _done_with(self, file: _File, report: Report) -> None:
        """One unit of ``file`` is back (or dropped); a failed file's queued units are dropped too."""
        file.left -= 1
        if file.error is not None:
            kept = deque(entry for entry in self.queue if entry[0] is not file)
            file.left -= len(self.queue) - len(kept)
            self.queue = kept
        if file.left == 0:
            self._finish(file, report)

    # --- join and publish ---

    def _finish(self, file: _File, report: Report) -> None:
        """All units are back: join and publish, or fail the file by what the failure means."""
        job = file.claimed.job
        try:
            if file.error is not None:
                raise file.error
            frames = file.frames
            if file.work is not None and file.segmenter is not None:
                file.work.load()
                if not file.work.entries:
                    raise VsrError(f"{shown(job.input)}: no frame to encode")
                frames = file.work.frames_done
                file.segmenter.join(file.work.segments(), job.output)
            changed = publish(self.plan, file.claimed, frames)
        except Interrupted as exc:
            self._stop(file, report, exc)
            self.open.remove(file)
            raise
        except Exception as exc:
            self._fail(file, report, exc)
        else:
            if file.work is not None:
                file.work.remove()
            seconds = time.perf_counter() - file.started
            status, reason = ("busy", "the input changed while it was being upscaled") if changed else ("done", "")
            result = RunResult(job.input, job.final_output, status, frames, seconds, file.resumed_at, reason)
            self._record(file.number, report, _entry(result))
        finally:
            if file in self.open:
                self.open.remove(file)
            job.output.unlink(missing_ok=True)
            file.claimed.lock.release()

    def _fail(self, file: _File, report: Report, exc: BaseException) -> None:
        """Bad or changed input: remove the work. A failed resource: keep every finished segment."""
        job = file.claimed.job
        entry = Entry.of_failure(job.input, exc, job.final_output)
        if failure_kind(exc) == "resource":
            kept = file.keep()
            if kept:
                entry.error = f"{entry.error}; {kept} finished frames are kept: run again to resume"
                entry.frames, entry.resumable = kept, True
        elif file.work is not None:  # the input or the settings failed: resuming would fail the same way
            file.work.remove()
        self._record(file.number, report, entry)

    def _stop(self, file: _File, report: Report, exc: Interrupted) -> None:
        """An interruption: the partial output goes, the finished segments stay, the lock is released."""
        job = file.claimed.job
        job.output.unlink(missing_ok=True)
        kept = file.keep()  # a killed worker's half-written segment goes
        file.claimed.lock.release()
        entry = Entry(shown(job.input), "interrupted", shown(job.final_output), str(exc), kept, resumable=bool(kept))
        report.entries.append(entry)
        if self.total > 1:  # one file: the run's own line says it
            self.log.error("[%d/%d] interrupted: %s", file.number, self.total, shown(job.input))

    def _record(self, number: int, report: Report, entry: Entry) -> None:
        report.entries.append(entry)
        if self.total == 1:  # one file: its outcome is the run's, said once by the caller or as its error
            if entry.status == "failed":
                self.log.error("%s", entry.error)
            return
        where = f"[{number}/{self.total}]"
        if entry.status == "failed":
            self.log.error("%s failed: %s", where, entry.error)
        elif entry.status == "done":
            resumed = f", resumed at frame {entry.resumed_at}" if entry.resumed_at else ""
            self.log.info(
                "%s done: %s -> %s (%d frames, %.1f s, %.2f fps%s)",
                where, entry.input, entry.output, entry.frames, entry.seconds, entry.fps, resumed,
            )  # fmt: skip
        else:
            self.log.info("%s %s: %s (%s)", where, entry.status, entry.input, entry.error)


def _entry(result: RunResult) -> Entry:
    return Entry(
        shown(result.input),
        result.status,
        shown(result.output),
        result.reason or None,
        result.frames,
        round(result.seconds, 3),
        round(result.fps, 3),
        result.resumed_at,
    )
