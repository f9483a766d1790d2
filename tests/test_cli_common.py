"""The CLI's shared choices match the library's, and bad choices are usage errors (exit 2)."""

from flowact.cli_common import Fit, Planner
from flowact.cli_train import StageName
from flowact.media.image import FIT_MODES
from flowact.train.stages import STAGES

from helpers import TINY, run_cli


def test_choices_match_the_library():
    assert tuple(s.value for s in StageName) == STAGES
    assert {f.value for f in Fit} == set(FIT_MODES)
    assert {p.value for p in Planner} == {"rules", "none"}


def test_a_bad_choice_is_a_usage_error_naming_the_option(tmp_path):
    for args, option in (
        (["train", "--stage", "nope"], "--stage"),
        (["render", "--fit", "stretch"], "--fit"),
        (["live", "-i", "x.png", "--preset", TINY, "--planner", "gpt"], "--planner"),
        (["train", "--stage", "distill", "--guide-on", "video", "--out", str(tmp_path)], "--guide-on"),
        (["train", "--stage", "distill", "--guide-below", "1.5", "--out", str(tmp_path)], "--guide-below"),
        (["train", "--stage", "vae", "--pixel-weight", "1", "--out", str(tmp_path)], "--pixel-weight"),
        (["train", "--stage", "pretrain", "--pixel-weight", "-1", "--out", str(tmp_path)], "--pixel-weight"),
        (["train", "--stage", "vae", "--posterior-noise", "-1", "--out", str(tmp_path)], "--posterior-noise"),
        (["train", "--stage", "selfforce", "--self-context", "--out", str(tmp_path)], "--self-context"),
    ):
        code, _, err = run_cli(args)
        assert code == 2 and option in err, (args, err)
