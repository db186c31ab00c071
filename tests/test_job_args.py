"""/imagine and /compose arguments: what is accepted, and what each mistake is told."""

from __future__ import annotations

import pytest

from bot.errors import UserInputError
from bot.job_args import compose_params, imagine_params


def test_imagine_defaults_and_options() -> None:
    params = imagine_params('a red fox --seed 7 --size 640x384 --n 2 --negative "blurry, text"')
    assert params == {"prompt": "a red fox", "seed": 7, "width": 640, "height": 384, "n": 2, "negative": "blurry, text"}
    assert imagine_params("--size=64x64 tiny cat")["width"] == 64
    assert imagine_params("a fox --seed 1 --steps 4 --guidance 0") | {"prompt": ""} == {
        "prompt": "", "seed": 1, "width": 512, "height": 512, "n": 1, "negative": "", "steps": 4, "guidance": 0.0}


def test_omitting_the_seed_rolls_a_new_one_each_time() -> None:
    seeds = {imagine_params("a cat")["seed"] for _ in range(20)}
    assert len(seeds) > 15


def test_compose_defaults_and_options() -> None:
    assert compose_params("calm piano") | {"seed": 0} == {"prompt": "calm piano", "seed": 0, "duration_s": 10.0, "tempo": None}
    assert compose_params("jazz --duration 2.5 --tempo 90 --seed 3") == {"prompt": "jazz", "seed": 3, "duration_s": 2.5, "tempo": 90}
    assert compose_params("jazz --guidance 4.5")["guidance"] == 4.5


@pytest.mark.parametrize(
    ("args", "explanation"),
    [
        ("", "Describe the picture after /imagine"),
        ("--seed 4", "Describe the picture after /imagine"),
        ("cat --size 5000x5000", "--size sides must be 64 to 1024 and multiples of 8; got 5000x5000."),
        ("cat --size 100x100", "multiples of 8"),
        ("cat --size big", "--size must look like 512x512"),
        ("cat --n 9", "--n must be from 1 to 4; got 9."),
        ("cat --n two", "--n must be a number from 1 to 4"),
        ("cat --seed -1", "--seed must be from 0 to 4294967295"),
        ("cat --foo 1", "Unknown option --foo for /imagine; options: --seed, --size, --n, --negative, --steps, --guidance."),
        ("cat --steps 0", "--steps must be from 1 to 50; got 0."),
        ("cat --guidance lots", "--guidance must be a number from 0 to 20; got 'lots'."),
        ("cat --seed", "--seed needs a value, e.g. --seed 42."),
        ('cat --negative "unclosed', "A double quote is not closed"),
    ],
)
def test_bad_imagine_arguments_are_explained(args: str, explanation: str) -> None:
    with pytest.raises(UserInputError) as caught:
        imagine_params(args)
    assert explanation in caught.value.user_message


@pytest.mark.parametrize(
    ("args", "explanation"),
    [
        ("", "Describe the music after /compose"),
        ("song --duration -1", "--duration must be from 1 to 30; got -1."),
        ("song --duration 31", "--duration must be from 1 to 30"),
        ("song --tempo 500", "--tempo must be from 40 to 240"),
        ("song --size 64x64", "Unknown option --size for /compose; options: --duration, --seed, --tempo, --guidance."),
    ],
)
def test_bad_compose_arguments_are_explained(args: str, explanation: str) -> None:
    with pytest.raises(UserInputError) as caught:
        compose_params(args)
    assert explanation in caught.value.user_message


def test_apostrophes_dashes_and_arrows_are_prompt_text() -> None:
    assert imagine_params("a fox's den at dusk --seed 3")["prompt"] == "a fox's den at dusk"
    assert compose_params("don't stop me now --seed 1")["prompt"] == "don't stop me now"
    assert imagine_params("an arrow --> pointing up --seed 1")["prompt"] == "an arrow --> pointing up"


def test_a_phone_dash_still_starts_an_option() -> None:
    assert compose_params("rainy jazz —duration 5 –seed 8") | {"prompt": ""} == {
        "prompt": "", "seed": 8, "duration_s": 5.0, "tempo": None,
    }
