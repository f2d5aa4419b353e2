"""The input kinds: prompt.txt, JSON jobs, prompts.csv and theme_<user>.json charts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from loguru import logger

from sora_driver import locate
from sora_driver.backend import CAPABILITIES as WEB
from sora_watcher.backends.base import JobOptions
from sora_watcher.cli import EXIT_USAGE, cli
from sora_watcher.config import ConfigError
from sora_watcher.inputs import InputError, Prompt, Rules, finished, read_prompts
from sora_watcher.inputs.chart import load_template

DATA = Path(__file__).parent / "data"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# -- JSON jobs ---------------------------------------------------------------------------------


def test_json_job_with_options(tmp_path: Path) -> None:
    job = {"prompts": ["a red fox", "  ", "a blue\nwhale"], "aspect_ratio": "16:9", "variants": 2}
    job["name"] = "campaign-7"
    prompts = read_prompts(write(tmp_path, "job.json", json.dumps(job)))
    options = JobOptions("16:9", 2)
    assert prompts == [
        Prompt("a red fox", 1, options, "campaign-7"),
        Prompt("a blue whale", 3, options, "campaign-7"),
    ]


def test_json_job_single_prompt_defaults(tmp_path: Path) -> None:
    [prompt] = read_prompts(write(tmp_path, "one.json", '{"prompt": "a lighthouse"}'))
    assert prompt == Prompt("a lighthouse", 1)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"prompt": "x", "aspect": "1:1"}', "unknown key(s) aspect: allowed are prompt"),
        ('{"prompt": "x", "aspect_ratio": "4:3"}', "aspect_ratio '4:3' is not one of 1:1, 3:2"),
        ('{"prompt": "x", "variants": 3}', "variants 3 is not one of 1, 2, 4"),
        ('{"prompt": "x", "variants": true}', "variants True is not one of"),
        ('{"prompt": "x", "name": "../etc"}', "name '../etc' is not allowed"),
        ('{"prompt": "x", "prompts": ["y"]}', 'either "prompt"'),
        ('{"prompts": "y"}', '"prompts" must be a list'),
        ('["x"]', "a JSON job is an object"),
        ('{"prompt": "x",}', "invalid JSON at line 1, column 16"),
        ('{"prompt": "  "}', "no prompt"),
    ],
)
def test_json_job_errors_say_what_is_allowed(tmp_path: Path, content: str, reason: str) -> None:
    with pytest.raises(InputError, match=None) as caught:
        read_prompts(write(tmp_path, "job.json", content), Rules(capabilities=WEB))
    assert reason in str(caught.value)


# -- CSV ---------------------------------------------------------------------------------------


def test_csv_rows_with_options_and_a_bad_row_failing_alone(tmp_path: Path) -> None:
    csv = (
        "prompt,aspect_ratio,variants,name\n"
        "a red fox,3:2,1,foxes\n"
        '"a whale, singing",,2,\n'
        "\n"
        "a bad row,5:4,1,\n"
        ",1:1,1,\n"
        "last one,,,\n"
    )
    prompts = read_prompts(write(tmp_path, "prompts.csv", csv))
    assert prompts[0] == Prompt("a red fox", 2, JobOptions("3:2", 1), "foxes")
    assert prompts[1] == Prompt("a whale, singing", 3, JobOptions("1:1", 2))
    assert (
        prompts[2].error
        == "row at line 5: aspect_ratio '5:4' is not one of 1:1, 3:2, 2:3, 16:9, 9:16"
    )
    assert prompts[3].error == "row at line 6: empty prompt"
    assert prompts[4] == Prompt("last one", 7)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("text\nhello\n", "header with a 'prompt' column"),
        ("prompt,colour\nhello,red\n", "unknown column(s) colour"),
        ("prompt\n", "no prompt"),
        ("", "header with a 'prompt' column"),
    ],
)
def test_csv_file_errors(tmp_path: Path, content: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        read_prompts(write(tmp_path, "p.csv", content))
    assert reason in str(caught.value)


def test_a_csv_prompt_over_the_limit_fails_its_row_only(tmp_path: Path) -> None:
    prompts = read_prompts(
        write(tmp_path, "p.csv", "prompt\n" + "x" * 30 + "\nshort\n"), Rules(max_prompt_chars=20)
    )
    assert prompts[0].error is not None and "30 characters" in prompts[0].error
    assert prompts[1] == Prompt("short", 3)


# -- theme_<user>.json -------------------------------------------------------------------------


def test_theme_gives_one_prompt_for_the_users_folder(tmp_path: Path) -> None:
    path = tmp_path / "theme_alice.json"
    shutil.copyfile(DATA / "theme_alice.json", path)
    [prompt] = read_prompts(path)
    assert prompt.folder == "alice"
    assert "Cancer sun" in prompt.text and "Taurus moon" in prompt.text
    assert read_prompts(path) == [prompt], "same chart, same prompt"


@pytest.mark.parametrize("user", ["..", "a.b", "a b", "", "x" * 65, "-dash", "été", "$(rm)"])
def test_unsafe_user_names_are_refused(tmp_path: Path, user: str) -> None:
    path = write(tmp_path, f"theme_{user}.json", (DATA / "theme_alice.json").read_bytes())
    with pytest.raises(InputError, match=r"the user name in theme_<user>\.json"):
        read_prompts(path)


def test_theme_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="invalid JSON"):
        read_prompts(write(tmp_path, "theme_bob.json", "{"))
    with pytest.raises(InputError, match="no chart data"):
        read_prompts(write(tmp_path, "theme_bob.json", '{"titre": "nothing else"}'))


def test_prompt_template_is_read_and_checked_by_the_chart_plug_in(tmp_path: Path) -> None:
    wording = tmp_path / "wording.txt"
    wording.write_text("Sky of $user: $sun_sign and $palette.", "utf-8")
    path = tmp_path / "theme_alice.json"
    shutil.copyfile(DATA / "theme_alice.json", path)
    [prompt] = read_prompts(path, Rules(template=load_template(wording)))
    assert prompt.text.startswith("Sky of alice: Cancer and deep navy")
    assert load_template(None) is None

    wording.write_text("Sky of $someone", "utf-8")
    with pytest.raises(
        ConfigError, match=r"^SORA_PROMPT_TEMPLATE=.*wording\.txt: unknown field \$someone"
    ):
        load_template(wording)
    with pytest.raises(ConfigError, match=r"^SORA_PROMPT_TEMPLATE=.*missing\.txt: "):
        load_template(tmp_path / "missing.txt")


def test_a_wrong_template_stops_the_command_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "wording.txt").write_text("Sky of $someone", "utf-8")
    monkeypatch.setenv("SORA_PROMPT_TEMPLATE", "wording.txt")
    status = cli("--home", str(tmp_path), "--backend", "instant", "--env-file", "none", "once")
    assert status == EXIT_USAGE
    said = capsys.readouterr().err
    assert "configuration error: SORA_PROMPT_TEMPLATE=" in said and "$someone" in said
    assert not (tmp_path / "logs").exists()  # said before anything started


def test_a_selector_profile_that_cannot_be_used_is_a_configuration_error(tmp_path: Path) -> None:
    default = Path(locate.__file__).with_name("selectors.json")
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"composer": [{"xpath": "//textarea"}]}), "utf-8")
    with pytest.raises(ConfigError, match=r"SORA_SELECTORS=.*composer: expected a list of"):
        locate.load_profile(default, mine)
    mine.write_text("{not json", "utf-8")
    with pytest.raises(ConfigError, match=r"SORA_SELECTORS=.*mine\.json: "):
        locate.load_profile(default, mine)
    mine.write_text(json.dumps({"composer": [{"css": "textarea"}]}), "utf-8")
    assert locate.load_profile(default, mine)["composer"] == [{"css": "textarea"}]


def test_a_chart_leaves_its_result_beside_its_image_and_other_inputs_none(
    tmp_path: Path,
) -> None:
    image = tmp_path / "images" / "alice" / "20250415_184201_abcde.png"
    image.parent.mkdir(parents=True)
    lines: list[str] = []
    sink = logger.add(lines.append, format="{message}")
    try:
        finished("theme_alice.json", "a dreamlike portrait for alice", image, tmp_path)
    finally:
        logger.remove(sink)
    assert lines == ["alice: result written to images/alice/result_alice.json\n"]
    result = json.loads((image.parent / "result_alice.json").read_text("utf-8"))
    assert result == {
        "user_id": "alice",
        "prompt": "a dreamlike portrait for alice",
        "image": str(image),
    }
    for other in ("prompts.txt", "job.json", "rows.csv", "theme_.json.txt"):
        finished(other, "a prompt", tmp_path / "images" / "x.png", tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("result_*")) == ["result_alice.json"]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("huge-cell.csv", b'prompt\n"' + b"x" * 140_000 + b'"\n', "cannot read it: Error"),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "cannot read it: RecursionError"),
        ("theme_x.json", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "cannot read it"),
    ],
)
def test_what_the_readers_did_not_foresee_is_still_a_clear_input_error(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    with pytest.raises(InputError) as caught:
        read_prompts(write(tmp_path, name, content), Rules(max_bytes=10_000_000))
    assert reason in str(caught.value)


def test_the_diffusers_keys_are_checked_and_refused_by_other_backends() -> None:
    """seed, negative_prompt and steps: read from a JSON job or a CSV row, checked against the
    backend (no torch needed: the diffusers backend's capabilities are plain data)."""
    import re

    from sora_watcher.backends import instant
    from sora_watcher.backends.sdxl import CAPABILITIES as SDXL
    from sora_watcher.inputs import parse_prompts

    ours = Rules(capabilities=SDXL)
    job = b'{"prompt": "a fox", "seed": 42, "steps": 20, "negative_prompt": "blur"}'
    [prompt] = parse_prompts("job.json", job, ours)
    assert (prompt.options.seed, prompt.options.steps) == (42, 20)
    assert prompt.options.negative_prompt == "blur"
    for bad, words in [
        (b'{"prompt": "a", "seed": "x"}', "seed 'x' is not a whole number"),
        (b'{"prompt": "a", "seed": -1}', "seed -1 is not between 0 and 4294967295"),
        (b'{"prompt": "a", "seed": "-1"}', "seed -1 is not between 0 and 4294967295"),
        (b'{"prompt": "a", "seed": "\xc2\xb2"}', "seed '\u00b2' is not a whole number"),
        (b'{"prompt": "a", "steps": 500}', "steps 500 is not between 1 and 150"),
        (b'{"prompt": "a", "negative_prompt": 3}', "negative_prompt 3 is not a text"),
        (
            b'{"prompt": "a", "seed": 4294967295, "variants": 2}',
            "seed 4294967295 with 2 variants: the last image's seed would pass 4294967295; "
            "give a seed of at most 4294967294",
        ),
        (
            b'{"prompt": "a", "seed": 4294967295, "variants": 4}',
            "give a seed of at most 4294967292",
        ),
    ]:
        with pytest.raises(InputError, match=re.escape(words)):
            parse_prompts("job.json", bad, ours)
    [edge] = parse_prompts("job.json", b'{"prompt": "a", "seed": 4294967292, "variants": 4}', ours)
    assert edge.options.seed == 4294967292  # its last image gets the largest seed
    with pytest.raises(InputError, match=r"seed: this backend does not take it \(SORA_BACKEND\)"):
        parse_prompts("job.json", job, Rules(capabilities=instant.CAPABILITIES))
    rows = parse_prompts(
        "rows.csv", b"prompt,seed,steps\na fox,7,12\na cat,x,\na owl,\xc2\xb2,\n", ours
    )
    assert (rows[0].options.seed, rows[0].options.steps, rows[0].error) == (7, 12, None)
    assert rows[1].error is not None and "seed 'x'" in rows[1].error  # that row fails alone
    assert rows[2].error is not None and "is not a whole number" in rows[2].error
    [spaced] = parse_prompts("rows.csv", b"prompt,variants,steps\na fox, 2 , 150 \n", ours)
    assert (spaced.options.variants, spaced.options.steps) == (2, 150)
    [over] = parse_prompts("rows.csv", b"prompt,steps\na fox,151\n", ours)
    assert over.error is not None and "steps 151 is not between 1 and 150" in over.error
