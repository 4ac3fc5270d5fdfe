from bot.core.render import EditPacer, WindowLimiter, image_line, lifecycle_line, result_who


def test_image_line_reads_like_midjourneys_when_an_image_is_separated():
    assert image_line("a *fox*", 2, "<@1>") == r"**a \*fox\*** - Image #2 <@1>"


def test_result_who_names_the_kind_of_result_when_labelled():
    assert result_who("Variations (Strong)", "<@1>") == "Variations (Strong) by <@1>"
    assert lifecycle_line("fox", result_who("", "<@1>"), "fast") == "**fox** - <@1> (fast)"


def test_edit_pacer_spaces_progress_edits_when_called_often():
    pacer = EditPacer(interval_s=3.0)
    assert pacer.due(0.0)
    pacer.edited(0.0)
    assert not pacer.due(2.9)
    assert pacer.due(2.9, final=True)
    assert pacer.due(3.0)


def test_window_limiter_holds_off_until_the_oldest_edit_leaves_the_window_when_full():
    limiter = WindowLimiter(limit=4, window_s=5.0)
    for t in (0.0, 0.5, 1.0, 1.5):
        assert limiter.wait_s(t) == 0.0
        limiter.record(t)
    assert limiter.wait_s(2.0) == 3.0
    assert limiter.wait_s(5.0) == 0.0
