"""The quality charts and report.html, from a results folder made by hand: pure maths, files, a real browser."""

from __future__ import annotations

import html
import io
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import schemas
from browser import Browser

from schedcmp.core import records
from schedcmp.core.records import STOCHASTIC_NOT_RANKED, Determinism, Distance, Order, Pareto, Results, Run, Status
from schedcmp.output import chart
from schedcmp.output.chart import (
    Axis,
    Box,
    Point,
    axis_range,
    chart_points,
    nice_step,
    nice_ticks,
    place_labels,
    segment_boxes,
    step_line,
    uses_log_scale,
)
from schedcmp.output.html_report import page, write_report

PROMPT = 'a "red" <fox> & friends'
REFERENCE_ID = "ref-1a2b3c4d"
IMAGE_SIZE = (96, 72)  # not the thumbnail's 64 px, so the overlay can be seen to show the full size
ARTIFACTS = Path(__file__).parent / "artifacts"


def short_label(entry: Run) -> str:
    """A chart point's label: the UI name when there is one, else the class and its overrides."""
    return entry.alias or entry.label


def run(
    run_id,
    scheduler,
    seconds,
    nfe,
    distance,
    pareto,
    *,
    alias=None,
    overrides=None,
    status=Status.OK,
    reason=None,
    determinism=Determinism.DETERMINISTIC,
    order=None,
) -> Run:
    """One of results.json's runs, as the run command records it."""
    ok = status == Status.OK
    return Run(
        id=run_id,
        scheduler=scheduler,
        alias=alias,
        overrides=overrides or {},
        prompt=PROMPT,
        seed=8,
        steps=20,
        guidance_scale=7.5,
        width=IMAGE_SIZE[0],
        height=IMAGE_SIZE[1],
        status=status,
        reason=reason,
        nfe=nfe,
        seconds=seconds,
        ms_per_nfe=None if seconds is None else 1000 * seconds / nfe,
        peak_memory_bytes=123456,
        image_path=f"images/{run_id}.png" if ok else None,
        determinism=determinism,
        reference=REFERENCE_ID if ok else None,
        distance=None if distance is None else Distance(distance, 20 - 10 * distance, 1 - distance),
        order=order,
        pareto=pareto,
    )


# Fronts by hand. Time: DDIM (0.25 s), DPM++ (0.30 s), Heun (0.70 s); Euler is slower and further than
# DPM++. NFE: DPM++ (20) and Heun (39); DDIM and Euler cost 20 too but land further.
RUNS = [
    run(
        "ddim-s20-seed8",
        "DDIMScheduler",
        0.25,
        20,
        0.06,
        Pareto(seconds=True, nfe=False),
        order=Order(order=1.02, steps=[10, 40], nfe=[10, 40], r_squared=0.997, reason=None),
    ),
    run(
        "eulerdiscrete-s20-seed8",
        "EulerDiscreteScheduler",
        0.35,
        20,
        0.08,
        Pareto(seconds=False, nfe=False),
        alias="Euler",
        order=Order(order=None, steps=None, nfe=None, r_squared=None, reason="errors do not fall with more steps"),
    ),
    run(
        "dpmsolvermultistep-karras-s20-seed8",
        "DPMSolverMultistepScheduler",
        0.30,
        20,
        0.04,
        Pareto(seconds=True, nfe=True),
        overrides={"use_karras_sigmas": True},
    ),
    run("heundiscrete-s20-seed8", "HeunDiscreteScheduler", 0.70, 39, 0.01, Pareto(seconds=True, nfe=True)),
    run(
        "eulerancestraldiscrete-s20-seed8",
        "EulerAncestralDiscreteScheduler",
        0.33,
        20,
        None,
        None,
        alias="Euler a",
        determinism=Determinism.STOCHASTIC,
    ),
    run(
        "lmsdiscrete-s20-seed8",
        "LMSDiscreteScheduler",
        None,
        None,
        None,
        None,
        status=Status.FAILED,
        reason="ValueError: <sigmas> must be increasing & finite",
        determinism=Determinism.UNKNOWN,
    ),
]
IDS = [entry.id for entry in RUNS]


def png(size, colour) -> bytes:
    from PIL import Image

    output = io.BytesIO()
    Image.new("RGB", size, colour).save(output, format="PNG")
    return output.getvalue()


@pytest.fixture
def results(tmp_path) -> tuple[Path, Results]:
    """A results folder as `schedcmp run --reference` leaves it, before the charts: results.json, images, sheet;
    and its records, as they are read from it."""
    folder = tmp_path / "results"
    (folder / "images").mkdir(parents=True)
    (folder / "reference").mkdir()
    for number, entry in enumerate(RUNS):
        if entry.image_path:
            (folder / entry.image_path).write_bytes(png(IMAGE_SIZE, (40 * number, 200 - 30 * number, 90)))
    (folder / "reference" / f"{REFERENCE_ID}.png").write_bytes(png(IMAGE_SIZE, (250, 250, 250)))
    (folder / "contact_sheet.png").write_bytes(png((400, 300), (200, 220, 240)))
    document = {
        "schema_version": 1,
        "kind": "run",
        "model": "tiny-sd15",
        "pipeline": "StableDiffusionPipeline",
        "original_scheduler": "PNDMScheduler",
        "device": "cpu",
        "dtype": "fp32",
        "generator_device": "cpu",
        "repeat": 1,
        "seed_mode": "same",
        "versions": {"schedcmp": "0.1.0", "diffusers": "0.32.2", "torch": "2.13.0"},
        "shared_seconds": {"model_load": 1.5},
        "started": "2025-11-27T14:00:00",
        "finished": "2025-11-27T14:01:00",
        "interrupted": False,
        "sheets": ["contact_sheet.png"],
        "references": [
            {
                "id": REFERENCE_ID,
                "spec": "DPMSolverMultistep:200",
                "scheduler": "DPMSolverMultistepScheduler",
                "status": "ok",
                "label": "DPMSolverMultistep",
                "steps": 200,
                "nfe": 400,
                "seconds": 9.1,
                "cached": False,
                "image": f"reference/{REFERENCE_ID}.png",
                "prompt": PROMPT,
                "seed": 8,
                "self_convergence": {"half_steps": 100, "latent_rmse": 0.0004, "psnr": 71.2, "ssim": 0.9999},
            }
        ],
        "interval": {
            "spacing": "trailing",
            "forced": True,
            "note": "Karras sigmas and trailing spacing end at different sigmas: all runs use trailing.",
        },
        "charts": [],
        "runs": [records.to_json(entry) for entry in RUNS],
    }
    schemas.validate(document)  # the strict schema: a misspelt key in this hand-written document fails here
    (folder / "results.json").write_text(json.dumps(document))
    return folder, records.load_document(document, "run")  # its own records: tests change them


# -- chart maths ----------------------------------------------------------------------------------------


def test_log_scale_only_when_values_span_more_than_three_times():
    assert uses_log_scale([0.01, 0.08]) and not uses_log_scale([0.25, 0.70])
    assert not uses_log_scale([1, 3]) and not uses_log_scale([0, 50])  # exactly 3x is linear; zero cannot be logged


def test_nice_steps_and_ticks_follow_one_two_five():
    assert [nice_step(raw) for raw in (0.17, 1, 3, 7)] == [0.2, 1, 5, 10]
    assert nice_ticks(0, 1, log=False) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.23, 0.72, log=False) == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert nice_ticks(1, 1000, log=True) == [1, 10, 100, 1000]
    assert nice_ticks(0.008, 0.12, log=True) == [0.01, 0.02, 0.05, 0.1]  # powers of ten alone give only two


def test_axis_range_pads_and_maps():
    assert axis_range([10, 20], log=False) == pytest.approx((9.4, 20.6))
    assert axis_range([0.5], log=False) == pytest.approx((0.22, 0.78))  # one point: centred
    assert axis_range([0.01, 1], log=True) == pytest.approx((10**-2.12, 10**0.12))
    assert axis_range([0.1, 10], log=False)[0] == 0  # padding never goes below zero for non-negative data
    assert Axis(0.01, 1, True, 100, 300).position(0.1) == pytest.approx(200)
    assert Axis(0, 10, False, 500, 100).position(2.5) == pytest.approx(400)  # y: low values at the bottom


def test_step_line_goes_across_then_down():
    assert step_line([(4, 0.1), (1, 0.5), (2, 0.2)]) == [(1, 0.5), (2, 0.5), (2, 0.2), (4, 0.2), (4, 0.1)]
    assert step_line([(1, 0.5)]) == [(1, 0.5)]
    assert segment_boxes([(10, 50), (30, 50), (30, 80)], half_width=1) == [Box(9, 49, 31, 51), Box(29, 49, 31, 81)]


def test_labels_go_right_unless_something_is_in_the_way():
    bounds = Box(0, 0, 400, 200)
    # A's label on the right would cover B's marker (136..144): it goes left. B's right side is free.
    boxes = place_labels([(100, 100), (140, 100)], [(50, 10), (50, 10)], bounds, radius=4, gap=4)
    assert boxes == [Box(42, 95, 92, 105), Box(148, 95, 198, 105)]
    # A's right side is free of markers, but the front's line runs there (y 100, from 104 on): left.
    line = (Box(104, 99, 200, 101),)
    assert place_labels([(100, 100)], [(50, 10)], bounds, radius=4, gap=4, obstacles=line) == [Box(42, 95, 92, 105)]
    # At the right edge: left.
    assert place_labels([(390, 100)], [(50, 10)], bounds, radius=4, gap=4) == [Box(332, 95, 382, 105)]
    # Nothing fits a 60 px wide plot: the least collision wins (above and below tie; above is preferred).
    assert place_labels([(20, 100)], [(50, 10)], Box(0, 0, 60, 200), radius=4, gap=4) == [Box(-5, 82, 45, 92)]


def test_chart_points_are_the_ranked_runs(results):
    _, document = results
    seconds = chart_points(document, "seconds")
    by_id = {entry.id: entry for entry in document.runs}
    assert seconds == [
        Point(short_label(by_id[IDS[0]]), 0.25, 0.06, True),
        Point(short_label(by_id[IDS[1]]), 0.35, 0.08, False),
        Point(short_label(by_id[IDS[2]]), 0.30, 0.04, True),
        Point(short_label(by_id[IDS[3]]), 0.70, 0.01, True),
    ]  # not the stochastic run, nor the failed one
    assert [p.on_front for p in chart_points(document, "nfe")] == [False, False, True, True]
    assert [p.cost for p in chart_points(document, "nfe")] == [20, 20, 20, 39]


def test_sweep_labels_carry_the_steps(results):
    _, document = results
    document.runs[0] = replace(document.runs[0], steps=10)
    labels = [p.label for p in chart_points(document, "seconds")]
    assert labels[0] == short_label(document.runs[0]) + " · 10" and labels[1].endswith(" · 20")


def test_write_charts_writes_both_pngs(results):
    from PIL import Image

    folder, document = results
    assert chart.write_charts(folder, document) == ["quality_vs_time.png", "quality_vs_nfe.png"]
    for name in ("quality_vs_time.png", "quality_vs_nfe.png"):
        with Image.open(folder / name) as image:
            assert image.size == (chart.WIDTH, chart.HEIGHT) == (1000, 700)
    assert not list(folder.glob(".*.tmp"))  # written atomically, nothing left behind


def test_no_distance_no_charts(results, tmp_path):
    folder, document = results
    document.runs = [replace(entry, distance=None) for entry in document.runs]
    assert chart.write_charts(tmp_path, document) == [] and not list(tmp_path.glob("*.png"))


# -- the page as text -----------------------------------------------------------------------------------


def test_page_shows_every_run_and_escapes_text(results):
    folder, document = results
    document.charts = chart.write_charts(folder, document)
    text = page(document, folder)
    for entry in document.runs:
        assert html.escape(entry.label) in text and f'data-id="{entry.id}"' in text
    assert html.escape(PROMPT) in text and "<fox>" not in text
    assert html.escape("ValueError: <sigmas> must be increasing & finite") in text
    assert STOCHASTIC_NOT_RANKED in text and "errors do not fall with more steps" in text and "1.02" in text
    assert (
        "against itself at 100 steps" in text and "DPMSolverMultistep:200" in text and "all runs use trailing" in text
    )
    assert text.count('class="pareto-row"') == 3
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?:""", text, re.IGNORECASE)
    assert "http://" not in text and "https://" not in text and "<script src" not in text and "<link" not in text


def test_page_survives_missing_images(results):
    folder, document = results
    (folder / "images" / f"{IDS[0]}.png").unlink()
    document.sheets = []
    text = page(document, folder)
    assert f"image missing: images/{IDS[0]}.png" in text and "Contact sheet" not in text


def test_write_report(results):
    folder, document = results
    path = write_report(folder, document)
    assert path == folder / "report.html" and path.read_text().startswith("<!doctype html>")


# -- the page in a browser ------------------------------------------------------------------------------

ROW_IDS = "[...document.querySelectorAll('#runs tbody tr')].map(row => row.dataset.id)"


def test_report_page_in_chromium(results, tmp_path):
    """Loads offline, decodes every image, sorts by clicking headers, opens a thumbnail at full size."""
    folder, document = results
    document.charts = chart.write_charts(folder, document)
    report = write_report(folder, document)
    with Browser(tmp_path / "profile") as browser:
        browser.page("Network.enable")
        browser.page(
            "Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1
        )
        browser.open(report.as_uri())
        shown = browser.wait_for(
            "document.body.dataset.imagesTotal"
            " && [document.body.dataset.imagesShown, document.body.dataset.imagesTotal]"
        )
        assert shown == ["9", "9"]  # 5 runs with an image, the reference, the contact sheet, two charts
        requested = [
            event["params"]["request"]["url"]
            for event in browser.events
            if event["method"] == "Network.requestWillBeSent"
        ]
        assert requested and all(url.startswith(("file:", "data:")) for url in requested), requested

        assert browser.evaluate(ROW_IDS) == IDS
        browser.click('#runs th[data-column="seconds"] button')
        assert browser.evaluate(ROW_IDS) == [IDS[0], IDS[2], IDS[4], IDS[1], IDS[3], IDS[5]]  # no time (failed) last
        assert (
            browser.evaluate("document.querySelector('#runs th[data-column=\"seconds\"]').getAttribute('aria-sort')")
            == "ascending"
        )
        browser.click('#runs th[data-column="seconds"] button')
        assert browser.evaluate(ROW_IDS) == [
            IDS[3],
            IDS[1],
            IDS[4],
            IDS[2],
            IDS[0],
            IDS[5],
        ]  # reversed, empty still last
        assert (
            browser.evaluate("document.querySelector('#runs th[data-column=\"seconds\"]').getAttribute('aria-sort')")
            == "descending"
        )
        browser.click('#runs th[data-column="latent_rmse"] button')
        assert browser.evaluate(ROW_IDS) == [
            IDS[3],
            IDS[2],
            IDS[0],
            IDS[1],
            IDS[4],
            IDS[5],
        ]  # stochastic and failed: no distance
        browser.screenshot(ARTIFACTS / "report_page.png")

        browser.click(f'tr[data-id="{IDS[3]}"] button.zoom')
        size = browser.wait_for(
            "(() => { const overlay = document.getElementById('overlay'),"
            " image = document.getElementById('overlay-image');"
            " return !overlay.hidden && getComputedStyle(overlay).display !== 'none'"
            " && image.complete && image.naturalWidth > 0"
            " && [image.naturalWidth, image.getBoundingClientRect().width,"
            " document.getElementById('overlay-caption').textContent]; })()"
        )
        assert size[:2] == [IMAGE_SIZE[0], IMAGE_SIZE[0]] and size[2].startswith(document.runs[3].label)
        assert (
            browser.evaluate(f"document.querySelector('tr[data-id=\"{IDS[3]}\"] img').getBoundingClientRect().width")
            == 64
        )
        browser.screenshot(ARTIFACTS / "report_page_overlay.png", full_page=False)
        browser.press("Escape", 27)
        assert browser.evaluate("document.getElementById('overlay').hidden") is True
        browser.click(f'tr[data-id="{IDS[0]}"] button.zoom')
        assert browser.evaluate("document.getElementById('overlay').hidden") is False
        browser.click("#overlay")
        assert browser.evaluate("document.getElementById('overlay').hidden") is True
    assert (ARTIFACTS / "report_page.png").stat().st_size > 10_000


def test_a_crowded_cluster_of_labels_does_not_overlap():
    """The 20-step chart's cluster: "DPM++ 2M" sat on "DPMSolverSinglestep" and "UniPC" on a marker."""
    bounds = Box(0, 0, 850, 550)
    anchors = [(70, 470), (80, 455), (95, 452), (118, 446), (100, 466), (72, 500)]
    sizes = [(60, 16), (44, 16), (140, 16), (40, 16), (44, 16), (40, 16)]
    boxes = place_labels(anchors, sizes, bounds, radius=5, gap=4)
    markers = [Box(x - 5, y - 5, x + 5, y + 5) for x, y in anchors]
    for index, box in enumerate(boxes):
        assert box.left >= 0 and box.right <= 850 and box.top >= 0 and box.bottom <= 550
        assert all(box.overlap(other) == 0 for other in boxes[:index] + boxes[index + 1 :]), (index, boxes)
        assert all(box.overlap(marker) == 0 for marker in markers), (index, box)
