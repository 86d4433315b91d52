"""The continuous batch loop against an in-memory job store and a recording lifecycle.

Every job's flushed output plus its final chunk must equal what the engine generates alone for
the same seed, parameters and random seed, whatever else shares the batch.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from shared.engine.batch import generate
from shared.engine.model import LSTMModel, UnknownChars
from shared.engine.registry import ModelRegistry
from shared.engine.sampling import SamplingParams
from shared.jobs.lifecycle import Ended, Lifecycle, Listener
from shared.jobs.records import Final, FlushOutcome, JobStatus, Progress
from shared.webhooks.events import OUTPUT_EVENT_INTERVAL_S
from worker.batch_loop import ActiveJob, LoopStore, ModelLoop, RunOutcome

FLUSH_S = 0.01  # flush often so that short jobs still cross several flushes
LONG = 100_000  # characters of a job that crosses flushes for sure: at least 1,500 step calls
WAIT_S = 20.0  # the longest any job here may take to end (a failure, never a pause)
ENDLESS = 10**7  # characters: a job that only a cancel, a time limit or stop() ends


class FakeStore:
    """The `LoopStore` a model loop writes to, kept in memory.

    `answers[job_id]` is what a flush answers for that job once some of its text is stored
    (OK before); `refused` names jobs whose final state is refused (not this attempt's). A
    write whose bases differ from the stored lengths is answered REBASE, as Redis does; `lose`
    names jobs whose next write with text is answered OK but not kept (a failover lost it).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.texts: dict[str, list[str]] = {}  # job id -> each sample's stored text
        self.flushes: list[Progress] = []
        self.finals: list[Final] = []
        self.released: list[tuple[str, int, int]] = []
        self.answers: dict[str, FlushOutcome] = {}
        self.refused: set[str] = set()
        self.lose: set[str] = set()
        self.rebased: list[str] = []
        self._stored: dict[str, threading.Event] = {}

    def stored(self, job_id: str) -> threading.Event:
        """Return the event set once some text of the job was flushed."""
        with self.lock:
            return self._stored.setdefault(job_id, threading.Event())

    def _append(self, update: Progress) -> bool:
        """Append the update's chunks if its bases are the stored lengths (else REBASE)."""
        texts = self.texts.setdefault(update.job_id, [""] * len(update.chunks))
        if [len(text) for text in texts] != list(update.bases):
            self.rebased.append(update.job_id)
            return False
        if update.job_id in self.lose and any(update.chunks):
            self.lose.discard(update.job_id)
            return True
        for index, chunk in enumerate(update.chunks):
            texts[index] += chunk
        return True

    def flush(self, updates: Sequence[Progress]) -> list[FlushOutcome]:
        answers = []
        for update in updates:
            with self.lock:
                had_text = any(self.texts.get(update.job_id, ()))
                self.flushes.append(update)
                appended = self._append(update)
            if not appended:
                answers.append(FlushOutcome.REBASE)
                continue
            if any(update.chunks):
                self.stored(update.job_id).set()
            answer = self.answers.get(update.job_id, FlushOutcome.OK)
            answers.append(answer if had_text else FlushOutcome.OK)
        return answers

    def finish(self, finals: Sequence[Final]) -> list[FlushOutcome]:
        answers = []
        with self.lock:
            for final in finals:
                if final.update.job_id in self.refused:
                    self.finals.append(final)
                    answers.append(FlushOutcome.GONE)
                elif not self._append(final.update):
                    answers.append(FlushOutcome.REBASE)
                else:
                    self.finals.append(final)
                    answers.append(FlushOutcome.OK)
        return answers

    def stored_lengths(self, job_id: str, n: int) -> list[int]:
        with self.lock:
            return [len(text) for text in self.texts.get(job_id, [""] * n)]

    def release(self, job_id: str, attempt: int, n: int) -> bool:
        with self.lock:
            self.released.append((job_id, attempt, n))
        return True

    def text(self, job_id: str) -> list[str]:
        """Return each sample's text as flushed, then completed by the final update."""
        with self.lock:
            return list(self.texts.get(job_id, []))

    def final_of(self, job_id: str) -> Final:
        """Return the one final state recorded for a job."""
        (final,) = [f for f in self.finals if f.update.job_id == job_id]
        return final

    def flushed_text(self, job_id: str) -> bool:
        """Return whether any flush (not only the final update) carried text of the job."""
        return any(any(u.chunks) for u in self.flushes if u.job_id == job_id)


class Recorder(Listener):
    """A lifecycle listener that keeps what it is told.

    An output event records the loop's own clock of it (`ActiveJob.last_output_event`, set
    just before the loop calls the lifecycle on the same thread).
    """

    def __init__(self) -> None:
        self.started_ids: list[str] = []
        self.outputs: list[tuple[str, float]] = []
        self.ended: list[Ended] = []
        self.jobs: dict[str, ActiveJob] = {}

    def started(self, job_id: str) -> None:
        self.started_ids.append(job_id)

    def output(self, job_id: str) -> None:
        self.outputs.append((job_id, self.jobs[job_id].last_output_event))

    def finished(self, ended: Ended) -> None:
        self.ended.append(ended)

    def output_times(self, job_id: str) -> list[float]:
        return [at for found, at in self.outputs if found == job_id]


class Harness:
    """A started model loop over a fake store, with a recording lifecycle."""

    def __init__(self, loop: ModelLoop, store: FakeStore, recorder: Recorder) -> None:
        self.loop = loop
        self.store = store
        self.recorder = recorder

    def submit(self, *jobs: ActiveJob) -> None:
        for job in jobs:
            self.recorder.jobs[job.job_id] = job
            self.loop.submit(job)


MakeHarness = Callable[..., Harness]


@pytest.fixture(scope="module")
def model(model_dir: Path) -> LSTMModel:
    """Return the tiny model (loaded once for the module)."""
    return ModelRegistry(model_dir).get("tiny")


@pytest.fixture
def make_harness(model: LSTMModel) -> Iterator[MakeHarness]:
    """Return a factory of loops; every loop it made is stopped at teardown."""
    loops: list[ModelLoop] = []

    def make(
        *,
        capacity: int = 16,
        jobs: Sequence[ActiveJob] = (),
        stored: dict[str, list[str]] | None = None,
    ) -> Harness:
        store, recorder = FakeStore(), Recorder()
        store.texts.update(stored or {})  # what earlier attempts wrote
        as_store: LoopStore = store  # the fake implements the Protocol the loop needs
        lifecycle = Lifecycle([recorder])
        loop = ModelLoop(
            "tiny", lambda: model, as_store, lifecycle, capacity=capacity, flush_interval_s=FLUSH_S
        )
        loops.append(loop)
        harness = Harness(loop, store, recorder)
        harness.submit(*jobs)  # before the start: they all join the first step together
        loop.start()
        assert loop.ready.wait(WAIT_S) and loop.load_error is None
        return harness

    yield make
    for loop in loops:
        loop.stop()
        assert not loop.alive()


def active_job(
    job_id: str,
    *,
    seed: str = "the ",
    length: int = 400,
    temperature: float = 1.0,
    top_k: int | None = None,
    stop: tuple[str, ...] = (),
    n: int = 1,
    random_seed: int = 7,
    attempt: int = 1,
    stored: Sequence[int] | None = None,
    resumed: Sequence[str] = (),
    prefix: Sequence[str] = (),
    unknown: UnknownChars = "error",
    time_limit_s: float = 60.0,
    notify_output: bool = False,
) -> ActiveJob:
    """Return a claimed job as `Runtime._active` builds it (first attempt: nothing stored)."""
    params = SamplingParams(length=length, temperature=temperature, top_k=top_k, stop=stop)
    return ActiveJob(
        job_id=job_id,
        model="tiny",
        attempt=attempt,
        seed=seed,
        unknown=unknown,
        params=params,
        random_seed=random_seed,
        stored=[0] * n if stored is None else list(stored),
        time_limit_s=time_limit_s,
        created_at=time.time(),
        notify_output=notify_output,
        resumed=list(resumed),
        prefix=list(prefix),
    )


def solo(model: LSTMModel, job: ActiveJob, length: int | None = None) -> list[str]:
    """Return the samples the engine generates for the job on its own."""
    params = job.params if length is None else replace(job.params, length=length)
    return generate(model, job.seed, params, random_seed=job.random_seed, n=job.n).texts


def wait_done(*jobs: ActiveJob) -> None:
    for job in jobs:
        assert job.done.wait(WAIT_S), f"job {job.job_id} did not end"


@pytest.mark.parametrize("n", [1, 3])
def test_a_job_succeeds_with_the_text_the_engine_generates_alone(
    make_harness: MakeHarness, model: LSTMModel, n: int
) -> None:
    # Long enough for many flushes however fast the step is (calls of up to 64 steps).
    job = active_job("job-1", length=LONG, n=n, random_seed=11)
    harness = make_harness(jobs=[job])
    wait_done(job)
    assert job.outcome is RunOutcome.SUCCEEDED
    final = harness.store.final_of("job-1")
    assert final.status is JobStatus.SUCCEEDED and final.error is None
    assert final.finish_reasons == ("length",) * n
    assert final.update.done == LONG * n
    assert harness.store.flushed_text("job-1")  # part of the text came through flushes
    assert harness.store.text("job-1") == solo(model, job)


def test_jobs_of_different_lengths_batch_together_and_each_equals_its_solo_output(
    make_harness: MakeHarness, model: LSTMModel
) -> None:
    jobs = [
        active_job("short", length=40, random_seed=1),
        active_job("pair", seed="a cat", length=900, n=2, random_seed=2, temperature=0.7),
        active_job("long", seed="hello", length=2500, random_seed=3, top_k=5),
        active_job("greedy", seed="x", length=600, temperature=0.0),
    ]
    harness = make_harness(jobs=jobs)
    wait_done(*jobs)
    assert harness.loop.peak == 5  # every sequence stepped in one batch
    for job in jobs:
        assert job.outcome is RunOutcome.SUCCEEDED, job.job_id
        assert harness.store.text(job.job_id) == solo(model, job), job.job_id


def test_a_cancel_answer_ends_the_job_canceled_with_its_partial_text(
    make_harness: MakeHarness, model: LSTMModel
) -> None:
    job = active_job("job-c", length=ENDLESS)
    harness = make_harness()
    harness.store.answers["job-c"] = FlushOutcome.CANCEL
    harness.submit(job)
    wait_done(job)
    assert job.outcome is RunOutcome.CANCELED
    final = harness.store.final_of("job-c")
    assert final.status is JobStatus.CANCELED and final.finish_reasons == ()
    (text,) = harness.store.text("job-c")
    assert 0 < len(text) < ENDLESS and final.update.done == len(text)
    assert [text] == solo(model, job, length=len(text))  # a prefix of the full generation


def test_a_gone_answer_ends_the_run_gone_without_recording_an_end(
    make_harness: MakeHarness,
) -> None:
    job = active_job("job-g", length=ENDLESS)
    harness = make_harness()
    harness.store.answers["job-g"] = FlushOutcome.GONE
    harness.submit(job)
    wait_done(job)
    assert job.outcome is RunOutcome.GONE
    assert harness.store.finals == [] and harness.store.released == []
    assert harness.recorder.ended == []
    assert harness.loop.size() == 0  # its sequence left the batch


def test_a_refused_final_ends_the_run_gone_and_tells_no_listener(
    make_harness: MakeHarness,
) -> None:
    job = active_job("job-r", length=30)
    harness = make_harness()
    harness.store.refused.add("job-r")
    harness.submit(job)
    wait_done(job)
    assert job.outcome is RunOutcome.GONE
    assert len(harness.store.finals) == 1 and harness.recorder.ended == []


def test_stop_releases_running_and_waiting_jobs(make_harness: MakeHarness) -> None:
    running = active_job("running", length=ENDLESS, n=2)
    waiting = active_job("waiting", length=ENDLESS, n=2)  # no room left: it waits its turn
    harness = make_harness(capacity=2)
    harness.submit(running, waiting)
    assert harness.store.stored("running").wait(WAIT_S)
    harness.loop.stop()
    assert running.done.is_set() and waiting.done.is_set()
    assert running.outcome is RunOutcome.RELEASED and waiting.outcome is RunOutcome.RELEASED
    assert sorted(harness.store.released) == [("running", 1, 2), ("waiting", 1, 2)]
    assert harness.store.finals == [] and harness.recorder.ended == []
    assert not harness.loop.alive()


def test_a_job_past_its_time_limit_ends_timed_out_with_its_partial_text(
    make_harness: MakeHarness, model: LSTMModel
) -> None:
    job = active_job("job-t", length=ENDLESS, time_limit_s=0.05)
    harness = make_harness(jobs=[job])
    wait_done(job)
    assert job.outcome is RunOutcome.TIMED_OUT
    final = harness.store.final_of("job-t")
    assert final.status is JobStatus.TIMED_OUT
    assert final.error is not None and final.error.type == "time_limit"
    assert "0.05 s" in final.error.message
    (text,) = harness.store.text("job-t")
    assert 0 < len(text) == final.update.done
    assert [text] == solo(model, job, length=len(text))


@pytest.mark.parametrize(
    ("unknown", "message"),
    [("drop", "no character the model knows"), ("error", "not in the model's vocabulary")],
)
def test_a_seed_with_no_known_character_fails_invalid_input(
    make_harness: MakeHarness, unknown: UnknownChars, message: str
) -> None:
    job = active_job("job-i", seed="ÆØÅ€", unknown=unknown)
    harness = make_harness(jobs=[job])
    wait_done(job)
    assert job.outcome is RunOutcome.FAILED
    final = harness.store.final_of("job-i")
    assert final.status is JobStatus.FAILED
    assert final.error is not None and final.error.type == "invalid_input"
    assert message in final.error.message
    assert final.update.done == 0 and harness.store.text("job-i") == [""]


def test_more_samples_than_the_batch_holds_fail_invalid_input(
    make_harness: MakeHarness,
) -> None:
    job = active_job("job-big", n=3)
    harness = make_harness(capacity=2, jobs=[job])
    wait_done(job)
    assert job.outcome is RunOutcome.FAILED
    error = harness.store.final_of("job-big").error
    assert error is not None and error.type == "invalid_input"


def test_the_listener_hears_each_recorded_ending_once_with_its_status_and_chars(
    make_harness: MakeHarness,
) -> None:
    done = active_job("ok", length=50, n=2)
    failed = active_job("bad", seed="ÆØ", unknown="drop")
    timed = active_job("slow", length=ENDLESS, time_limit_s=0.05)
    canceled = active_job("stopped", length=ENDLESS)
    gone = active_job("gone", length=ENDLESS)
    harness = make_harness()
    harness.store.answers.update(stopped=FlushOutcome.CANCEL, gone=FlushOutcome.GONE)
    jobs = [done, failed, timed, canceled, gone]
    harness.submit(*jobs)
    wait_done(*jobs)
    ended = {e.job_id: e for e in harness.recorder.ended}
    assert len(harness.recorder.ended) == len(ended) == len(harness.store.finals) == 4
    assert "gone" not in ended
    for final in harness.store.finals:
        got = ended[final.update.job_id]
        assert got.status is final.status and got.chars == final.update.done
        assert got.model == "tiny" and got.total_s >= 0
        assert got.generation_s is not None and got.generation_s >= 0
    assert ended["ok"].status is JobStatus.SUCCEEDED and ended["ok"].chars == 100
    assert ended["bad"].status is JobStatus.FAILED and ended["bad"].chars == 0
    assert ended["slow"].status is JobStatus.TIMED_OUT and ended["slow"].chars > 0
    assert ended["stopped"].status is JobStatus.CANCELED and ended["stopped"].chars > 0
    assert harness.recorder.started_ids == []  # `started` is the runtime's to report


def test_output_events_are_throttled_and_only_for_jobs_that_asked(
    make_harness: MakeHarness,
) -> None:
    limit = 1.6 * OUTPUT_EVENT_INTERVAL_S  # room for two events, not three
    loud = active_job("loud", length=ENDLESS, time_limit_s=limit, notify_output=True)
    quiet = active_job("quiet", length=ENDLESS, time_limit_s=limit, notify_output=False)
    harness = make_harness(jobs=[loud, quiet])
    wait_done(loud, quiet)
    assert loud.outcome is RunOutcome.TIMED_OUT and quiet.outcome is RunOutcome.TIMED_OUT
    assert harness.recorder.output_times("quiet") == []
    times = harness.recorder.output_times("loud")
    assert len(times) == 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= OUTPUT_EVENT_INTERVAL_S for gap in gaps), gaps
    with_text = [u for u in harness.store.flushes if u.job_id == "loud" and any(u.chunks)]
    assert len(with_text) > len(times)  # flushes outnumber the events: they were throttled


@pytest.mark.parametrize("resume", [True, False], ids=["resumed", "replayed"])
def test_a_redelivered_job_writes_only_the_text_beyond_what_is_stored(
    make_harness: MakeHarness, model: LSTMModel, resume: bool
) -> None:
    probe = active_job("probe", length=2000, n=2, top_k=20, random_seed=5)
    first, second = solo(model, probe)
    before = [first[:700], second[:1500]]  # what the first attempt had written
    job = active_job(
        "job-again",
        length=2000,
        n=2,
        top_k=20,
        random_seed=5,
        attempt=2,
        stored=[700, 1500],
        resumed=before if resume else (),  # without: generated again from the start
    )
    harness = make_harness(jobs=[job], stored={"job-again": list(before)})
    wait_done(job)
    assert job.outcome is RunOutcome.SUCCEEDED
    assert harness.store.text("job-again") == [first, second]
    new = [u for u in harness.store.flushes if u.job_id == "job-again"]
    assert all(u.attempt == 2 for u in new) and harness.store.rebased == []
    # A resumed job steps only the characters after the stored ones.
    assert (harness.recorder.ended[0].chars, resume) == (4000, resume)


def test_a_job_resumed_after_a_stop_sequence_was_held_back_stops_where_a_solo_run_does(
    make_harness: MakeHarness, model: LSTMModel
) -> None:
    probe = active_job("probe", length=3000, random_seed=9)
    (full,) = solo(model, probe)
    at = next(i for i in range(2000, 2900) if full.index(full[i : i + 4]) == i)
    stop = full[at : at + 4]
    cut = at + 2  # the first attempt stored up to the stop's start (its first half held back)
    job = active_job("job-stop", length=3000, random_seed=9, stop=(stop,), attempt=2, stored=[at])
    job.resumed = [full[:at]]
    harness = make_harness(jobs=[job], stored={"job-stop": [full[:at]]})
    wait_done(job)
    assert harness.store.text("job-stop") == [full[:at]] and cut > at
    assert harness.store.final_of("job-stop").finish_reasons == ("stop",)


def test_a_continued_job_writes_what_one_longer_job_writes_after_the_text_it_continues(
    make_harness: MakeHarness, model: LSTMModel
) -> None:
    whole = solo(model, active_job("whole", length=1500, n=2, random_seed=11, temperature=0.8))
    first = [text[:600] for text in whole]
    job = active_job("later", length=900, n=2, random_seed=11, temperature=0.8, prefix=first)
    harness = make_harness(jobs=[job])
    wait_done(job)
    assert harness.store.text("later") == [text[600:] for text in whole]
    assert harness.store.final_of("later").update.done == 1800


def test_a_lost_write_is_written_again_from_what_the_store_has(
    make_harness: MakeHarness, model: LSTMModel
) -> None:
    job = active_job("job-lost", length=LONG, random_seed=4)  # its first flush is not its end
    harness = make_harness()
    harness.store.lose.add("job-lost")  # its first write with text vanishes (a failover)
    harness.submit(job)
    wait_done(job)
    assert job.outcome is RunOutcome.SUCCEEDED
    assert harness.store.text("job-lost") == solo(model, job)
    assert "job-lost" in harness.store.rebased


def test_a_stop_sequence_across_flushes_ends_the_job_with_its_solo_text(
    make_harness: MakeHarness, model: LSTMModel
) -> None:
    probe = active_job("probe", length=LONG, random_seed=9)
    (full,) = solo(model, probe)
    # A stop sequence first met late in the text, so that the job crosses several flushes.
    at = next(i for i in range(LONG - 1000, LONG - 100) if full.index(full[i : i + 8]) == i)
    stop = full[at : at + 8]
    job = active_job("job-stop", length=LONG, random_seed=9, stop=(stop,))
    harness = make_harness(jobs=[job])
    wait_done(job)
    final = harness.store.final_of("job-stop")
    assert final.finish_reasons == ("stop",)
    (text,) = harness.store.text("job-stop")
    assert [text] == solo(model, job) and text == full[:at]
    assert final.update.done == len(text)
    assert harness.store.flushed_text("job-stop")


def test_a_redelivery_to_the_same_loop_takes_over_and_the_earlier_run_ends_gone(
    make_harness: MakeHarness, model: LSTMModel
) -> None:
    earlier = active_job("job-twice", length=ENDLESS)
    harness = make_harness(jobs=[earlier])
    assert harness.store.stored("job-twice").wait(WAIT_S)
    later = active_job("job-twice", length=300, attempt=2)
    harness.submit(later)
    wait_done(earlier, later)
    assert earlier.outcome is RunOutcome.GONE and later.outcome is RunOutcome.SUCCEEDED
    assert [f.update.attempt for f in harness.store.finals] == [2]
    assert [e.status for e in harness.recorder.ended] == [JobStatus.SUCCEEDED]
