"""`sweep page` as a person sees it: the file opened in a real headless Chromium (tests/chromium.py) with its
network off, on a hand-made sweep of 8 configurations x 2 seeds with statistics, stopped trials, a failed one,
two devices, two nodes and two bundles. And its errors: one line, nothing written."""
import contextlib
import io
import math
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from chromium import Chromium
from sweep.cli import main
from sweep.cli_parser import package_version
from sweep.db.engine import init_db, make_engine, session_scope
from sweep.db.flags import FLAG_DESCRIPTIONS, FLAG_NOTATION
from sweep.db.queries import ensure_sweep, update_trial, trials_frame
from test_plot import IMAGES, STUDY, build_study

SPEC = {**STUDY, "epochs": 3, "grid": {**STUDY["grid"], "activation": ["sigmoid", "relu"], "seed": [0, 1]}}
# Both seeds of the first stopped after epoch 1; of the second, seed 0 stopped after epoch 2 and seed 1 failed there.
STOPPED = {"relu-xavier_uniform-adam-lr0.001": 1, "relu-default-adam-lr0.001": 2}
FAILED = "relu-default-adam-lr0.001-s1"
TRACEBACK = ("Traceback (most recent call last):\n  File \"sweep/run/trial.py\", line 200, in run_trial\n"
             "    loss.backward()\nRuntimeError: CUDA error: out of memory <on device 0>\n")
BEGAN = datetime(2024, 5, 1, 10, 0, 0)


def _run(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """The sweep's database, its trials where and when a cluster would have run them: trial i started at
    10:00 + i minutes and ran 30 s; the last 4 on cuda:0, the others on the CPU; the first 10 on node A; the
    first 4 fused two by two."""
    folder = tmp_path_factory.mktemp("page")
    engine, _ = build_study(folder, SPEC, epochs=3, stopped=STOPPED)
    trials = trials_frame(engine, "study")
    with session_scope(engine) as s:
        for i, t in enumerate(trials.itertuples()):
            start = BEGAN + timedelta(minutes=i)
            update_trial(s, t.trial_id, started_at=start, finished_at=start + timedelta(seconds=30),
                         device="cuda:0" if i >= 12 else "cpu", node="hostA/1" if i < 10 else "hostB/2",
                         bundle=f"bundle-{i // 2}" if i < 4 else None, images_seen=IMAGES * t.epochs_done)
            if t.name == FAILED:
                update_trial(s, t.trial_id, status="failed", error=TRACEBACK)
    engine.dispose()
    return folder / "sweep.db"


@pytest.fixture(scope="module")
def page(study) -> Path:
    code, out, err = _run("page", "--db", str(study))
    assert code == 0, err
    return Path(out.strip())


@pytest.fixture(scope="module")
def browser():
    with Chromium() as chromium:
        yield chromium


# ------------------------------------------------------------------ in the browser

def test_the_browser_sees_a_request_leaving_the_file_and_a_console_error(browser, tmp_path):
    """The harness's own check: the two things the page must not do are seen where a page does them."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="http://example.org/x.png"><script>console.error("boom")</script>'
                   '</body></html>')
    browser.open(bad)
    assert "http://example.org/x.png" in browser.requests()
    # The request failed (the network is off), which the browser logs as an error too.
    assert sorted(browser.console_errors()) == ["Failed to load resource: net::ERR_PROXY_CONNECTION_FAILED", "boom"]


def test_the_page_opens_offline_with_no_console_error_and_no_request_leaving_the_file(browser, page):
    browser.open(page)
    assert browser.console_errors() == []
    requests = browser.requests()
    assert requests[0] == page.absolute().as_uri()
    # The pictures are the only other requests: data URIs, decoded in the page.
    assert [r[:22] for r in requests[1:]] == ["data:image/png;base64,"] * 4
    assert browser.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)") == [True] * 4
    assert browser.evaluate("document.querySelectorAll('script[src], link[href], iframe').length") == 0


def _ranking_configs(browser) -> list[str]:
    return browser.evaluate("Array.from(document.querySelectorAll('#ranking tbody tr'))"
                            ".filter(r => !r.hidden).map(r => r.querySelector('a').textContent)")


def _click_header(browser, name: str) -> None:
    x, y = browser.evaluate(f"(() => {{ const th = Array.from(document.querySelectorAll('#ranking th'))"
                            f".find(h => h.title === {name!r}); th.scrollIntoView();"
                            f" const r = th.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
    browser.click(x, y)


def test_a_click_on_a_column_name_sorts_the_rows_and_a_second_click_reverses_them(browser, page, study):
    from sweep.analysis.report import ReportOptions, build_report

    table = build_report(make_engine(f"sqlite:///{study}"), "study", ReportOptions("final_test_acc", 3)).table
    rows = list(zip(table["config"], table["final_test_loss"]))
    browser.open(page)
    assert _ranking_configs(browser) == list(table["config"])  # as ranked: by the mean accuracy, best first
    _click_header(browser, "final_test_loss")
    ascending = [c for c, _ in sorted(rows, key=lambda r: (math.isnan(r[1]), r[1]))]
    assert ascending != list(table["config"])
    assert _ranking_configs(browser) == ascending
    _click_header(browser, "final_test_loss")
    descending = [c for c, _ in sorted(rows, key=lambda r: (math.isnan(r[1]), -r[1]))]
    assert _ranking_configs(browser) == descending
    _click_header(browser, "activation")  # text: relu before sigmoid, the order before kept within each
    assert _ranking_configs(browser) == sorted(descending, key=lambda c: c.split("-")[0])
    assert browser.evaluate("Array.from(document.querySelectorAll('#ranking th[aria-sort]')).map(h => "
                            "[h.title, h.getAttribute('aria-sort')])") == [["activation", "ascending"]]


def test_a_factor_s_value_filters_the_ranking(browser, page):
    browser.open(page)
    assert browser.evaluate("Array.from(document.querySelectorAll('.filters label')).map(l => l.firstChild"
                            ".textContent.trim())") == ["activation", "init", "optimizer", "status"]

    def choose(factor: str, value: str) -> list[str]:
        browser.evaluate(f"(() => {{ const s = Array.from(document.querySelectorAll('.filters label')).find(l => "
                         f"l.firstChild.textContent.trim() === {factor!r}).querySelector('select'); s.value = {value!r};"
                         f" s.dispatchEvent(new Event('change')); }})()")
        return _ranking_configs(browser)

    assert sorted(choose("activation", "sigmoid")) == ["sigmoid-default-adam-lr0.001", "sigmoid-default-sgd-lr0.001",
                                                       "sigmoid-xavier_uniform-adam-lr0.001",
                                                       "sigmoid-xavier_uniform-sgd-lr0.001"]
    assert sorted(choose("optimizer", "sgd")) == ["sigmoid-default-sgd-lr0.001", "sigmoid-xavier_uniform-sgd-lr0.001"]
    assert len(choose("activation", "")) == 4  # every activation, sgd only
    assert choose("status", "1 stopped, 1 failed") == []  # sgd's configurations all completed
    assert choose("optimizer", "") == ["relu-default-adam-lr0.001"]


def test_the_page_fits_a_1280_pixel_window_and_no_picture_overflows(browser, page, tmp_path):
    browser.open(page)
    metrics = browser.call("Page.getLayoutMetrics", session=True)
    assert metrics["cssLayoutViewport"]["clientWidth"] == 1280
    assert metrics["cssContentSize"]["width"] <= 1280  # nothing wider than the window: no sideways scrolling
    table = browser.evaluate("(() => { const r = document.getElementById('ranking').getBoundingClientRect();"
                             " return [r.left, r.right, document.getElementById('ranking').rows[0].cells.length]; })()")
    assert table[0] >= 0 and table[1] <= 1280 and table[2] == 18
    boxes = browser.evaluate("""Array.from(document.querySelectorAll('img, svg.chart, table')).map(e => {
        const r = e.getBoundingClientRect(), p = e.closest('section').getBoundingClientRect();
        return [e.tagName, r.left, r.right, p.left, p.right, r.width, r.height]; })""")
    kinds = [b[0] for b in boxes]
    assert kinds.count("IMG") == 4 and kinds.count("svg") == 8 * 3 and kinds.count("TABLE") == 1 + 3 + 8  # ranking, matrices, seeds
    for tag, left, right, section_left, section_right, width, height in boxes:
        assert section_left - 0.5 <= left and right <= section_right + 0.5 and width > 0 and height > 0, tag
    shot = tmp_path / "page.png"
    shot.write_bytes(browser.screenshot(full_page=True))
    with Image.open(shot) as image:
        assert image.size == (1280, math.ceil(metrics["cssContentSize"]["height"]))
        # The ranking's first row is drawn where the page says it is: dark text on white.
        x, y = browser.evaluate("(() => { const r = document.querySelector('#ranking tbody tr').getBoundingClientRect();"
                                " return [r.left, r.top + window.scrollY]; })()")
        row = image.convert("L").crop((int(x), int(y), int(x) + 600, int(y) + 14))
        darkest, lightest = row.getextrema()
        assert darkest < 100 and lightest > 200


def test_each_flag_says_what_it_means_in_a_tooltip(browser, page):
    browser.open(page)
    found = dict(browser.evaluate("Array.from(document.querySelectorAll('#ranking .flag')).map(s => "
                                  "[s.dataset.flag, s.title])"))
    assert sorted(found) == ["chance", "dead", "saturated"]
    assert found["chance"] == ("chance: test accuracy stayed within 0.02 of 1/classes from this epoch to the last "
                               f"one read. {FLAG_NOTATION}")
    assert found["dead"] == f"dead: {FLAG_DESCRIPTIONS['dead'].format(dead=0.5)}. {FLAG_NOTATION}"
    assert browser.evaluate("document.querySelector('#ranking .flag').textContent") == "dead conv1@1 (2/2)"


def test_the_header_says_what_ran_when_and_where_and_what_stopping_saved(browser, page):
    browser.open(page)
    facts = dict(browser.evaluate("Array.from(document.querySelectorAll('dl.facts dt')).map(d => "
                                  "[d.textContent, d.nextElementSibling.textContent])"))
    assert facts == {
        "data set": "synthetic", "model": "lenet", "epochs": "3", "metric": "final_test_acc",
        "ran": "2024-05-01 10:00:00 UTC to 2024-05-01 10:15:30 UTC",
        "wall time": "0:15:30 (first start to last end)",
        "trials": "16: 12 completed, 3 stopped, 1 failed",
        "devices": "cpu: 12, cuda:0: 4",
        "nodes": "hostA/1: 10, hostB/2: 6",
        "bundles": "2 bundles of fused trials (4 trials)",
        "images trained": "12,600",  # 42 epochs trained, 300 images each
        # stopped after epoch 1 (2 trials) and 2 (1): 5 of the 48 epochs of the grid, 300 images each
        "early stopping saved": "1,500 of the grid's 14,400 training images (10.4%)",
    }
    spec = browser.evaluate("document.querySelector('header details pre').textContent")
    assert "\nname: study\n" in spec and "activation: [sigmoid, relu]" in spec
    assert browser.evaluate("document.querySelector('header details').open") is False  # folded


def test_each_configuration_has_a_section_reached_from_its_ranking_row(browser, page):
    browser.open(page)
    links = browser.evaluate("Array.from(document.querySelectorAll('#ranking a')).map(a => a.getAttribute('href'))")
    sections = browser.evaluate("Array.from(document.querySelectorAll('section.config')).map(s => '#' + s.id)")
    assert links == sections and len(sections) == 8
    failing = "#config-relu-default-adam-lr0.001"
    seeds = browser.evaluate(f"Array.from(document.getElementById('{failing[1:]}').querySelectorAll('table tbody tr'))"
                             ".map(r => r.cells[1].textContent)")
    assert sorted(seeds) == ["relu-default-adam-lr0.001-s0", "relu-default-adam-lr0.001-s1"]
    errors = browser.evaluate(f"Array.from(document.getElementById('{failing[1:]}').querySelectorAll('details.error'))"
                              ".map(d => [d.querySelector('summary').textContent, d.querySelector('pre').textContent])")
    assert errors == [[f"{FAILED}: its error", TRACEBACK]]
    # Its accuracy curve: the seeds' mean at epochs 0, 1, 2 (where the stopped and the failed seed end), with
    # the 2 seeds' band around it; its layers over training, a line per layer.
    charts = browser.evaluate(f"Array.from(document.getElementById('{failing[1:]}').querySelectorAll('svg.chart')).map(s =>"
                              " [s.querySelector('text').textContent, s.querySelectorAll('polyline').length,"
                              " s.querySelector('polyline').getAttribute('points').split(' ').length,"
                              " s.querySelectorAll('polygon').length])")
    assert charts == [["test accuracy (seeds' mean)", 1, 3, 1], ["activations' std", 2, 6, 0],
                      ["weight gradients' std", 3, 6, 0]]
    # A click on its row's name scrolls to its section.
    x, y = browser.evaluate(f"(() => {{ const a = document.querySelector('#ranking a[href=\"{failing}\"]');"
                            " a.scrollIntoView(); const r = a.getClientRects()[0];"
                            " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    browser.click(x, y)
    assert browser.evaluate("location.hash") == failing
    # In view: at the window's top, or as near as the end of the page lets it come.
    top, scrolled, end = browser.evaluate(f"[document.getElementById('{failing[1:]}').getBoundingClientRect().top, "
                                          "window.scrollY, document.documentElement.scrollHeight - window.innerHeight]")
    assert abs(top) < 2 or (0 <= top < 900 and abs(scrolled - end) < 2)


# ------------------------------------------------------------------ the page's content and the command

def test_the_ranking_is_the_one_sweep_report_gives(page, study, browser):
    """The page's ranking holds `sweep report --wide`'s cells, column for column (those the same in every row
    left out), and the footer says how to make the page again."""
    browser.open(page)
    header = browser.evaluate("Array.from(document.querySelectorAll('#ranking th')).map(h => h.title)")
    assert header == ["rank", "activation", "init", "optimizer", "lr", "config", "n", "final_test_acc_mean",
                      "final_test_acc_std", "final_test_acc_ci95", "best_test_acc", "final_train_loss",
                      "final_test_loss", "best_epoch", "epochs", "status", "flags", "error"]
    code, out, _ = _run("report", "--db", str(study), "--format", "markdown", "--columns", ",".join(header))
    assert code == 0
    expected = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()[2:]]
    cells = browser.evaluate("Array.from(document.querySelectorAll('#ranking tbody tr')).map(r => "
                             "Array.from(r.cells).map(c => c.textContent))")
    assert cells == expected
    assert cells[0][:6] == ["1", "relu", "xavier_uniform", "sgd", "0.001", "relu-xavier_uniform-sgd-lr0.001"]
    assert browser.evaluate("document.querySelector('footer').textContent") == (
        f"Written by sweep {package_version()}. To regenerate this page: sweep page study --db sqlite:///{study}")


def test_sweep_page_writes_beside_the_database_prints_the_path_and_tells_its_progress(study, tmp_path):
    code, out, err = _run("page", "study", "--db", str(study))
    assert code == 0 and out == f"{study.parent / 'pages' / 'study.html'}\n"
    assert [line.split(" (")[0] for line in err.splitlines()] == [
        "page: reading the sweep", "page: drawing the pictures", "page: writing the configurations' sections"]
    target = tmp_path / "shared" / "study.html"
    target.parent.mkdir()
    code, out, _ = _run("page", "--db", str(study), "--out", str(target))
    assert (code, out) == (0, f"{target}\n")
    assert list(target.parent.iterdir()) == [target]  # written in one step: no temporary file left
    text = target.read_text()
    assert text.startswith("<!DOCTYPE html>") and "http://" not in text and "https://" not in text
    assert f"sweep page study --db sqlite:///{study} --out {target}" in text


def _empty_sweep(folder: Path) -> Path:
    engine = make_engine(f"sqlite:///{folder / 'sweep.db'}")
    init_db(engine)
    with session_scope(engine) as s:
        ensure_sweep(s, "empty", "{}")
    engine.dispose()
    return folder / "sweep.db"


@pytest.mark.parametrize("case, code, message", [
    ("unknown sweep", 1, "Error: no sweep named 'stduy' in the database; it has: study; did you mean 'study'?\n"),
    ("empty sweep", 1, "Error: sweep empty has no results yet: no trial has recorded an epoch\n"),
    ("not a database", 1, "Error: database sqlite:///{db}: DatabaseError: (sqlite3.DatabaseError) file is not a "
                          "database\n"),
    ("no database", 1, "Error: no database at {db}; run `sweep run SPEC` first, or pass --spec SPEC or --db URL\n"),
    ("out in a missing folder", 2, "Error: --out: folder {folder}/no/where cannot be made: {folder}/no does not "
                                   "exist\n"),
    ("bad metric", 2, None),
])
def test_sweep_page_errors_are_one_line_and_write_nothing(case, code, message, study, tmp_path):
    db, args = study, []
    if case == "unknown sweep":
        args = ["stduy"]
    elif case == "empty sweep":
        db = _empty_sweep(tmp_path)
    elif case == "not a database":
        db = tmp_path / "sweep.db"
        db.write_text("not a database")
    elif case == "no database":
        db = tmp_path / "sweep.db"
    elif case == "out in a missing folder":
        args = ["--out", str(tmp_path / "no" / "where" / "study.html")]
    elif case == "bad metric":
        args = ["--metric", "accuracy"]
    def files():  # SQLite's own -wal and -shm files come and go with its connections
        return [sorted(p for p in folder.rglob("*") if not p.name.endswith(("-wal", "-shm")))
                for folder in (tmp_path, study.parent)]

    before = files()
    with pytest.raises(SystemExit) if code == 2 and message is None else contextlib.nullcontext() as raised:
        got, out, err = _run("page", *args, "--db", str(db))
    if message is None:  # argparse's own: usage, then one line
        assert raised.value.code == 2
    else:
        assert (got, out, err) == (code, "", message.format(db=db, folder=tmp_path))
    assert files() == before
