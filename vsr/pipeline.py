"""Build stages from a preset and stream frames through them, overlapped in threads.

Each stage runs in its own thread and hands frames to the next through a
bounded queue, so decoding, inference and encoding overlap while memory stays
bounded (``queue_size`` frames between two stages). An exception in any stage
stops all of them and is raised in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from vsr.frame import Frame
from vsr.stage import Job, MediaInfo, Stage

if TYPE_CHECKING:
    from vsr.plan import RunPlan

_DONE = object()


@dataclass
class _Failure:
    error: BaseException


class _Stopped(Exception):
    """Raised inside a producer thread when the consumer has gone away."""


def _threaded(source: Iterator[Frame], maxsize: int, stop: threading.Event, name: str) -> Iterator[Frame]:
    """Run ``source`` in a thread; yield its items through a bounded queue.

    ``stop`` is shared by the whole pipeline: it is set only when a consumer
    goes away early (an error downstream, or the caller stopped reading), and
    tells every producer to quit. A producer's own error travels down the
    queue and is raised in its consumer.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=maxsize)

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def produce() -> None:
        try:
            for item in source:
                put(item)
            put(_DONE)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the consumer, raised there
            try:
                put(_Failure(exc))
            except _Stopped:
                pass
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=f"vsr-{name}", daemon=True)
    thread.start()
    finished = failed = False
    try:
        while True:
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                if not thread.is_alive() and q.empty():
                    raise _Stopped from None
                continue
            if item is _DONE:
                finished = True
                return
            if isinstance(item, _Failure):
                failed = True  # upstream has stopped already; the error travels on
                raise item.error
            yield item
    finally:
        if not finished and not failed:
            stop.set()  # we were abandoned: tell every producer to quit
        thread.join(timeout=30)


@dataclass
class Pipeline:
    """Stages in pipeline order: decoder, upscaler, optional smoother, encoder."""

    stages: list[Stage]
    queue_size: int = 4

    @property
    def encoder(self) -> Stage:
        return self.stages[-1]

    def probe(self) -> MediaInfo | None:
        """What the decoder learns about the input before the first frame."""
        return self.stages[0].probe()

    def frames(self, sink: Callable[[Iterator[Frame]], Iterator[Frame]] | None = None) -> Iterator[Frame]:
        """Run every stage; yields the frames the last one emits.

        ``sink``, if given, takes the last stage's place: it receives the
        frames the stages before it emit (resumable runs hand them to
        :func:`vsr.segments.encode_segments`).
        """
        stop = threading.Event()
        stream: Iterator[Frame] = iter(())
        for stage in self.stages[:-1]:
            stream = _threaded(stage.process(stream), self.queue_size, stop, type(stage).__name__)
        try:
            yield from (sink or self.encoder.process)(stream)
        except _Stopped:
            raise RuntimeError("a pipeline stage stopped without finishing or reporting an error") from None
        finally:
            stop.set()
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def build_pipeline(plan: RunPlan, job: Job, states: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> Pipeline:
    """Build the plan's stages for one file; each gets its own view of ``job`` (role, prepared, carried state).

    Building a stage opens nothing and loads no network (that happens when
    frames arrive), so bad input still fails before a model is loaded or an
    output is created.
    """
    states = states or {}
    return Pipeline(
        [
            s.cls(
                s.options,
                replace(
                    job,
                    role=s.role,
                    prepared=s.prepared,
                    state=states.get(s.role, {}),
                    pinned=frozenset(k.partition(".")[2] for k in plan.pinned if k.startswith(f"{s.role}.")),
                ),
            )
            for s in plan.stages
        ]
    )
