from dataclasses import dataclass, field

import pytest

from dlnotes.engine.config import ConfigError, apply_overrides, from_dict, to_dict, valid_keys


@dataclass
class Inner:
    hidden: int = 8
    act: str = "relu"


@dataclass
class Outer:
    lr: float = 0.1
    steps: int = 10
    use_bias: bool = True
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)
    name: str | None = None


def test_overrides_nested_and_typed():
    cfg = apply_overrides(Outer(), ["lr=0.5", "steps=20", "use_bias=false", "inner.hidden=32", "sizes=3,4,5",
                                    "name=abc"])
    assert cfg.lr == 0.5 and cfg.steps == 20 and cfg.use_bias is False
    assert cfg.inner.hidden == 32 and cfg.sizes == (3, 4, 5) and cfg.name == "abc"
    assert apply_overrides(Outer(), ["name=none"]).name is None


@pytest.mark.parametrize("bad", ["nope=1", "inner.nope=2", "inner=3", "steps=1.5", "lr=fast", "use_bias=maybe",
                                 "noequals"])
def test_bad_override_lists_valid_keys(bad):
    with pytest.raises(ConfigError) as e:
        apply_overrides(Outer(), [bad])
    msg = str(e.value)
    assert "valid keys" in msg and "inner.hidden" in msg and "lr (float)" in msg


def test_round_trip():
    cfg = apply_overrides(Outer(), ["inner.act=tanh", "sizes=7"])
    assert from_dict(Outer, to_dict(cfg)) == cfg
    assert set(valid_keys(cfg)) == {"lr", "steps", "use_bias", "sizes", "inner.hidden", "inner.act", "name"}
