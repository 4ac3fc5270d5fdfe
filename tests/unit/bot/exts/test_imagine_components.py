"""The pieces of Peel's modals that the cog reads back on submit."""

from types import SimpleNamespace
from typing import Any

import discord

from bot.core.models import JobId
from bot.exts.imagine._components import (
    EDIT_MODAL,
    REGION_MODAL,
    REMIX_MODAL,
    CellsPromptModal,
    clicked_button,
    modal_values,
    region_picker_view,
)


def test_modal_values_reads_inputs_when_wrapped_in_action_rows_or_labels() -> None:
    data = {
        "custom_id": "peel-edit:j_1:0",
        "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": "instruction", "value": "a hat"}]},
            {"type": 18, "component": {"type": 4, "custom_id": "prompt", "value": "a fox"}},
            {"type": 10, "content": "text with no input"},
        ],
    }

    assert modal_values(data) == {"instruction": "a hat", "prompt": "a fox"}
    assert modal_values(None) == {}


def test_modal_custom_ids_match_only_what_peel_opens() -> None:
    remix = REMIX_MODAL.fullmatch("peel-remix:vs:j_ab12:3")
    assert remix is not None and (remix["action"], remix["job"], remix["index"]) == ("vs", "j_ab12", "3")
    edit = EDIT_MODAL.fullmatch("peel-edit:j_ab12:0")
    assert edit is not None and (edit["job"], edit["index"]) == ("j_ab12", "0")
    assert EDIT_MODAL.fullmatch("peel-edit:../x:0") is None
    assert REMIX_MODAL.fullmatch("peel-remix:v:j_1") is None


def test_the_button_behind_an_interaction_is_the_one_clicked_or_the_one_that_opened_its_modal() -> None:
    def interaction(kind: discord.InteractionType, custom_id: str) -> Any:
        return SimpleNamespace(type=kind, data={"custom_id": custom_id})

    component, modal = discord.InteractionType.component, discord.InteractionType.modal_submit
    assert clicked_button(interaction(component, "peel:r:j_1:0")) == "peel:r:j_1:0"
    assert clicked_button(interaction(component, "peel-settings:grid")) is None  # not a Peel job button
    assert clicked_button(interaction(modal, "peel-remix:v:j_1:2")) == "peel:v:j_1:2"
    assert clicked_button(interaction(modal, "peel-edit:j_1:0")) == "peel:ed:j_1:0"
    assert clicked_button(interaction(modal, "peel-batch:retry")) is None


def test_the_region_modal_id_carries_the_picked_cells_or_none_when_typed() -> None:
    picked = REGION_MODAL.fullmatch("peel-region:j_ab12:0:12")
    assert picked is not None and (picked["job"], picked["index"], picked["cells"]) == ("j_ab12", "0", "12")
    typed = REGION_MODAL.fullmatch("peel-region:j_ab12:0")
    assert typed is not None and typed["cells"] is None
    assert REGION_MODAL.fullmatch("peel-region:j_ab12:0:0") is None  # cells are 1–9
    assert REGION_MODAL.fullmatch("peel-region:j_ab12:0:") is None


async def test_the_cells_modal_is_titled_by_its_region_and_its_id_round_trips() -> None:
    modal = CellsPromptModal(job_id=JobId("j_ab12"), index=2, cells="15", text="a fox")
    match = REGION_MODAL.fullmatch(modal.custom_id)
    assert match is not None and match["cells"] == "15" and match["index"] == "2"
    assert modal.title == "Vary (Region): cells 1–5" and modal.prompt.default == "a fox"


async def test_the_picker_offers_cells_one_to_nine_and_the_typed_box() -> None:
    view = region_picker_view("j_ab12", 1)
    ids = [getattr(item, "custom_id", None) for item in view.children]
    assert ids == ["peel:cells:j_ab12:1", "peel:vrt:j_ab12:1"]
