"""The docs say what the code does.

Every `schedcmp ...` command shown in the Markdown pages (fenced shell and YAML blocks, and inline code spans
that start with `schedcmp `) is parsed by the real click command, flags, arity and types, and its values are
read by the declared readers (schedcmp.core.request); nothing runs. Every relative link points at a file (and
heading) that exists; compare()'s argument table is the declared one; CONTRIBUTING.md's module map names every
module in an order that imports only upward from the bottom; the README stays a front door of at most 12 KB.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")]
)
README_LIMIT = 12 * 1024  # bytes: the front door, not the manual

# Placeholders in the docs' commands -> the sample value each is parsed with (regular expressions, applied in
# this order to every argument after `schedcmp`). A placeholder missing here reaches the parser as it is
# written, and a reader that cannot take it (`--shard I/N`, `--width W`) fails the test.
SUBSTITUTIONS = [
    (r"<[^<>]+>", "sample"),  # schedcmp-runs/<folder>
    (r"\$\{?SLURM_ARRAY_TASK_ID\}?", "0"),  # a SLURM job array's index
    (r"\$\{?JOB_COMPLETION_INDEX\}?", "0"),  # a Kubernetes Indexed Job's index
    (r"\$\{?SLURM_JOB_ID\}?", "1"),
    (r"^I/N$", "0/2"),  # --shard I/N
    (r"\bDIR_N-1\b", "shard-1"),  # the last of N shard folders
    (r"\bDIR_[0-9I]\b", "shard-0"),  # a shard's folder
    (r"^DIR$", "folder"),
    (r"^OUT$", "merged"),
    (r"^ARGS$", "astronaut"),  # "the flags of the command": a prompt stands in
    (r"^FILE$", "sample"),
    (r"^M$", "some/model"),
    (r"^ENTRY$", "DDIM:50"),
    (r"^DB$", "35"),
    (r"^(\.\.\.|…)$", "sample"),  # an elided value or argument
]

SHELL_BLOCKS = {"", "sh", "bash", "shell", "console"}
YAML_BLOCKS = {"yaml", "yml"}
# Fenced blocks of these languages hold no command line: their text is never parsed.
OTHER_BLOCKS = {
    "python": "Python: compare()'s argument table is checked against the declaration instead",
    "toml": "a preset's content, not a command",
    "json": "a document, not a command",
    "text": "output, or a hypothetical example (CONTRIBUTING.md's --foo), not a command to parse",
}
# Shell segments that mention schedcmp without invoking the CLI: (pattern, why it is not parsed).
NOT_INVOCATIONS = [
    (r"^git commit\b", "a commit message that names schedcmp"),
]
# Commands of a flag that is documented ahead of the code: each must still FAIL to parse (so that the entry is
# removed, and the command checked, once the flag exists): (pattern, why).
AHEAD_OF_THE_CODE: list[tuple[str, str]] = []
WRAPPERS = {"srun", "exec", "nohup", "time", "env"}  # run their arguments as a command
LAUNCHERS = re.compile(r"(python[0-9.]*|torchrun|accelerate)$")  # `LAUNCHER ... -m schedcmp ARGS`
OPERATORS = {"&&", "||", "|", ";", "&"}


@dataclass(frozen=True)
class Command:
    where: str  # page:line
    text: str  # as the page shows it, for messages
    args: tuple[str, ...]  # after `schedcmp`, placeholders substituted

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


# -- reading the pages ----------------------------------------------------------------------------------------------


def blocks(text: str) -> tuple[list[tuple[int, str, str]], str]:
    """-> ([(first line, language, content)] of the fenced blocks, the prose with the blocks blanked out)."""
    found, prose, current = [], [], None
    for number, line in enumerate(text.splitlines(), start=1):
        fence = re.match(r"\s*```+\s*([\w+-]*)", line)
        if current is None and fence:
            current = (number + 1, fence[1].lower(), [])
            prose.append("")
        elif current is not None and re.match(r"\s*```+\s*$", line):
            found.append((current[0], current[1], "\n".join(current[2])))
            current = None
            prose.append("")
        elif current is not None:
            current[2].append(line)
            prose.append("")
        else:
            prose.append(line)
    return found, "\n".join(prose)


def logical_lines(content: str, first: int) -> list[tuple[int, str]]:
    """Shell lines with `\\` continuations joined, each with the number of its first line."""
    lines, pending, start = [], "", first
    for number, line in enumerate(content.splitlines(), start=first):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    if pending:
        lines.append((start, pending))
    return lines


def mentions_cli(token: str) -> bool:
    """A word that names the CLI: `schedcmp`, `.venv/bin/schedcmp`, or a quoted `schedcmp ...` command."""
    return bool(re.search(r"(^|[\s/])schedcmp(\s|$)", token))


def substitute(argument: str) -> str:
    for pattern, value in SUBSTITUTIONS:
        argument = re.sub(pattern, value, argument)
    return argument


def invocation(tokens: list[str]) -> list[str] | None:
    """The arguments after `schedcmp` in one simple command, or None when it does not invoke the CLI."""
    while tokens and (re.match(r"[A-Za-z_][A-Za-z0-9_]*=", tokens[0]) or tokens[0] in WRAPPERS):
        tokens = tokens[1:]  # environment assignments and wrappers (srun torchrun ..., env X=1 schedcmp ...)
    if not tokens:
        return None
    if Path(tokens[0]).name == "schedcmp":
        return tokens[1:]
    for index in range(len(tokens) - 1):
        if tokens[index : index + 2] == ["-m", "schedcmp"] and LAUNCHERS.search(Path(tokens[0]).name):
            return tokens[index + 2 :]
    return None  # an unknown launcher or wrapper is reported as unread


def nested_scripts(tokens: list[str]) -> list[str]:
    """Shell text given as one argument: `sbatch --wrap 'CMD'`, `sh -c 'CMD'`."""
    found = []
    for index, token in enumerate(tokens):
        if token.startswith("--wrap="):
            found.append(token.removeprefix("--wrap="))
        elif (token == "--wrap" or token == "-c" and Path(tokens[0]).name in ("sh", "bash")) and index + 1 < len(
            tokens
        ):
            found.append(tokens[index + 1])
    return found


def shell_commands(text: str, where: str) -> tuple[list[Command], list[str]]:
    """-> (the schedcmp commands in one shell line, what mentions schedcmp but could not be read)."""
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as error:
        return [], [f"{where}: cannot split {text!r} as shell words ({error})"] if mentions_cli(text) else []
    segments, current = [], []
    for token in tokens:
        if token in OPERATORS:
            segments.append(current)
            current = []
        else:
            current.append(token)
    segments.append(current)
    commands, unread = [], []
    for segment in segments:
        if not any(mentions_cli(token) for token in segment):
            continue
        nested = nested_scripts(segment)
        for script in nested:
            found, problems = shell_commands(script, where)
            commands += found
            unread += problems
        if nested:
            continue
        args = invocation(segment)
        if args is not None:
            commands.append(Command(where, " ".join(segment), tuple(substitute(a) for a in args)))
        elif not any(re.search(pattern, " ".join(segment)) for pattern, _ in NOT_INVOCATIONS):
            unread.append(f"{where}: names schedcmp but is no invocation the test can read: {' '.join(segment)}")
    return commands, unread


def yaml_strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for value in node.values() for text in yaml_strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in yaml_strings(value)]
    return []


def page_commands(page: Path, root: Path = ROOT) -> tuple[list[Command], list[str]]:
    """Every schedcmp command a page shows, and what names schedcmp but could not be read."""
    import yaml  # a dependency of transformers and huggingface_hub

    name = page.relative_to(root).as_posix()
    found, prose = blocks(page.read_text(encoding="utf-8"))
    commands, unread = [], []
    for first, language, content in found:
        if language in SHELL_BLOCKS:
            texts = logical_lines(content, first)
        elif language in YAML_BLOCKS:
            try:
                scalars = [text for text in yaml_strings(yaml.safe_load(content)) if " " in text.strip()]  # not names
            except yaml.YAMLError as error:
                unread.append(f"{name}:{first}: a YAML block that does not load ({error})")
                continue
            texts = [(first, line) for text in scalars for line in text.splitlines()]
        elif language in OTHER_BLOCKS:
            continue
        else:
            unread.append(f"{name}:{first}: a ```{language} block: say in test_docs.py whether it holds commands")
            continue
        for number, text in texts:
            more, problems = shell_commands(text, f"{name}:{number}")
            commands += more
            unread += problems
    for span in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose):  # an inline span may wrap onto the next line
        text = " ".join(span[1].split())
        if text.startswith("schedcmp ") and "\n\n" not in span[1]:
            line = prose.count("\n", 0, span.start()) + 1
            more, problems = shell_commands(text, f"{name}:{line}")
            commands += more
            unread += problems
    return commands, unread


def all_commands() -> tuple[list[Command], list[str]]:
    commands, unread = [], []
    for page in PAGES:
        if page.is_file():
            more, problems = page_commands(page)
            commands += more
            unread += problems
    return commands, unread


# -- parsing a command with the real CLI ---------------------------------------------------------------------------


def parse(args: tuple[str, ...]) -> None:
    """Parse `schedcmp ARGS` as the CLI would, down to the subcommand, and read every declared setting it gives;
    raise AssertionError with the parser's message when it is refused. Nothing runs."""
    import typer
    import typer.main

    from schedcmp.cli import app, click_exceptions
    from schedcmp.core import request
    from schedcmp.core.errors import UsageError

    exceptions = click_exceptions()
    command, name, rest, parent = typer.main.get_command(app), "schedcmp", list(args), None
    try:
        while True:
            if not rest:  # `schedcmp run` named in prose: the command exists, nothing more to parse
                return
            context = command.make_context(name, list(rest), parent=parent, resilient_parsing=False)
            if not hasattr(command, "commands"):
                break
            rest = [*context._protected_args, *context.args]  # the subcommand's name and its arguments
            if not rest:
                return
            name, command, rest = command.resolve_command(context, rest)
            parent = context
        declared = {field.name for field in request.declared()}
        request.merge({key: value for key, value in context.params.items() if key in declared})
    except typer.Exit as done:  # --help, --version
        if done.exit_code:
            raise AssertionError(f"exit {done.exit_code}") from None
    except exceptions.ClickException as error:
        raise AssertionError(error.format_message().splitlines()[0]) from None
    except UsageError as error:
        raise AssertionError(str(error)) from None


def ahead_of_the_code(command: Command) -> str | None:
    return next((why for pattern, why in AHEAD_OF_THE_CODE if re.search(pattern, command.text)), None)


COMMANDS, UNREAD = all_commands()


def test_the_pages_show_commands():
    assert len(COMMANDS) > 30, f"only {len(COMMANDS)} commands found: is the extraction broken?"


def test_every_preset_a_command_names_exists():
    """`--config configs/NAME.toml` in a command names a preset that is there."""
    named = {a for c in COMMANDS for a in c.args if re.fullmatch(r"configs/[\w.-]+\.toml", a)}
    assert named and not [name for name in named if not (ROOT / name).is_file()]


def test_every_mention_of_schedcmp_in_a_command_is_read():
    assert not UNREAD, "\n".join(UNREAD)


@pytest.mark.parametrize("command", COMMANDS, ids=[command.where for command in COMMANDS])
def test_documented_command_parses(command: Command):
    why = ahead_of_the_code(command)
    if why is None:
        try:
            parse(command.args)
        except AssertionError as error:
            raise AssertionError(f"{command}\n  refused: {error}") from None
    else:
        with pytest.raises(AssertionError):
            parse(command.args)  # once it parses, remove its AHEAD_OF_THE_CODE entry


WRONG = [  # (id, a page, what the parser says)
    ("unknown-flag", "```\nschedcmp run astronaut --no-such-flag\n```", "No such option"),
    ("missing-value", "```\nschedcmp run astronaut --seed\n```", "requires an argument"),
    ("wrong-type", "```\nschedcmp run astronaut \\\n  --width wide\n```", "valid integer"),
    ("missing-argument", "```\nschedcmp merge OUT\n```", "Missing argument"),
    ("unknown-command", "```\nschedcmp frobnicate\n```", "No such command"),
    ("unread-placeholder", "Shards: `schedcmp run x --shard I/X`.", "not INDEX/COUNT"),
    ("unreadable-value", "```\nschedcmp run x --steps 10-50:0\n```", "must be positive"),
    ("unknown-choice", "```\ntorchrun --standalone -m schedcmp run x --device gpu\n```", "unknown --device"),
    ("yaml", "```yaml\nrun: >\n  schedcmp check baselines/ --resultz out\n```", "No such option"),
    ("sbatch-wrap", "```\nsbatch --wrap 'schedcmp merge OUT DIR_0 --htm'\n```", "No such option"),
]


@pytest.mark.parametrize("markdown, refusal", [pytest.param(md, why, id=name) for name, md, why in WRONG])
def test_a_wrong_command_is_caught(tmp_path, markdown, refusal):
    """The check can fail: a page with a wrong command is refused, with the parser's reason."""
    page = tmp_path / "page.md"
    page.write_text(markdown + "\n", encoding="utf-8")
    commands, unread = page_commands(page, tmp_path)
    assert len(commands) == 1 and not unread
    with pytest.raises(AssertionError, match=refusal):
        parse(commands[0].args)


def test_the_forms_are_read(tmp_path):
    """Continuations, quotes, comments, environment prefixes, launchers, wrappers and placeholders."""
    page = tmp_path / "page.md"
    page.write_text(
        "```\n"
        'OMP_NUM_THREADS=1 schedcmp run "a b" \\\n  --seed 8   # a comment: schedcmp run --nope\n'
        "python -m torch.distributed.run --nproc-per-node 2 -m schedcmp run x --shard I/N --out DIR_I\n"
        "srun torchrun --nnodes 2 -m schedcmp merge OUT DIR_0 … DIR_N-1\n"
        'accelerate launch --multi_gpu -m schedcmp run --shard "$SLURM_ARRAY_TASK_ID/8" --out d-$JOB_COMPLETION_INDEX\n'
        'git add x && git commit -m "schedcmp baseline"\n'
        "```\n"
        "Prose: `schedcmp report schedcmp-runs/<folder>` and `schedcmp.compare()`.\n",
        encoding="utf-8",
    )
    commands, unread = page_commands(page, tmp_path)
    assert not unread
    assert [command.args for command in commands] == [
        ("run", "a b", "--seed", "8"),
        ("run", "x", "--shard", "0/2", "--out", "shard-0"),
        ("merge", "merged", "shard-0", "sample", "shard-1"),
        ("run", "--shard", "0/8", "--out", "d-0"),
        ("report", "schedcmp-runs/sample"),
    ]
    for command in commands:
        parse(command.args)


def test_a_mention_the_test_cannot_read_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```\nsudo schedcmp run x\n```\n", encoding="utf-8")
    assert page_commands(page, tmp_path)[1]


# -- the README, links, compare()'s arguments, the module map ---------------------------------------------------


def test_the_readme_is_a_front_door():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; the manual belongs in docs/ (limit {README_LIMIT})"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    _, prose = blocks(page.read_text(encoding="utf-8"))
    return {slug(line.lstrip("#")) for line in prose.splitlines() if re.match(r"#{1,6} ", line)}


def test_every_relative_link_points_at_what_exists():
    broken = []
    for page in PAGES:
        _, prose = blocks(page.read_text(encoding="utf-8"))
        prose = re.sub(r"`[^`]*`", "", prose)
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not linked.exists():
                broken.append(f"{where}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{where}: no heading with that anchor")
    assert not broken, "\n".join(broken)


def test_every_path_named_in_code_exists():
    """`schedcmp/core/records.py`, `tests/analytic.py`, `configs/answer.toml`: files that move leave no stale name."""
    stale = []
    for page in PAGES:
        _, prose = blocks(page.read_text(encoding="utf-8"))
        for span in re.findall(r"`([^`\n]+)`", prose):
            for path in re.findall(r"(?:^|\s)((?:schedcmp|tests|bench|configs|docs)/[\w./-]*)", span):
                if "*" not in path and not (ROOT / path.rstrip(".")).exists():
                    stale.append(f"{page.relative_to(ROOT)}: {path}")
    assert not stale, "\n".join(stale)


def test_compare_arguments_table_is_the_declared_one():
    """docs/python-api.md lists compare()'s arguments: the declared ones, in order, with their defaults and flags."""
    from schedcmp.core import request

    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \| (`[^`]*`|–) \|", text, flags=re.MULTILINE)
    by_name = {field.name: field for field in request.declared()}
    assert [name for name, _, _ in rows] == request.api_names()
    for name, default, flag in rows:
        declared = request.setting_of(by_name[name])
        assert default == repr(request.default_of(by_name[name])), name
        assert flag == (f"`{declared.flag}`" if declared.flags else "–"), name


def import_graph() -> dict[str, set[str]]:
    """schedcmp/ path -> the schedcmp/ paths it imports anywhere, relative imports included."""
    package = ROOT / "schedcmp"
    modules = {path.relative_to(ROOT).as_posix(): path for path in package.rglob("*.py")}

    def path_of(dotted: str) -> str | None:
        base = dotted.replace(".", "/")
        return next((c for c in (f"{base}.py", f"{base}/__init__.py") if c in modules), None)

    graph = {}
    for name, path in modules.items():
        here = path.relative_to(ROOT).with_suffix("").parts
        package_parts = here[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {path_of(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package_parts[: len(package_parts) - node.level + 1]) if node.level else ""
                dotted = ".".join(part for part in (base, node.module or "") if part)
                for alias in node.names:  # `from P import m` imports module P.m where there is one, else P
                    found.add(path_of(f"{dotted}.{alias.name}") or path_of(dotted))
        graph[name] = {module for module in found if module} - {name}
    return graph


def test_the_module_map_names_every_module_and_imports_only_upward():
    """CONTRIBUTING.md's module map: every module of schedcmp/ once, each importing only modules listed above."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(schedcmp/[\w/]+\.py)` \|", section, flags=re.MULTILINE)
    graph = import_graph()
    assert sorted(listed) == sorted(graph), (
        f"missing from the map: {sorted(set(graph) - set(listed))}; not modules: {sorted(set(listed) - set(graph))}"
    )
    assert len(listed) == len(set(listed)), "a module is listed twice"
    upward = [
        f"{module} imports {sorted(graph[module] - set(listed[:position]))}, listed below it"
        for position, module in enumerate(listed)
        if graph[module] - set(listed[:position])
    ]
    assert not upward, "\n".join(upward)
