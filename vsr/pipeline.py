"""Build stages from a preset and stream frames through them, overlapped in threads.

Each stage runs in its own thread and hands frames to the next through a
bounded queue, so decoding, inference and encoding overlap while memory stays
bounded (``queue_size`` frames between two stages). An exception in any stage
stops all of them and is raised in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vsr.frame import Frame
from vsr.options import parse_options
from vsr.presets import Preset
from vsr.registry import Registry
from vsr.stage import Job, MediaInfo, Stage

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
    def scale(self) -> int:
        """The upscaler's factor (4 when no stage says)."""
        return next((s.scale for s in self.stages if isinstance(getattr(s, "scale", None), int)), 4)

    def probe(self) -> MediaInfo | None:
        """What the decoder learns about the input before the first frame."""
        probe = getattr(self.stages[0], "probe", None)
        return probe() if probe is not None else None

    def frames(self) -> Iterator[Frame]:
        """Run every stage; yields the frames the last stage emits."""
        stop = threading.Event()
        stream: Iterator[Frame] = iter(())
        for stage in self.stages[:-1]:
            stream = _threaded(stage.process(stream), self.queue_size, stop, type(stage).__name__)
        try:
            yield from self.stages[-1].process(stream)
        except _Stopped:
            raise RuntimeError("a pipeline stage stopped without finishing or reporting an error") from None
        finally:
            stop.set()
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def build_pipeline(registry: Registry, preset: Preset, job: Job, *, probe: bool = True) -> Pipeline:
    """Validate every stage's options, build the stages, and (unless ``probe=False``) probe the input.

    Building a stage opens nothing and loads no network (that happens when
    frames arrive), so bad input still fails before a model is loaded or an
    output is created.
    """
    choices = preset.choices()
    classes = [(c, registry.stage(c.role, c.stage)) for c in choices]
    options = [parse_options(cls.Options, c.options, f"{c.role} stage {c.stage!r}") for c, cls in classes]
    pipeline = Pipeline([cls(opts, job) for (_, cls), opts in zip(classes, options, strict=True)])
    if probe:
        job.media = pipeline.probe()
    return pipeline
