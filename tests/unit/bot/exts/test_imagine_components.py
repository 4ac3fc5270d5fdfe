"""The pieces of Peel's modals that the cog reads back on submit."""

from bot.exts.imagine._components import EDIT_MODAL, REMIX_MODAL, modal_values


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
