"""The --schedulers grammar, aliases and `all`/`all+` expansion: pure, no torch."""

import re

import pytest

from schedcmp.core.errors import UsageError
from schedcmp.core.names import ALIASES, Entry, choose, override_tag, parse_entries, parse_value, resolve_entry

# What the constructors of a few real classes accept (enough for the pure tests).
PARAMS = {
    "PNDMScheduler": {"num_train_timesteps", "skip_prk_steps", "steps_offset"},
    "DDIMScheduler": {"num_train_timesteps", "eta", "timestep_spacing"},
    "EulerDiscreteScheduler": {"num_train_timesteps", "use_karras_sigmas", "timestep_spacing"},
    "EulerAncestralDiscreteScheduler": {"num_train_timesteps", "timestep_spacing"},
    "DPMSolverMultistepScheduler": {
        "algorithm_type",
        "use_karras_sigmas",
        "solver_order",
        "use_flow_sigmas",
        "prediction_type",
        "flow_shift",
    },
    "DPMSolverSDEScheduler": {"use_karras_sigmas", "noise_sampler_seed"},
    "UniPCMultistepScheduler": {"use_karras_sigmas", "use_flow_sigmas", "prediction_type", "flow_shift"},
    "LMSDiscreteScheduler": {"use_karras_sigmas"},
    "FlowMatchEulerDiscreteScheduler": {"shift"},
    "FlowMatchHeunDiscreteScheduler": {"shift"},
}


def test_entries_split_on_top_level_commas_only():
    entries = parse_entries("euler, DPM++ 2M Karras(solver_order=3,algorithm_type=dpmsolver++):20 ,ddim:50")
    assert entries == [
        Entry("euler"),
        Entry("DPM++ 2M Karras", {"solver_order": 3, "algorithm_type": "dpmsolver++"}, 20),
        Entry("ddim", {}, 50),
    ]


@pytest.mark.parametrize(
    "text, value",
    [
        ("true", True),
        ("False", False),
        ("none", None),
        ("3", 3),
        ("-2", -2),
        ("0.5", 0.5),
        ("1e-3", 0.001),
        ("trailing", "trailing"),
        ("sde-dpmsolver++", "sde-dpmsolver++"),
    ],
)
def test_values(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("euler,,ddim", "empty entry"),
        ("euler,", "empty entry"),
        ("euler(use_karras_sigmas=true", "'(' without ')'"),
        ("euler)", "')' without '('"),
        ("euler((a=1))", "nested"),
        ("euler(use_karras_sigmas)", "expected key=value"),
        ("euler(=1)", "expected key=value"),
        ("euler:0", "at least 1"),
        ("euler:abc", "whole number"),
        ("euler:-3", "whole number"),
        ("euler:20:30", "malformed scheduler entry"),
    ],
)
def test_malformed_entries_are_one_line_errors(text, message):
    with pytest.raises(UsageError, match=re.escape(message)) as caught:
        parse_entries(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "name, class_name",
    [
        ("euler", "EulerDiscreteScheduler"),
        ("EulerDiscrete", "EulerDiscreteScheduler"),
        ("EulerDiscreteScheduler", "EulerDiscreteScheduler"),
        ("eulerdiscretescheduler", "EulerDiscreteScheduler"),
        ("euler a", "EulerAncestralDiscreteScheduler"),
        ("EULER   A", "EulerAncestralDiscreteScheduler"),
        ("ddim", "DDIMScheduler"),
        ("pndm", "PNDMScheduler"),
        ("dpm++ 2m", "DPMSolverMultistepScheduler"),
        ("unipc", "UniPCMultistepScheduler"),
    ],
)
def test_names_are_case_insensitive_with_or_without_suffix(name, class_name):
    assert resolve_entry(Entry(name), PARAMS).class_name == class_name


def test_ui_name_brings_its_overrides_and_user_overrides_win():
    choice = resolve_entry(Entry("DPM++ 2M SDE Karras", {"algorithm_type": "sde-dpmsolver"}), PARAMS)
    assert choice.class_name == "DPMSolverMultistepScheduler"
    assert choice.overrides == {"algorithm_type": "sde-dpmsolver", "use_karras_sigmas": True}
    assert choice.alias is None  # no longer what the UI calls DPM++ 2M SDE Karras: labelled by its overrides


def test_an_alias_with_extra_overrides_loses_its_ui_name_unless_another_fits():
    assert resolve_entry(Entry("LMS", {"use_karras_sigmas": True}), PARAMS).alias == "LMS Karras"
    assert resolve_entry(Entry("DPM++ 2M", {"algorithm_type": "dpmsolver"}), PARAMS).alias is None


def test_dpm_pp_sde_is_the_stochastic_sampler():
    assert ALIASES["DPM++ SDE"][0] == "DPMSolverSDEScheduler"
    assert resolve_entry(Entry("dpm++ sde karras"), PARAMS).overrides == {"use_karras_sigmas": True}


def test_unknown_name_suggests_close_names():
    with pytest.raises(UsageError, match=r"unknown scheduler 'eulr'; did you mean .*Euler"):
        resolve_entry(Entry("eulr"), PARAMS)


def test_unknown_override_key_suggests_close_keys():
    with pytest.raises(
        UsageError,
        match=r"unknown override 'use_karas_sigmas' for EulerDiscreteScheduler; did you mean use_karras_sigmas",
    ):
        resolve_entry(Entry("euler", {"use_karas_sigmas": True}), PARAMS)


def test_all_is_compatibles_deduplicated_in_documented_order():
    compatible = [
        "DPMSolverMultistepScheduler",
        "EulerDiscreteScheduler",
        "PNDMScheduler",
        "EulerDiscreteScheduler",
        "DDIMScheduler",
    ]
    names = [c.class_name for c in choose("all", compatible, PARAMS, None)]
    assert names == ["PNDMScheduler", "DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler"]


def test_all_plus_adds_karras_where_the_class_takes_it():
    compatible = ["PNDMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler"]
    choices = choose("all+", compatible, PARAMS, None)
    karras = [(c.class_name, c.alias) for c in choices if c.overrides == {"use_karras_sigmas": True}]
    assert karras == [("EulerDiscreteScheduler", None), ("DPMSolverMultistepScheduler", "DPM++ 2M Karras")]
    assert len(choices) == 5


def test_all_plus_on_a_flow_model_adds_flow_solvers():
    choices = choose("all+", ["FlowMatchEulerDiscreteScheduler"], PARAMS, 3.0)
    found = [(c.class_name, c.overrides.get("use_flow_sigmas"), c.overrides.get("flow_shift")) for c in choices]
    # Since `all` on a flow model runs every sampler with a flow form (issue 19), these four are among more, in
    # this order, all runnable without --allow-incompatible.
    wanted = [
        ("FlowMatchEulerDiscreteScheduler", None, None),
        ("FlowMatchHeunDiscreteScheduler", None, None),
        ("DPMSolverMultistepScheduler", True, 3.0),
        ("UniPCMultistepScheduler", True, 3.0),
    ]
    assert [entry for entry in dict.fromkeys(found) if entry in wanted] == wanted
    assert all(c.known_to_work or c.class_name == "FlowMatchEulerDiscreteScheduler" for c in choices)
    with_sampler = choose(
        "all+", ["FlowMatchEulerDiscreteScheduler"], {**PARAMS, "FlowSamplerScheduler": {"method"}}, 3.0
    )
    assert {c.overrides.get("method") for c in with_sampler if c.class_name == "FlowSamplerScheduler"} >= {
        "heun",
        "lms",
    }


def test_all_with_pinned_steps_and_a_list_mix():
    choices = choose("all:7,euler(use_karras_sigmas=true):3", ["PNDMScheduler", "DDIMScheduler"], PARAMS, None)
    assert [(c.class_name, c.steps) for c in choices] == [
        ("PNDMScheduler", 7),
        ("DDIMScheduler", 7),
        ("EulerDiscreteScheduler", 3),
    ]


def test_override_tags_are_short_and_skip_the_seed():
    assert override_tag({"use_karras_sigmas": True}) == "karras"
    assert (
        override_tag({"algorithm_type": "sde-dpmsolver++", "noise_sampler_seed": 8}) == "algorithm_type-sde-dpmsolver++"
    )


def test_real_diffusers_classes_resolve_every_alias():
    from schedcmp.model.schedulers import accepted_params_of, scheduler_classes

    params = accepted_params_of(scheduler_classes())
    for alias, (class_name, overrides) in ALIASES.items():
        choice = resolve_entry(Entry(alias), params)
        assert choice.class_name == class_name
        assert set(overrides) <= params[class_name]
