"""A reusable check of a report site in a real browser: headless Chromium driven by Selenium.

:func:`check_site` opens ``index.html`` from disk (``file://``, as a researcher would), and
asserts that the page renders without console errors, that the flow view draws every layer,
that clicking a feature opens its card (or says there is none), that a feature's learned
connections are listed on its card and lead to their features, that the filters and the
learned-connections checkbox hide what they should, that every local link of
every page resolves inside the folder and that no absolute path of this machine leaks into
the files. :func:`require_browser` skips a test only when no Chromium or chromedriver exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

CHROMEDRIVERS = ("/usr/bin/chromedriver", "chromedriver")
CHROMIUMS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 15


def browser_paths() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` found on this machine (``$SLM_CHROMIUM``, ``$SLM_CHROMEDRIVER``
    first, then Debian's ``/usr/bin`` and the ``PATH``), or ``None``."""

    def find(env: str, names: tuple[str, ...]) -> str | None:
        for name in ((os.environ[env],) if os.environ.get(env) else ()) + names:
            path = name if os.path.isabs(name) else shutil.which(name)
            if path and os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        return None

    chromium, driver = find("SLM_CHROMIUM", CHROMIUMS), find("SLM_CHROMEDRIVER", CHROMEDRIVERS)
    return (chromium, driver) if chromium and driver else None


def require_browser() -> tuple[str, str]:
    """The browser and its driver, or skip the calling test saying what is missing."""
    found = browser_paths()
    if found is None:
        pytest.skip(
            "No Chromium and chromedriver found (looked at $SLM_CHROMIUM / $SLM_CHROMEDRIVER, /usr/bin and PATH); "
            "install them (Debian: apt-get install chromium chromium-driver) to run the browser checks."
        )
    return found


@pytest.fixture
def browser() -> tuple[str, str]:
    """Pytest fixture form of :func:`require_browser`."""
    return require_browser()


def check_site(
    index: Path,
    *,
    click: tuple[str, int] | None = None,
    screenshot: Path | None = None,
    paths: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Open ``index`` in headless Chromium and assert that the report works (see the module docstring).

    Args:
        index: the site's ``index.html``.
        click: the residual node (SAE id, feature) to click for the card check; default: the
            topmost residual node of an SAE with cards that has a card with contexts.
        screenshot: where to save a PNG of the page after the click (optional).
        paths: ``(chromium, chromedriver)``; default: :func:`require_browser`.

    Returns:
        Facts for callers: ``nodes`` (count), ``nodes_per_sae``, ``layers``, ``clicked``,
        ``card_text``, ``card_contexts``, ``card_images``, ``no_card`` (the SAE clicked for the
        "no card" message and the message, or ``None`` when every SAE has cards),
        ``learned_card`` (the node whose learned inputs were listed and followed, and the list's
        text, or ``None`` when the view has no learned connections), ``controls`` (what the
        filters did: ``learned_edges``, the learned edges the checkbox showed and hid again,
        ``learned_of_selected``, those of the selected feature, drawn either way), ``console``
        (the browser log) and ``links`` (local links checked).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    index = Path(index).resolve()
    folder = index.parent
    facts: dict[str, Any] = {"links": _check_local_links(folder)}
    _check_no_machine_paths(folder)
    view = _read_view(folder)

    chromium, driver_path = paths or require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1500,1000", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT_S)
        driver.get(index.as_uri())
        wait = _Waiter(WebDriverWait(driver, TIMEOUT_S), driver)
        wait.until(lambda d: d.execute_script("const s = document.querySelector('svg#flow'); return s && s.getAttribute('data-ready') === 'true';"),
                   "the flow view to draw (svg#flow[data-ready])")

        # every layer of the view has nodes, every SAE as many as the view keeps
        circles = driver.execute_script(
            "return Array.from(document.querySelectorAll('svg#flow circle.node')).map(c => [c.dataset.sae, Number(c.dataset.feature), Number(c.dataset.layer)]);"
        )
        per_sae: dict[str, int] = {}
        for sae, _, _ in circles:
            per_sae[sae] = per_sae.get(sae, 0) + 1
        layers = sorted({layer for _, _, layer in circles})
        assert layers == list(range(view["n_layers"])), f"svg#flow has nodes for layers {layers}, the view has {view['n_layers']} layers"
        for s in view["saes"]:
            assert per_sae.get(s["id"], 0) == len(s["features"]), f"{s['id']}: {per_sae.get(s['id'], 0)} nodes drawn, {len(s['features'])} in the view"
        facts.update(nodes=len(circles), nodes_per_sae=per_sae, layers=layers)

        # a residual node of an SAE with cards opens its card, with contexts
        target = click or _node_with_contexts(folder, view, {(sae, f) for sae, f, _ in circles})
        if target is not None:
            sae, feature = target
            _click_node(driver, sae, feature)
            wait.until(lambda d: d.execute_script(
                "const c = document.getElementById('card'); return c.dataset.sae === arguments[0] && c.dataset.feature === String(arguments[1]) "
                "&& ['card', 'no-feature', 'no-cards', 'error'].includes(c.dataset.state);", sae, feature), f"the card of {sae}/{feature}")
            state = driver.execute_script("return document.getElementById('card').dataset.state;")
            assert state == "card", f"clicking {sae}/{feature} left the card panel in state {state!r}: {driver.find_element(By.ID, 'card').text[:300]}"
            contexts = driver.find_elements(By.CSS_SELECTOR, "#card .context")
            assert contexts, f"the card of {sae}/{feature} shows no context"
            facts.update(
                clicked=target,
                card_text=driver.execute_script("return document.getElementById('card').textContent;"),
                card_contexts=len(contexts),
                card_images=len(driver.find_elements(By.CSS_SELECTOR, "#card img")),
            )
            if screenshot is not None:
                driver.save_screenshot(str(screenshot))

        # a node of an SAE without cards says so
        without = [s for s in view["saes"] if not s.get("card") and s["features"]]
        facts["no_card"] = None
        if without:
            s = without[0]
            _click_node(driver, s["id"], s["features"][0])
            wait.until(lambda d: d.execute_script("return document.getElementById('card').dataset.sae === arguments[0];", s["id"]), f"the panel of {s['id']}")
            message = driver.find_elements(By.CSS_SELECTOR, "#card .no-card")
            assert message and driver.execute_script("return document.getElementById('card').dataset.state;") == "no-cards", (
                f"clicking {s['id']}/{s['features'][0]} (no cards) shows no 'no card' message"
            )
            facts["no_card"] = {"sae": s["id"], "text": message[0].text}

        facts["learned_card"] = _check_learned_card(driver, wait, view)
        facts["controls"] = _check_controls(driver, view)

        log = driver.get_log("browser")
        facts["console"] = log
        errors = [e for e in log if e.get("level") == "SEVERE"]
        assert not errors, f"console errors: {errors}"
        ours = [e for e in log if e.get("level") == "WARNING" and "console-api" in str(e.get("source", ""))]
        assert not ours, f"console warnings from the page's scripts: {ours}"
    finally:
        driver.quit()
    return facts


def _check_learned_card(driver: Any, wait: "_Waiter", view: dict[str, Any]) -> dict[str, Any] | None:
    """The card of a feature with learned inputs lists them with the explained variance, and
    clicking one selects that upstream feature (``None`` when the view has no learned edges)."""
    from selenium.webdriver.common.by import By

    link = next((v for v in view.get("learned", []) if v["a"]), None)
    if link is None:
        return None
    saes = view["saes"]
    sae, feature = saes[link["target"]]["id"], link["b"][0]
    up_sae, up_feature = saes[link["source"]]["id"], link["a"][0]
    settled = ("const c = document.getElementById('card'); return c.dataset.sae === arguments[0] && c.dataset.feature === String(arguments[1]) "
               "&& ['card', 'no-feature', 'no-cards', 'error'].includes(c.dataset.state);")
    _click_node(driver, sae, feature)
    wait.until(lambda d: d.execute_script(settled, sae, feature), f"the card of {sae}/{feature}")
    text = driver.execute_script("const l = document.querySelector('#card ul.learned'); return l ? l.textContent : null;")
    assert text and "explained variance" in text, f"the card of {sae}/{feature} lists no learned connections: {text!r}"
    buttons = driver.find_elements(By.CSS_SELECTOR, f'#card ul.learned button.jump[data-sae="{up_sae}"][data-feature="{up_feature}"]')
    assert buttons, f"the card of {sae}/{feature} does not list its learned input {up_sae}/{up_feature}"
    buttons[0].click()
    wait.until(lambda d: d.execute_script(settled, up_sae, up_feature), f"the card of {up_sae}/{up_feature} after clicking it on {sae}/{feature}'s card")
    return {"node": (sae, feature), "text": text}


_COUNT_JS = """
const all = Array.from(document.querySelectorAll(arguments[0]));
return [all.length, all.filter(e => e.classList.contains('hidden')).length];
"""
_POSITIONS_JS = "return Array.from(document.querySelectorAll('svg#flow circle.node')).map(c => c.getAttribute('cx') + ',' + c.getAttribute('cy')).join(' ');"


def _check_controls(driver: Any, view: dict[str, Any]) -> dict[str, Any]:
    """Filters hide nodes and links without moving anything; the search leaves a hit's path; wheel and drag move the view."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    count = lambda selector: tuple(driver.execute_script(_COUNT_JS, selector))  # noqa: E731
    positions = driver.execute_script(_POSITIONS_JS)
    facts: dict[str, Any] = {}
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", driver.find_element(By.ID, "flow-canvas"))

    # a layer checkbox hides exactly that layer's nodes, and back
    box = driver.find_element(By.CSS_SELECTOR, '#layer-filter input[data-layer="0"]')
    box.click()
    total, hidden = count('svg#flow circle.node[data-layer="0"]')
    assert total and hidden == total, f"unchecking layer 0 hid {hidden} of its {total} nodes"
    assert count('svg#flow circle.node:not([data-layer="0"])')[1] == 0, "unchecking layer 0 hid nodes of other layers"
    box.click()
    assert count("svg#flow circle.node")[1] == 0, "checking layer 0 again did not show every node"

    # the cost slider at its minimum hides the costlier match links
    if view["cost_range"] and view["cost_range"][0] < view["cost_range"][1]:
        driver.execute_script("const s = document.getElementById('cost-threshold'); s.value = s.min; s.dispatchEvent(new Event('input'));")
        total, hidden = count("svg#flow line.link.match")
        assert 0 < hidden < total, f"the cost slider at its minimum hid {hidden} of {total} match links"
        driver.execute_script("const s = document.getElementById('cost-threshold'); s.value = s.max; s.dispatchEvent(new Event('input'));")
        assert count("svg#flow line.link.match")[1] == 0, "the cost slider at its maximum still hides match links"
        facts["cost_filter_hid"] = hidden

    # learned edges: unticked, only the selected feature's are drawn; ticked, all; the explained-variance slider at its maximum hides some
    learned = sum(len(v["a"]) for v in view.get("learned", []))
    if learned:
        box = driver.find_element(By.ID, "show-learned")
        assert not box.is_selected(), "every learned connection is drawn before the checkbox asks for them"
        total, hidden = count("svg#flow line.link.learned:not(.on-path)")
        assert hidden == total, f"with the checkbox unticked, {total - hidden} learned edges of unselected features are drawn"
        selected, selected_hidden = count("svg#flow line.link.learned.on-path")
        assert selected_hidden == 0, f"{selected_hidden} of the selected feature's {selected} learned edges are hidden"
        box.click()
        total, hidden = count("svg#flow line.link.learned")
        assert total == learned and hidden == 0, f"ticking learned connections showed {total - hidden} of {total} learned edges ({learned} in the view)"
        if view["ev_range"][0] < view["ev_range"][1]:
            driver.execute_script("const s = document.getElementById('ev-threshold'); s.value = s.max; s.dispatchEvent(new Event('input'));")
            hidden = count("svg#flow line.link.learned")[1]
            assert 0 < hidden < learned, f"the explained-variance slider at its maximum hid {hidden} of {learned} learned edges"
            driver.execute_script("const s = document.getElementById('ev-threshold'); s.value = s.min; s.dispatchEvent(new Event('input'));")
            assert count("svg#flow line.link.learned")[1] == 0, "the explained-variance slider at its minimum still hides learned edges"
        box.click()
        assert count("svg#flow line.link.learned:not(.on-path)")[1] == total - selected, "unticking learned connections did not hide them again"
        assert count("svg#flow line.link.match")[1] == 0 and count("svg#flow line.link.edge")[1] == 0, "the learned-connections controls hid other links"
        facts.update(learned_edges=learned, learned_of_selected=selected)

    # the search by id leaves the hit and its path
    s = next(x for x in view["saes"] if x["module"] == "residual" and x["features"])
    search = driver.find_element(By.ID, "feature-search")
    search.clear()
    search.send_keys(f"{s['id']}/{s['features'][0]}", Keys.ENTER)
    total, hidden = count("svg#flow circle.node")
    shown = total - hidden
    assert 1 <= shown <= view["n_layers"], f"searching {s['id']}/{s['features'][0]} left {shown} nodes"
    hit = driver.find_element(By.CSS_SELECTOR, f'svg#flow circle.node[data-sae="{s["id"]}"][data-feature="{s["features"][0]}"]')
    assert "hidden" not in (hit.get_attribute("class") or "") and "hit" in hit.get_attribute("class")
    search.send_keys(Keys.CONTROL, "a")
    search.send_keys(Keys.DELETE, Keys.ENTER)
    assert count("svg#flow circle.node")[1] == 0, "clearing the search did not show every node"
    facts["search_left"] = shown

    # wheel zooms and drag pans (the viewBox changes), and nothing was laid out again
    svg = driver.find_element(By.CSS_SELECTOR, "svg#flow")
    view_box = lambda: driver.execute_script("return arguments[0].getAttribute('viewBox');", svg)  # noqa: E731
    before = view_box()
    ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(svg), 0, 300).perform()
    zoomed = view_box()
    assert float(zoomed.split()[2]) > float(before.split()[2]), f"wheel did not zoom: {before} -> {zoomed}"
    ActionChains(driver).move_to_element_with_offset(svg, 5, 5).click_and_hold().move_by_offset(80, 40).release().perform()
    panned = view_box()
    assert panned.split()[:2] != zoomed.split()[:2], f"drag did not pan: {zoomed} -> {panned}"
    assert driver.execute_script(_POSITIONS_JS) == positions, "filtering or zooming moved nodes"
    driver.find_element(By.ID, "fit-view").click()
    return facts


class _Waiter:
    """``WebDriverWait.until`` that fails with what it waited for, the card panel's text and the browser log."""

    def __init__(self, wait: Any, driver: Any) -> None:
        self.wait, self.driver = wait, driver

    def until(self, condition: Any, what: str) -> Any:
        from selenium.common.exceptions import TimeoutException

        try:
            return self.wait.until(condition)
        except TimeoutException:
            panel = self.driver.execute_script("const c = document.getElementById('card'); return c ? c.textContent.slice(0, 300) : null;")
            raise AssertionError(f"timed out waiting for {what}; card panel: {panel!r}; console: {self.driver.get_log('browser')}") from None


def _click_node(driver: Any, sae: str, feature: int) -> None:
    """Click a node like a user: bring it into the view (the page's own search), then a real click."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    selector = f'svg#flow circle.node[data-sae="{sae}"][data-feature="{feature}"]'
    node = driver.find_element(By.CSS_SELECTOR, selector)
    if not _in_view(driver, node):
        box = driver.find_element(By.ID, "feature-search")
        box.clear()
        box.send_keys(f"{sae}/{feature}", Keys.ENTER)  # selects it and centres the view on it
        box.clear()
        box.send_keys(Keys.ENTER)  # and clears the search filter again
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", driver.find_element(By.ID, "flow-canvas"))
    assert _in_view(driver, node), f"{sae}/{feature} is outside the visible graph"
    node.click()


def _in_view(driver: Any, node: Any) -> bool:
    return bool(driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(), s = document.getElementById('flow').getBoundingClientRect();"
        "return r.width > 0 && r.left >= s.left && r.right <= s.right && r.top >= s.top + 24 && r.bottom <= s.bottom;", node))


def _read_view(folder: Path) -> dict[str, Any]:
    text = (folder / "data" / "view.js").read_text()
    prefix = "window.SLM_VIEW = "
    assert text.startswith(prefix), "data/view.js does not set window.SLM_VIEW"
    return json.loads(text[len(prefix):].rstrip().rstrip(";"))


def _read_cards(path: Path) -> dict[str, Any]:
    m = re.fullmatch(r"window\.SLM_ADD_CARDS\((\"(?:[^\"\\]|\\.)*\"), (.*)\);\s*", path.read_text(), re.S)
    assert m, f"{path} is not a call of window.SLM_ADD_CARDS(id, cards)"
    return json.loads(m.group(2))


def _node_with_contexts(folder: Path, view: dict[str, Any], drawn: set[tuple[str, int]]) -> tuple[str, int] | None:
    """The topmost drawn residual feature whose card has contexts (``None`` when no residual SAE has cards)."""
    best = None
    for s in view["saes"]:
        if s["module"] != "residual" or not s.get("card"):
            continue
        rows = dict(zip(s["features"], s["rows"]))
        for f in _read_cards(folder / s["card"])["features"]:
            if f["contexts"] and (s["id"], f["feature"]) in drawn and (best is None or rows[f["feature"]] < best[0]):
                best = (rows[f["feature"]], s["id"], f["feature"])
    return None if best is None else (best[1], best[2])


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()
        self.repeated: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.refs.append(value)
            if name == "id" and value:
                if value in self.ids:
                    self.repeated.add(value)
                self.ids.add(value)


def _check_local_links(folder: Path) -> int:
    """Every local ``href`` / ``src`` of every page, and every card script the view names, is a file in ``folder``."""
    checked = 0
    for page in sorted(folder.rglob("*.html")):
        parser = _Refs()
        parser.feed(page.read_text(errors="replace"))
        assert not parser.repeated, f"{page.name}: ids used more than once: {sorted(parser.repeated)}"
        for ref in parser.refs:
            parts = urlsplit(ref)
            if parts.scheme in ("http", "https", "data", "mailto"):
                continue
            assert not parts.scheme and not parts.netloc, f"{page.name}: {ref!r} is not a relative link"
            if not parts.path:  # "#anchor": an element of the same page
                assert not parts.fragment or parts.fragment in parser.ids, f"{page.name}: {ref!r} names no element"
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_relative_to(folder.resolve()), f"{page.name}: {ref!r} leaves the report folder"
            assert target.is_file(), f"{page.name}: {ref!r} is missing"
            checked += 1
    view = folder / "data" / "view.js"
    if view.is_file():
        for s in _read_view(folder)["saes"]:
            if s.get("card"):
                assert (folder / s["card"]).is_file(), f"view.js names {s['card']}, which is missing"
                checked += 1
    return checked


def _check_no_machine_paths(folder: Path) -> None:
    """No .html or .js file names this machine's folders (the report must work once moved)."""
    here = folder.resolve()
    needles = {str(here), str(here.parent), str(Path.home()), str(Path(__file__).resolve().parents[2]), sys.prefix}
    needles = {n for n in needles if len(n) > 4}
    for path in list(folder.rglob("*.html")) + list(folder.rglob("*.js")):
        text = path.read_text(errors="replace")
        for needle in needles:
            assert needle not in text, f"{path.relative_to(folder)} contains the absolute path {needle!r}"
