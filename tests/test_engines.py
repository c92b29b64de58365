"""Every engine module fulfils the written contract (srnn.engine.contract.Engine): each name, each
function with the contract's parameters, the steps with what the training loop calls; and each
engine's features are declared."""
import importlib
import inspect

import pytest

from srnn.engine import ENGINES
from srnn.engine.contract import FEATURES, Engine

STEPS_API = ("train_step", "eval_step", "zero_states", "states_to_numpy", "states_from_numpy", "iterations", "sync",
             "evaluator", "agree", "together")


def contract():
    """{name: the contract's function (or None for an attribute)}."""
    members = {name: None for name in Engine.__annotations__}
    members.update({name: f for name, f in vars(Engine).items() if inspect.isfunction(f) and not name.startswith("_")})
    return members


@pytest.mark.parametrize("name", ENGINES)
def test_each_engine_fulfils_the_contract(name):
    module = importlib.import_module(f"srnn.engine.{name}")
    assert module.NAME == name and name in FEATURES
    for member, spec in contract().items():
        assert hasattr(module, member), f"srnn.engine.{name} has no {member}"
        if spec is None:
            continue
        wanted = [p for p in inspect.signature(spec).parameters if p != "self"]
        have = list(inspect.signature(getattr(module, member)).parameters)
        assert have == wanted, (name, member, have, wanted)
    for attribute in STEPS_API:
        assert hasattr(module.Steps, attribute), f"srnn.engine.{name}.Steps has no {attribute}"


def test_the_contract_is_the_whole_of_what_the_package_asks_of_an_engine():
    """Every `E.name` the package uses is in the contract: nothing is asked of an engine by a name it
    does not promise."""
    import os
    import re

    import srnn

    package = os.path.dirname(srnn.__file__)
    used = set()
    for folder, _, files in os.walk(package):
        if os.path.basename(folder) == "engine":
            continue
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(folder, f), encoding="utf-8").read()
                if re.search(r"^E = engine\.module\(\)", text, re.M):
                    used |= set(re.findall(r"\bE\.([A-Za-z_]\w*)", text))
    assert used and used <= set(contract()), used - set(contract())
