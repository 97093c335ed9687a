"""The shape of the code, checked: imports run one way (no cycle, imports inside functions included), every
function body fits a screen, and every setting is declared once with each surface derived from it."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "schedcmp"
LONGEST_BODY = 60  # lines from a function's first statement after its docstring to its end


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the schedcmp modules it imports anywhere in its text: at the top, inside functions, or under
    TYPE_CHECKING (an import that runs only sometimes still ties the two modules together)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = absolute(node, name, path)
                if not base.startswith("schedcmp"):
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    found.add(submodule if submodule in modules else base)
        graph[name] = (found & set(modules)) - {name}
    return graph


def absolute(node: ast.ImportFrom, name: str, path: Path) -> str:
    """The module an `import from` names, relative ones (`from .solvers import ...`) resolved."""
    if node.level == 0:
        return node.module or ""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def layers(graph: dict[str, set[str]]) -> list[list[str]]:
    """Modules by layer: each imports only from layers below it. Raises if a cycle leaves modules unplaced."""
    placed: dict[str, int] = {}
    while len(placed) < len(graph):
        ready = [m for m in graph if m not in placed and graph[m] <= set(placed)]
        if not ready:
            left = sorted(m for m in graph if m not in placed)
            cycle = [f"{m} -> {sorted(graph[m] - set(placed))}" for m in left]
            raise AssertionError("import cycle among: " + "; ".join(cycle))
        for module in ready:
            placed[module] = 1 + max((placed[d] for d in graph[module]), default=-1)
    by_layer: dict[int, list[str]] = {}
    for module, layer in placed.items():
        by_layer.setdefault(layer, []).append(module)
    return [sorted(by_layer[layer]) for layer in sorted(by_layer)]


def test_no_module_imports_back_up(capsys):
    """No import cycle, counting imports inside functions; the layers it gives are CONTRIBUTING.md's map."""
    found = layers(import_graph())
    with capsys.disabled():
        print("\n  import layers, bottom first:")
        for number, modules in enumerate(found):
            print(f"  {number}: {', '.join(m.removeprefix('schedcmp.') for m in modules)}")
    assert found


def test_the_flax_driver_is_reached_through_the_entry_point_only():
    """schedcmp.flax.comparison, `--backend flax`'s driver, sits beside the engine: scale.launch calls it, and
    nothing below imports it (tests/test_backend.py checks that importing it needs no jax)."""
    graph = import_graph()
    assert {module for module, imported in graph.items() if "schedcmp.flax.comparison" in imported} == {
        "schedcmp.scale.launch"
    }


def test_a_cycle_is_found():
    """The check itself can fail: two modules that import each other are reported."""
    with pytest.raises(AssertionError, match="import cycle"):
        layers({"a": {"b"}, "b": {"a"}, "c": set()})


def function_bodies() -> list[tuple[int, str]]:
    bodies = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring
            if body:
                length = body[-1].end_lineno - body[0].lineno + 1
                bodies.append((length, f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"))
    return sorted(bodies, reverse=True)


def test_every_function_body_fits_a_screen():
    too_long = [f"{where} ({length} lines)" for length, where in function_bodies() if length > LONGEST_BODY]
    assert not too_long, f"bodies over {LONGEST_BODY} lines: {too_long}"


# -- one declaration, every surface derived from it ------------------------------------------------------------


def click_parameters(*path: str) -> set[str]:
    import typer

    from schedcmp.cli import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {parameter.name for parameter in command.params}


OWN = {  # what a command takes besides the declared settings
    ("run",): set(),
    ("baseline", "create"): {"folder"},
    ("merge",): {"out", "parts", "allow_missing"},
    ("list",): {"output_format"},
}


@pytest.mark.parametrize(
    "path, command",
    [(("run",), "run"), (("baseline", "create"), "baseline"), (("merge",), "merge"), (("list",), "list")],
)
def test_each_commands_options_are_the_declared_settings(path, command):
    from schedcmp.core import request

    declared = {field.name for field in request.for_command(command)}
    assert click_parameters(*path) == declared | OWN[path]


def test_config_keys_stored_keys_and_compare_arguments_come_from_the_declaration():
    import schedcmp
    from schedcmp.core import request

    settings = request.declared()
    on_command_line = [f for f in settings if request.setting_of(f).commands - {request.API}]
    assert set(request.config_keys()) == {f.name for f in on_command_line if request.setting_of(f).config}
    assert "config" not in request.config_keys() and "resume" not in request.config_keys()
    parameters = list(inspect.signature(schedcmp.compare).parameters)
    assert parameters == ["pipe", "prompt", *request.api_names()]
    api = {f.name for f in request.for_command(request.API)}
    assert set(parameters) == (api - {"model"}) | {"pipe"}  # the model is compare()'s `pipe`
    cli_only = {f.name for f in settings if request.API not in request.setting_of(f).commands}
    assert cli_only == {"prompts_file", "config", "events", "resume", "format", "strict"}
    for field in settings:  # every setting says what it is
        assert request.setting_of(field).help, field.name


def test_stored_settings_come_back_as_they_were():
    """What results.json stores is what --resume merges back: every stored setting, at a value not its default."""
    from schedcmp.core import request
    from schedcmp.core.records import Shard

    asked = request.Request(
        prompt=("a", "b"),
        schedulers="ddim,euler:3",
        model="some/model",
        model_config="some/config",
        seed=(1, 5),
        steps=(2, 4),
        guidance_scale=(5.0,),
        width=32,
        height=48,
        negative_prompt="blur",
        call_arg={"eta": 0.5},
        generator_device="device",
        backend="torch,flax",
        repeat=2,
        threads=2,
        seed_mode="index",
        batch_size=3,
        allow_incompatible=True,
        allow_unknown_call_args=True,
        reference=True,
        reference_spec="DDIM:40",
        target_rmse=0.1,
        max_steps=12,
        shard=Shard(1, 2),
    )
    kept = request.stored(asked)
    back = request.merge(request.stored_values(kept, {"shard": asked.shard}))
    for field in request.declared():
        if request.setting_of(field).stored or field.name == "shard":
            assert getattr(back, field.name) == getattr(asked, field.name), field.name
    assert not request.difference(back, asked)
    assert request.difference(back, dataclasses.replace(asked, steps=(3,))) == ["steps (2, 4) there, (3,) here"]


def test_files_written_before_every_setting_was_stored_resume_too():
    """An older results.json: the target as a metric and a value, the model and reference in the header."""
    from schedcmp.core import request

    settings = {"prompts": ["x"], "seeds": [8], "target_metric": "psnr", "target_value": 30.0, "max_steps": 16}
    header = {"model": "m", "reference_spec": "DDIM:40"}
    back = request.merge(request.stored_values(settings, header))
    assert (back.target_psnr, back.target_rmse, back.max_steps, back.model) == (30.0, None, 16, "m")
    untargeted = request.merge(request.stored_values({"prompts": ["x"], "target_metric": None, "max_steps": 100}, {}))
    assert untargeted.max_steps is None  # such files stored the default even without a target


def test_compares_old_argument_names_still_work_for_a_release():
    from schedcmp.core import request

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values, called = request.api_values({"html_report": True, "call_args": {"eta": 0.1}})
    assert values == {"html": True, "call_arg": {"eta": 0.1}} and called == {
        "call_arg": "call_args",
        "html": "html_report",
    }
    assert [w.category for w in caught] == [DeprecationWarning, DeprecationWarning]
    with pytest.raises(request.UsageError, match="takes no argument 'sed'; did you mean seed"):
        request.api_values({"sed": 3})
