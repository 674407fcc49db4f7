"""The settings schema (``forgetting.settings``): one model per concept, composed by every config."""

from __future__ import annotations

import pickle

import pytest

from forgetting.exceptions import ConfigError
from forgetting.experiments.config import parse_config
from forgetting.profile.config import ProfileTrain, parse_profile_config
from forgetting.segmentation.augment_protocol import AugmentTrain
from forgetting.segmentation.maps_config import MapsTrain, parse_maps_config
from forgetting.settings import (
    OptimizerSettings,
    SegmentationOptions,
    SegmentationSettings,
    TrackConfig,
    TrackSettings,
    TrainConfig,
    TrainSettings,
)


def test_each_config_keeps_its_own_training_defaults_on_the_shared_fields() -> None:
    """Maps and profile [train] are OptimizerSettings with other defaults, not copies of its fields."""
    assert issubclass(MapsTrain, OptimizerSettings) and issubclass(ProfileTrain, OptimizerSettings)
    base, maps, profile = OptimizerSettings(), MapsTrain(), ProfileTrain()
    assert (base.lr, base.batch_size, base.optimizer, base.schedule) == (1e-3, 64, "adam", "constant")
    assert (maps.lr, maps.batch_size, maps.epochs, maps.class_weights) == (2e-3, 8, 24, "median")
    assert (profile.lr, profile.batch_size, profile.epochs) == (2e-3, 64, 10)
    assert (AugmentTrain().lr, AugmentTrain().batch_size, AugmentTrain().epochs) == (2e-3, 8, 20)
    # a key of the shared schema that a config does not use stays an error there
    with pytest.raises(ConfigError, match=r"unknown key `train\.momentum`"):
        parse_maps_config("[train]\nmomentum = 0.5\n", validate_names=False)
    with pytest.raises(ConfigError, match=r"unknown key `train\.target_accuracy`"):
        parse_profile_config("[train]\ntarget_accuracy = 0.5\n", validate_names=False)


def test_toml_train_settings_convert_to_the_runtime_config() -> None:
    settings = parse_config('[train]\nmax_epochs = "none"\nlr = 0.01\nepochs = 3\n').train
    config = TrainSettings(**{**settings.model_dump(), "lr": 0.01}).to_train_config()
    assert isinstance(config, TrainConfig)
    assert (config.max_epochs, config.lr, config.epochs, config.target_accuracy) == (None, 0.01, 3, 0.92)
    assert TrainSettings().to_train_config() == TrainConfig()
    profile = parse_profile_config("[train]\nepochs = 4\nschedule = 'cosine'\n", validate_names=False)
    assert profile.train.train_config() == TrainConfig(epochs=4, lr=2e-3, schedule="cosine")


def test_runtime_configs_take_keywords_and_name_a_bad_key() -> None:
    config = TrainConfig(epochs=2, lr=1)  # numbers are converted, as the dataclass accepted them
    assert config.lr == 1.0 and isinstance(config.lr, float) and config.epoch_limit == 2
    config.lr = 0.5  # attributes stay assignable
    assert pickle.loads(pickle.dumps(config)) == config  # process backends pickle it
    with pytest.raises(ConfigError, match=r"unknown key `train\.lrate`.*allowed keys in \[train\]: .*\blr\b"):
        TrainConfig(lrate=0.1)
    with pytest.raises(ConfigError, match=r"`segmentation\.reduction` = 'max': allowed values: 'mean'"):
        SegmentationOptions(reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"`track\.every` = 0"):
        TrackConfig(every=0)
    with pytest.raises(ConfigError, match="min_epochs <= max_epochs"):
        TrainConfig(min_epochs=5, max_epochs=2)


def test_segmentation_settings_resolve_the_ignore_index() -> None:
    assert SegmentationSettings().to_options(dataset_ignore_index=255).ignore_index == 255
    assert SegmentationSettings(ignore_index="none").to_options(dataset_ignore_index=255).ignore_index is None
    options = SegmentationSettings(ignore_index=7, reduction="top-q", class_weights=[1.0, 2.0]).to_options()
    assert options == SegmentationOptions(ignore_index=7, reduction="top-q", class_weights=[1.0, 2.0])


def test_track_settings_convert_and_expand_presets() -> None:
    assert TrackSettings().to_track_config() == TrackConfig() == TrackConfig.preset("paper-exact")
    cheap = TrackSettings.model_validate({"preset": "unstable-25"})
    assert cheap.to_track_config() == TrackConfig.preset("unstable-25")
    assert cheap.to_track_config().subsample == 0.25


def test_an_unknown_key_of_an_optional_section_lists_the_allowed_keys() -> None:
    with pytest.raises(ConfigError, match=r"allowed keys in \[segmentation\]: class_weights, ignore_index"):
        parse_config("[segmentation]\nbogus = 1\n", validate_names=False)
