"""Config validation, error messages, grid expansion, spec ids, and the example configs."""

from __future__ import annotations

import itertools
from importlib import resources
from pathlib import Path

import pytest

from forgetting.exceptions import ConfigError, UnknownNameError
from forgetting.experiments import (
    SWEEP_FIELDS,
    ExperimentSpec,
    expand_grid,
    load_config,
    parse_config,
    quickstart_config,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cfg.toml")
    return str(info.value)


# -- errors -------------------------------------------------------------------------------------------------


def test_unknown_key_names_path_and_allowed_keys():
    msg = error_of('[train]\noptimzer = "adam"\n')
    assert "cfg.toml" in msg
    assert "`train.optimzer`" in msg
    for allowed in ("optimizer", "lr", "batch_size", "target_accuracy", "max_epochs"):
        assert allowed in msg


def test_unknown_top_level_key_lists_top_level_keys():
    msg = error_of('strategies = ["random"]\n')
    assert "`strategies`" in msg and "top level" in msg
    for allowed in ("strategy", "seeds", "dataset", "eval_sets", "al", "track"):
        assert allowed in msg


def test_bad_value_names_key_value_and_allowed_values():
    msg = error_of('[train]\noptimizer = "adamw"\n')
    assert "`train.optimizer` = 'adamw'" in msg
    assert "'adam'" in msg and "'sgd'" in msg


def test_bad_scalar_of_a_sweep_field_keeps_the_scalar_path():
    msg = error_of("[al]\nquery_size = 0\n")
    assert "`al.query_size` = 0" in msg and "greater than or equal to 1" in msg
    msg = error_of("[train]\nlr = [0.1, -1.0]\n")
    assert "`train.lr[1]` = -1.0" in msg
    msg = error_of('[track]\nunit = ["epoch", "batch"]\n')
    assert "`track.unit[1]` = 'batch'" in msg and "'epoch'" in msg and "'step'" in msg


def test_wrong_types_and_ranges_are_rejected():
    assert "`train.lr` = 'fast'" in error_of('[train]\nlr = "fast"\n')
    assert "`train.augment` = 1" in error_of("[train]\naugment = 1\n")  # strict: no int -> bool
    assert "track.subsample" in error_of("[track]\nsubsample = 1.5\n")
    assert "track.subsample" in error_of("[track]\nsubsample = 0\n")
    assert "min_epochs" in error_of("[train]\nmin_epochs = 5\nmax_epochs = 2\n")
    assert "duplicate value" in error_of("seeds = [0, 0]\n")
    assert "directory name" in error_of('name = "a/b"\n')
    assert "seeds[0]" in error_of("seeds = [-1]\n")


def test_toml_syntax_error_and_missing_file(tmp_path):
    assert "not valid TOML" in error_of("[train\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_unknown_strategy_lists_registry_names():
    with pytest.raises(UnknownNameError) as info:
        parse_config('strategy = ["random", "swtich"]\n', source="cfg.toml")
    msg = str(info.value)
    assert "`strategy`" in msg and "'swtich'" in msg
    for known in ("random", "entropy", "switch", "gauss", "badge"):
        assert known in msg


def test_unknown_dataset_model_and_eval_set():
    with pytest.raises(UnknownNameError, match=r"known dataset names: .*mnist-5k"):
        parse_config('dataset = "mnist-50k"\n')
    with pytest.raises(UnknownNameError, match=r"known model names: .*small-cnn"):
        parse_config('model = "small_cnnn"\n')
    with pytest.raises(UnknownNameError, match="gaussian_noise") as info:
        parse_config('eval_sets = ["test", "gaussian-noise-3"]\n')
    assert "`eval_sets` holds 'gaussian-noise-3'" in str(info.value) and "digits" in str(info.value)
    with pytest.raises(ConfigError, match=r"`eval_sets` holds 'gaussian_noise-6'.*1\.\.5"):
        parse_config('eval_sets = ["gaussian_noise-6"]\n')


def test_bad_model_and_strategy_options():
    with pytest.raises(ConfigError) as info:
        parse_config("[model_options.small-cnn]\nwidht = 8\n")
    msg = str(info.value)
    assert "model_options" in msg and "'widht'" in msg and "width" in msg
    with pytest.raises(UnknownNameError, match=r"model_options\.resnet-19"):
        parse_config('model = "resnet18"\n[model_options.resnet-19]\nwidth = 8\n')
    with pytest.raises(ConfigError, match="strategy_options"):
        parse_config('strategy = "gauss"\n[strategy_options.gauss]\nno_such_option = 3\n')


# -- grid ---------------------------------------------------------------------------------------------------

GRID = """
name = "grid"
seeds = [0, 1, 2]
dataset = "mnist-5k"
model = ["small-cnn", "mlp"]
strategy = ["random", "switch"]
eval_sets = ["test", "digits"]
device = "cpu"
[al]
query_size = [10, 20]
rounds = 2
[train]
lr = 0.01
[track]
every = [1, 2]
subsample = "all"
[model_options]
dropout = 0.1
[model_options.small-cnn]
width = 8
"""


def test_grid_size_order_and_resolution():
    cfg = parse_config(GRID)
    specs = expand_grid(cfg)
    sizes = cfg.sweep_sizes()
    assert set(sizes) == set(SWEEP_FIELDS)
    assert len(specs) == 3 * 2 * 2 * 2 * 2 == sizes["seeds"] * sizes["model"] * sizes["strategy"] * 4
    combos = {(s.model, s.strategy, s.seed, s.al.query_size, s.track.every) for s in specs}
    assert combos == set(
        itertools.product(["small-cnn", "mlp"], ["random", "switch"], [0, 1, 2], [10, 20], [1, 2])
    )
    assert all(s.train.lr == 0.01 and s.al.rounds == 2 and s.eval_sets == ("test", "digits") for s in specs)
    cnn = next(s for s in specs if s.model == "small-cnn")
    mlp = next(s for s in specs if s.model == "mlp")
    assert cnn.model_options == {"dropout": 0.1, "width": 8}  # common options + the per-model table
    assert mlp.model_options == {"dropout": 0.1}
    assert {s.variant for s in specs} == {
        f"al.query_size={q},track.every={e}" for q in (10, 20) for e in (1, 2)
    }
    # Strategies vary fastest, then seeds: an interrupted run has every strategy of the first seed.
    assert [(s.seed, s.strategy) for s in specs[:4]] == [
        (0, "random"),
        (0, "switch"),
        (1, "random"),
        (1, "switch"),
    ]


def test_ids_stable_distinct_and_independent_of_run_settings():
    a = expand_grid(parse_config(GRID))
    b = expand_grid(
        parse_config(GRID.replace('name = "grid"', 'name = "renamed"').replace('"cpu"', '"cuda"'))
    )
    ids = [s.id for s in a]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 12 and int(i, 16) >= 0 for i in ids)
    assert ids == [s.id for s in b]  # name and device are run settings, not part of the identity
    c = expand_grid(parse_config(GRID.replace("lr = 0.01", "lr = 0.02")))
    assert not set(ids) & {s.id for s in c}
    # Pinned: a change of this id silently orphans every stored run, so it must be deliberate.
    default = ExperimentSpec(name="x", dataset="mnist-5k", model="small-cnn", strategy="random", seed=0)
    assert default.id == PINNED_DEFAULT_ID, default.canonical_json()


# The default tracking is the papers' (whole pool after every epoch); changing a default changes this id.
PINNED_DEFAULT_ID = "eba372aae9ce"


def test_reference_protocol_keys_reach_the_loop_and_leave_default_ids_alone():
    default = ExperimentSpec(name="x", dataset="mnist-5k", model="small-cnn", strategy="random", seed=0)
    assert default.id == PINNED_DEFAULT_ID
    assert "initial_seed" not in default.canonical_json()
    assert "first_observation" not in default.canonical_json()
    text = (
        'strategy = "switch"\nseeds = [0, 1]\n[al]\ninitial_seed = 3\ninitial_selection = "uniform"\n'
        '[train]\nmax_epochs = "none"\n[track]\nfirst_observation = "reference"\n'
    )
    specs = expand_grid(parse_config(text))
    loop = specs[0].loop_config()
    assert loop.initial_seed == 3 and loop.initial_selection == "uniform"
    assert loop.train.max_epochs is None and loop.track.first_observation == "reference"
    assert {s.loop_config().initial_seed for s in specs} == {3}  # one initial set for every seed
    assert len({s.id for s in specs}) == 2 and PINNED_DEFAULT_ID not in {s.id for s in specs}
    back = ExperimentSpec.from_json(specs[0].to_json())
    assert back == specs[0] and back.id == specs[0].id
    # each key on its own changes the id; explicit defaults do not
    for extra in (
        "[al]\ninitial_seed = 0\n",
        '[train]\nmax_epochs = "none"\n',
        '[track]\nfirst_observation = "reference"\n',
    ):
        assert expand_grid(parse_config(extra))[0].id != PINNED_DEFAULT_ID
    explicit = '[train]\nmax_epochs = 100\n[track]\nfirst_observation = "exact"\n'
    assert expand_grid(parse_config(explicit))[0].id == PINNED_DEFAULT_ID
    assert "first_observation" in error_of('[track]\nfirst_observation = "paper"\n')
    assert "max_epochs" in error_of('[train]\nmax_epochs = "never"\n')
    assert "initial_seed" in error_of("[al]\ninitial_seed = -1\n")


def test_spec_json_round_trip_and_loop_config():
    spec = expand_grid(parse_config(GRID))[5]
    back = ExperimentSpec.from_json(spec.to_json())
    assert back == spec and back.id == spec.id
    loop = spec.loop_config()
    assert loop.model == spec.model and loop.strategy == spec.strategy and loop.seed == spec.seed
    assert loop.query_size == spec.al.query_size and loop.rounds == 2 and loop.train.lr == 0.01
    assert loop.track.every == spec.track.every and loop.track.subsample is None  # "all" -> None
    assert loop.model_options == spec.model_options and loop.device == "cpu"


def test_per_dataset_eval_sets_and_subsample_sweep():
    cfg = parse_config(
        'dataset = ["mnist-5k", "digits"]\n[eval_sets]\n"mnist-5k" = ["test", "digits", "contrast-2"]\n'
        '[track]\nsubsample = ["all", 0.5, 300]\n'
    )
    specs = expand_grid(cfg)
    assert len(specs) == 2 * 3
    assert {s.eval_sets for s in specs if s.dataset == "mnist-5k"} == {("test", "digits", "contrast-2")}
    assert {s.eval_sets for s in specs if s.dataset == "digits"} == {("test",)}
    assert sorted({repr(s.track.subsample) for s in specs}) == ["'all'", "0.5", "300"]
    assert [s.loop_config().track.subsample for s in specs[:3]] == [None, 0.5, 300]


# -- examples and the built-in quickstart -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    sorted(p for p in EXAMPLES.glob("*.toml") if not p.name.startswith(("maps-", "profile-"))),
    ids=lambda p: p.name,
)
def test_every_example_loads_and_expands(path):
    cfg = load_config(path)
    specs = expand_grid(cfg)
    assert len(specs) >= 1
    assert len({s.id for s in specs}) == len(specs)
    if path.name != "quickstart.toml":
        assert len(cfg.seeds) >= 3
        assert {"switch", "gauss"} <= set(cfg.strategy)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("maps-*.toml")), ids=lambda p: p.name)
def test_every_maps_example_loads(path):
    from forgetting.segmentation import load_maps_config

    cfg = load_maps_config(path)
    assert cfg.model in ("unet", "deconvnet")


def test_examples_exist():
    names = {p.name for p in EXAMPLES.glob("*.toml")}
    assert {"quickstart.toml", "fashion-mnist-ood.toml", "mnist5k-digits.toml", "cifar10-ood.toml"} <= names


def test_ood_examples_cover_three_architectures_and_every_strategy():
    from forgetting.strategies import list_strategies

    for name in ("fashion-mnist-ood.toml", "mnist5k-digits.toml"):
        cfg = load_config(EXAMPLES / name)
        assert set(cfg.model) == {"small-cnn", "resnet18", "vgg11"}
        assert set(cfg.strategy) == set(list_strategies())
        specs = expand_grid(cfg)
        assert {s.model_options.get("width") for s in specs if s.model != "small-cnn"} == {16}


def test_quickstart_example_is_the_builtin():
    builtin = resources.files("forgetting.experiments").joinpath("quickstart.toml").read_text()
    assert (EXAMPLES / "quickstart.toml").read_text() == builtin
    cfg = quickstart_config()
    assert cfg.dataset == ["mnist-5k"] and cfg.model == ["small-cnn"] and len(cfg.seeds) == 3
    assert set(cfg.strategy) == {"random", "entropy", "margin", "badge", "switch", "gauss"}
    assert "test" in cfg.eval_sets and "digits" in cfg.eval_sets
    assert len(expand_grid(cfg)) == 18


@pytest.mark.parametrize("name", ["seismic-al.toml", "f3-al.toml"])
def test_segmentation_examples_use_strategies_with_a_segmentation_form(name):
    from forgetting.segmentation.active import segmentation_strategies

    cfg = load_config(EXAMPLES / name)
    assert set(cfg.strategy) <= set(segmentation_strategies())
    specs = expand_grid(cfg)
    assert all(s.segmentation is not None and s.train.epochs is None for s in specs)
    ood_volume = "split:shifted" if name.startswith("seismic") else "split:test2"
    assert {"test", ood_volume} <= set(specs[0].eval_sets)
