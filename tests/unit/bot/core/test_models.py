from datetime import UTC

from bot.core.clock import SystemClock
from bot.core.models import (
    ChunkStatus,
    EditInput,
    ItemInputs,
    ItemStatus,
    JobKind,
    JobParams,
    JobStatus,
    Priority,
)
from bot.core.policy import DispatchPolicy
from tests.fakes.models import batch_job


def test_params_round_trip_when_stored_as_json() -> None:
    params = JobParams(model="m", aspect_ratio="16:9", image_size="2K", seed=7, n=4)

    assert JobParams.from_json(params.to_json()) == params


def test_params_use_defaults_when_json_fields_are_missing_or_wrong() -> None:
    assert JobParams.from_json({"model": "m", "seed": "x", "n": None}) == JobParams(model="m")


def test_inputs_round_trip_when_stored_as_json() -> None:
    edit = EditInput(source_key="k", history=("a",))
    inputs = ItemInputs(ref_keys=("inputs/a.png",), source_name="cat.jpg", edit=edit)

    assert ItemInputs.from_json(inputs.to_json()) == inputs
    assert ItemInputs.from_json(ItemInputs().to_json()) == ItemInputs()


def test_inputs_store_their_own_options_only_when_set() -> None:
    own = ItemInputs(source_name="cat.jpg", aspect_ratio="16:9", image_size="2K")

    assert ItemInputs.from_json(own.to_json()) == own
    assert "aspect_ratio" not in ItemInputs().to_json() and "image_size" not in ItemInputs().to_json()
    assert ItemInputs.from_json({"aspect_ratio": 3, "image_size": None}) == ItemInputs()


def test_inputs_tolerate_malformed_json_when_read() -> None:
    assert ItemInputs.from_json({"ref_keys": "x", "edit": {"source_key": "k", "history": "y"}}) == ItemInputs(
        edit=EditInput(source_key="k")
    )


def test_priority_for_kind_when_batch_or_not() -> None:
    assert Priority.for_kind(JobKind.BATCH) is Priority.BATCH
    assert Priority.for_kind(JobKind.GRID) is Priority.INTERACTIVE


def test_final_states_when_checked() -> None:
    assert {s for s in JobStatus if s.is_final} == {JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED}
    assert {s for s in ItemStatus if s.is_final} == {ItemStatus.OK, ItemStatus.ERROR, ItemStatus.CANCELLED}
    assert {s for s in ChunkStatus if s.holds_budget} == {ChunkStatus.SUBMITTING, ChunkStatus.IN_FLIGHT}


def test_remaining_counts_unfinished_items_when_some_are_done() -> None:
    job = batch_job(total=10, ok=3, failed=2, cancelled=1)

    assert job.remaining == 4


def test_system_clock_is_aware_utc_when_read() -> None:
    assert SystemClock().now().tzinfo is UTC


def test_default_policy_is_consistent_when_built() -> None:
    policy = DispatchPolicy()

    assert policy.caps.user.max_running == 3
    assert policy.chunks.max_interactive_items == 4
