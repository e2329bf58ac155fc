"""--help of glace-train, glace-eval and glace-extract-features shows every option with its default."""
from __future__ import annotations

import re

import pytest


def _help(module, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    return re.sub(r"\s+", " ", capsys.readouterr().out)


def test_train_help_shows_defaults(capsys):
    from glace_core.cli import train

    text = _help(train, capsys)
    for option, default in (("--max_iterations", "30000"), ("--batch_size", "40960"), ("--head_channels", "768"),
                            ("--training_buffer_size", "16000000"), ("--repro_loss_type", "dyntanh"),
                            ("--encoder_path", "./ace_encoder_pretrained.pt"), ("--use_half", "True"),
                            ("--num_clusters", "None"), ("--device", "auto"), ("--seed", "42"), ("--preset", "paper")):
        assert re.search(re.escape(option) + r" .*?\(default: " + re.escape(default) + r"\)", text), option
    assert "cpu: encoder_path=default" in text  # the preset's values are listed


def test_eval_help_shows_defaults(capsys):
    from glace_core.cli import evaluate

    text = _help(evaluate, capsys)
    for option, default in (("--hypotheses", "64"), ("--threshold", "10.0"), ("--inlieralpha", "100.0"),
                            ("--maxpixelerror", "100.0"), ("--session", ""), ("--image_resolution", "None"),
                            ("--feat_name", "features.npy"), ("--seed", "0"), ("--num_threads", "0")):
        assert re.search(re.escape(option) + r" .*?\(default: " + re.escape(default) + r"\)", text), option
    for short in ("-hyps", "-t", "-ia", "-maxerrr", "-sid"):
        assert f"{short} " in text


def test_extract_features_help_shows_defaults(capsys):
    from glace_core.cli import extract_features

    text = _help(extract_features, capsys)
    for option, default in (("--batch_size", "256"), ("--global-features", "r2former"), ("--checkpoint", "None"),
                            ("--device", "auto")):
        assert re.search(re.escape(option) + r" .*?\(default: " + re.escape(default) + r"\)", text), option
